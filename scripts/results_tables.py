#!/usr/bin/env python3
"""Result tables of docs/results.md generated from the runs' JSON, never edited by hand.

Two steps:

    # 1. keep the figures of a run (small JSON, committed) under docs/results/NAME.json
    .venv/bin/python scripts/results_tables.py collect runs/eval_real2/drive_tail_single/report.json \\
        drive_tail_single --command "scripts/eval_real.sh ros_ncal/assets/nclr_calib.pt runs/eval_real2 (step 1)"
    .venv/bin/python scripts/results_tables.py collect-rigs runs/eval_real2 rigs --command "scripts/eval_real.sh ... (step 5)"
    # 2. rewrite every generated block of docs/results.md from docs/results/*.json
    .venv/bin/python scripts/results_tables.py render [--check]

A generated block in docs/results.md is ``<!-- table:NAME -->`` ... ``<!-- /table -->``; ``render`` replaces
what is between the markers with the table of docs/results/NAME.json; ``--check`` exits 1 when a block is
out of date (test/test_results_tables.py runs it). Kinds: ``single`` (``ncal eval-calib`` per-frame summary),
``sequence`` (its online-sequence summary), ``rigs`` (``ncal calibrate --perturb`` reports, one row per bag
and seed).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / 'docs' / 'results'
RESULTS_MD = REPO / 'docs' / 'results.md'
# Sequence reports written before 2026-12-03 carry no thresholds: they counted success with the evaluation's
# single-frame thresholds, 2 deg and 20 cm (every calib_eval*.yaml), not the 1 deg / 10 cm of the sequence target.
OLD_SEQUENCE_SUCCESS = (2.0, 0.2)


def sequence_success(d: dict) -> tuple[float, float]:
    """(rre_deg, rte_m) success thresholds of a report's ``sequence`` section or a collected sequence table."""
    return d.get('success_rre_deg', OLD_SEQUENCE_SUCCESS[0]), d.get('success_rte_m', OLD_SEQUENCE_SUCCESS[1])
BLOCK = re.compile(r'(<!-- table:([\w.-]+) -->\n)(.*?)(<!-- /table -->)', re.S)


def _f(x, digits: int = 2) -> str:
    return '-' if x is None else f'{x:.{digits}f}'


def collect(report: Path, name: str, command: str, out_dir: Path = RESULTS_DIR) -> Path:
    """The summaries of one ``ncal eval-calib`` report.json -> out_dir/NAME.json (kind single and, when the
    report has online sequences, NAME_sequences.json of kind sequence)."""
    r = json.loads(Path(report).read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    base = {'command': command, 'preset': r.get('preset_name'), 'preset_bounds': r.get('preset'),
            'samples': r.get('n_samples'), 'trials': (r.get('config') or {}).get('trials')}
    path = out_dir / f'{name}.json'
    path.write_text(json.dumps({**base, 'kind': 'single', 'summary': r['summary']}, indent=1) + '\n')
    seq = r.get('sequence') or {}
    if seq.get('summary'):
        (out_dir / f'{name}_sequences.json').write_text(json.dumps(
            {**base, 'kind': 'sequence', 'passes': seq.get('passes'), 'sequences': seq.get('n_sequences'),
             **dict(zip(('success_rre_deg', 'success_rte_m'), sequence_success(seq))),
             'summary': seq['summary']}, indent=1) + '\n')
    return path


def collect_rigs(run_dir: Path, name: str, command: str, out_dir: Path = RESULTS_DIR) -> Path:
    """``ncal calibrate`` reports under run_dir/[rig_]<bag>_s<seed>/report.json -> out_dir/NAME.json (kind rigs)."""
    rows = []
    for rep in sorted(Path(run_dir).glob('*_s*/report.json')):
        m = re.fullmatch(r'(?:rig_)?(.+)_s(\d+)', rep.parent.name)
        if m is None:
            continue
        r = json.loads(rep.read_text())
        t = r.get('truth') or {}
        frames = r.get('frames')
        n_frames = len({f.get('frame_id') for f in frames}) if isinstance(frames, list) else frames
        rows.append({'bag': m.group(1), 'seed': int(m.group(2)), 'frames': n_frames,
                     'before': t.get('nominal_error'), 'after': t.get('calibrated_error')})
    if not rows:
        raise SystemExit(f'no [rig_]<bag>_s<seed>/report.json under {run_dir}')
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f'{name}.json'
    path.write_text(json.dumps({'command': command, 'kind': 'rigs', 'rows': rows}, indent=1) + '\n')
    return path


def render_table(d: dict) -> str:
    """Markdown of one docs/results/NAME.json (with its command under the table)."""
    kind = d['kind']
    if kind == 'single':
        lines = ['| calibrator | n | RRE median / mean (deg) | RTE median (cm) | RRE < 2 deg | s / frame |',
                 '|---|---|---|---|---|---|']
        for name, s in d['summary'].items():
            rot_ok = s.get('rot_success_rate')
            lines.append(f"| {name} | {s['n']} | {_f(s['rre_median_deg'])} / {_f(s['rre_mean_deg'])} | "
                         f"{_f(s['rte_median_cm'], 1)} | {'-' if rot_ok is None else f'{100 * rot_ok:.0f} %'} | "
                         f"{_f(s.get('runtime_mean_s'), 3)} |")
        b = d.get('preset_bounds') or {}
        what = (f"preset `{d.get('preset')}` (up to {b.get('max_deg', '?'):g} deg / {b.get('max_m', '?'):g} m), "
                f"{d.get('samples')} frames x {d.get('trials')} trials")
    elif kind == 'sequence':
        lines = ['| calibrator | sequences | RRE median / mean (deg) | RTE median / mean (cm) | success |',
                 '|---|---|---|---|---|']
        for name, s in d['summary'].items():
            lines.append(f"| {name} | {s['n']} | {_f(s['rre_median_deg'])} / {_f(s['rre_mean_deg'])} | "
                         f"{_f(s['rte_median_cm'], 1)} / {_f(s['rte_mean_cm'], 1)} | {100 * s['success_rate']:.0f} % |")
        b = d.get('preset_bounds') or {}
        rre_ok, rte_ok = sequence_success(d)
        what = (f"online sequences: {d.get('sequences')} perturbations (preset `{d.get('preset')}`, up to "
                f"{b.get('max_deg', '?'):g} deg / {b.get('max_m', '?'):g} m) x {d.get('samples')} frames x "
                f"{d.get('passes')} passes; success < {rre_ok:g} deg and < {100 * rte_ok:g} cm")
    elif kind == 'rigs':
        lines = ['| bag | seed | frames | before (deg / cm) | after (deg / cm) | rotation halved |',
                 '|---|---|---|---|---|---|']
        for r in d['rows']:
            b, a = r['before'] or {}, r['after'] or {}
            halved = a and b and a['rot_deg'] <= 0.5 * b['rot_deg']
            lines.append(f"| {r['bag']} | {r['seed']} | {r['frames']} | {_f(b.get('rot_deg'))} / "
                         f"{_f(b.get('trans_cm'), 1)} | {_f(a.get('rot_deg'))} / {_f(a.get('trans_cm'), 1)} | "
                         f"{'yes' if halved else 'no'} |")
        what = 'ncal calibrate --perturb per bag and seed; errors against the recorded extrinsic'
    else:
        raise ValueError(f'unknown kind {kind!r}')
    return '\n'.join(lines) + f"\n\n{what}. Command: `{d['command']}`.\n"


def render(md: Path = RESULTS_MD, results_dir: Path = RESULTS_DIR, check: bool = False) -> list[str]:
    """Rewrite the generated blocks of ``md``; returns the names of blocks that changed (or would, with check)."""
    text = md.read_text()
    changed = []

    def sub(m: re.Match) -> str:
        name = m.group(2)
        src = results_dir / f'{name}.json'
        if not src.is_file():
            raise SystemExit(f'{md}: block {name!r} has no {src}')
        body = render_table(json.loads(src.read_text()))
        if body != m.group(3):
            changed.append(name)
        return m.group(1) + body + m.group(4)
    new = BLOCK.sub(sub, text)
    if not check and new != text:
        md.write_text(new)
    return changed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sp = ap.add_subparsers(dest='cmd', required=True)
    c = sp.add_parser('collect', help='keep the summaries of one ncal eval-calib report.json')
    c.add_argument('report', type=Path)
    c.add_argument('name')
    c.add_argument('--command', required=True, help='the command that produced the report')
    g = sp.add_parser('collect-rigs', help='keep the ncal calibrate --perturb reports of a run folder')
    g.add_argument('run_dir', type=Path)
    g.add_argument('name')
    g.add_argument('--command', required=True)
    r = sp.add_parser('render', help='rewrite the generated blocks of docs/results.md')
    r.add_argument('--check', action='store_true', help='exit 1 when a block is out of date; write nothing')
    args = ap.parse_args(argv)
    if args.cmd == 'collect':
        print(collect(args.report, args.name, args.command))
    elif args.cmd == 'collect-rigs':
        print(collect_rigs(args.run_dir, args.name, args.command))
    else:
        changed = render(check=args.check)
        if args.check and changed:
            print(f'out of date in {RESULTS_MD}: {", ".join(changed)} (run scripts/results_tables.py render)')
            return 1
        print(f'{len(changed)} block(s) rewritten' if not args.check else 'up to date')
    return 0


if __name__ == '__main__':
    sys.exit(main())
