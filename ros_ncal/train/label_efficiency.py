"""Label-efficiency experiment: pretrained vs from-scratch fine-tuning at several label fractions and seeds.

The paper's claim (docs/design.md, "The method"): pretraining helps most when labels are few. For each task, fraction and
seed, two runs with the same budget (steps, batch, schedule), the same labelled scenes (``label_seed``)
and the same backbone architecture (the pretrained checkpoint's) differ only in the backbone's
initial weights. Results are appended to ``results.jsonl`` as each run finishes (a crash keeps the
finished runs), then summarised in ``label_efficiency.md`` (mean +- std over seeds, gain) and
``label_efficiency.png``.

    python -m ros_ncal.train.label_efficiency --pretrained runs/pretrain/backbone.pt \
        --tasks seg det panoptic --fractions 0.01 0.1 --seeds 0 1 2 --steps 100 --out runs/label_efficiency
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .downstream_data import labelled_subset, load_task_samples, select_labelled_scenes
from .finetune import (FinetuneConfig, _backbone_config_in, finetune, load_finetune_config,
                       parse_set_options)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIGS = {'seg': 'config/finetune/seg_1pct.yaml', 'det': 'config/finetune/det_1pct.yaml',
                   'panoptic': 'config/finetune/panoptic_1pct.yaml'}
METRIC_OF_TASK = {'seg': 'mIoU', 'det': 'mAP_bev', 'panoptic': 'PQ'}
# Real-data protocol (--real): real labelled frames only, held-out real frames for evaluation
REAL_CONFIGS = {'seg': 'config/finetune/seg_semantickitti.yaml', 'det': 'config/finetune/det_kitti.yaml'}
# (row metric name, metrics key, class or None) reported per real run
REAL_METRICS = {
    'seg': [('mIoU', 'mIoU', None)],
    'det': [('car AP_bev@0.7', 'AP_bev', 'car'), ('car AP_3d@0.7', 'AP_3d', 'car'),
            ('car AP_bev@0.5', 'AP_bev_loose', 'car'), ('car AP_3d@0.5', 'AP_3d_loose', 'car'),
            ('mAP_bev', 'mAP_bev', None)],
}


def _metric_value(metrics: dict, key: str, cls):
    v = metrics.get(key)
    if cls is not None:
        v = (v or {}).get(cls)
    return None if v is None or v != v else float(v)


def _cell_config(base: FinetuneConfig, fraction: float, seed: int, pretrained: str | None, out: Path,
                 run_name: str | None) -> FinetuneConfig:
    """The fine-tuning config of one (label fraction, seed, initialisation) cell of a sweep."""
    cfg = copy.deepcopy(base)
    cfg.label_fraction = float(fraction)
    cfg.seed = int(seed)
    cfg.pretrained = pretrained
    cfg.output_dir = str(out / 'runs')
    cfg.run_name = run_name
    return cfg


def run_real_sweep(pretrained: str, tasks=('seg', 'det'), fractions=(1.0,), seeds=(0, 1, 2),
                   out_dir: str | Path = 'runs/label_efficiency_real', steps: int | None = None,
                   config_paths: dict | None = None, overrides: dict | None = None,
                   log: Callable[[str], None] = print) -> list[dict]:
    """Pretrained backbone vs scratch on real labels: for each task, fraction of the real training frames
    (chosen by frame with ``label_seed``), seed and init, one fine-tuning run on real frames only
    (``real.weight`` 1, no synthetic scenes, no score calibration) evaluated on the held-out
    ``real.eval_frames``. Same architecture (the checkpoint's), frames, steps, schedule and augmentation
    for both arms. Writes results.jsonl (one row per run and metric), label_efficiency.md and .png."""
    from ros_ncal.models.checkpoint import load_checkpoint
    from .downstream_data import load_real_samples
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backbone_cfg = _backbone_config_in(load_checkpoint(pretrained))
    if backbone_cfg is None:
        raise ValueError(f'{pretrained}: the checkpoint stores no backbone config')
    results_path = out / 'results.jsonl'
    rows: list[dict] = []
    for task in tasks:
        path = (config_paths or {}).get(task) or str(REPO / REAL_CONFIGS[task])
        base = load_finetune_config(path, copy.deepcopy(overrides or {}))
        if base.task != task or not base.real.kind:
            raise ValueError(f'{path}: not a real-data {task!r} config (needs task {task} and real.kind)')
        base.backbone = dict(backbone_cfg)
        base.backbone_from_checkpoint = False
        base.init_head_from_pretrained = False
        base.real.weight = 1.0
        base.real.calib_frames = []
        if steps is not None:
            base.optim.steps = int(steps)
        t0 = time.time()
        train = load_real_samples(base.real, base.data, 'train')
        evals = load_real_samples(base.real, base.data, 'eval')
        log(f'{task}: {len(train)} real training frames {[s.scene for s in train]}, {len(evals)} held out '
            f'{[s.scene for s in evals]} ({time.time() - t0:.0f} s)')
        for frac in fractions:
            labelled = labelled_subset(train, frac, base.label_seed)
            for seed in seeds:
                for init in ('scratch', 'pretrained'):
                    cfg = _cell_config(base, frac, seed, pretrained if init == 'pretrained' else None, out,
                                       f'{task}_real{frac * 100:g}pct_{init}_s{seed}')
                    log(f'--- real {task} {len(labelled)} frame(s) {init} seed {seed} ({cfg.optim.steps} steps)')
                    common = {'task': task, 'fraction': float(frac), 'init': init, 'seed': int(seed),
                              'steps': cfg.optim.steps, 'frames': [s.scene for s in labelled],
                              'eval_frames': [s.scene for s in evals], 'real': True}
                    try:
                        res = finetune(cfg, labelled, evals, log=log, train_is_labelled=True, num_train_total=len(train))
                    except (ValueError, FloatingPointError, RuntimeError) as exc:
                        log(f'run failed: {exc}')
                        new = [dict(common, metric=m, value=None, error=str(exc)) for m, _, _ in REAL_METRICS[task]]
                    else:
                        new = [dict(common, metric=m, value=_metric_value(res.metrics, key, cls),
                                    first_loss=res.losses[0], final_loss=res.losses[-1],
                                    seconds=round(res.seconds, 1), checkpoint=res.checkpoint)
                               for m, key, cls in REAL_METRICS[task]]
                    rows += new
                    with open(results_path, 'a') as f:
                        for r in new:
                            f.write(json.dumps(r, default=str) + '\n')
    write_report(rows, out, pretrained)
    return rows


def _data_key(cfg: FinetuneConfig) -> str:
    from dataclasses import asdict
    return json.dumps(asdict(cfg.data), sort_keys=True, default=str)


def _needed_indices(cfg: FinetuneConfig, fractions) -> list | None:
    """Synthetic data: only the scenes labelled at some fraction are generated (one scene per index,
    the same choice ``labelled_subset`` makes); other sources: None (all)."""
    if cfg.data.source != 'synthetic':
        return None
    all_idx = list(range(int(cfg.data.train_indices[0]), int(cfg.data.train_indices[1])))
    chosen = set()
    for f in fractions:
        chosen.update(all_idx if f >= 1.0 else select_labelled_scenes(all_idx, f, cfg.label_seed))
    return sorted(chosen)


def _labelled_for(cfg: FinetuneConfig, train: list, fraction: float) -> list:
    """The labelled samples of one fraction: synthetic by index over the full training range (as
    ``ncal finetune`` chooses them), otherwise by scene over the loaded samples."""
    if cfg.data.source == 'synthetic' and fraction < 1.0:
        all_idx = list(range(int(cfg.data.train_indices[0]), int(cfg.data.train_indices[1])))
        chosen = set(select_labelled_scenes(all_idx, fraction, cfg.label_seed))
        return [s for s in train if s.index in chosen]
    return labelled_subset(train, fraction, cfg.label_seed)


def run_sweep(pretrained: str, tasks=('seg', 'det', 'panoptic'), fractions=(0.01, 0.1), seeds=(0, 1, 2),
              out_dir: str | Path = 'runs/label_efficiency', steps: int | None = None,
              config_paths: dict | None = None, overrides: dict | None = None, linear_probe: bool = False,
              log: Callable[[str], None] = print) -> list[dict]:
    """Run the grid; returns one row per run and writes results.jsonl, label_efficiency.md / .png."""
    from ros_ncal.models.checkpoint import load_checkpoint
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = load_checkpoint(pretrained)
    backbone_cfg = _backbone_config_in(payload)
    if backbone_cfg is None:
        raise ValueError(f'{pretrained}: the checkpoint stores no backbone config; cannot build the same '
                         'architecture for the from-scratch runs')
    results_path = out / 'results.jsonl'
    rows: list[dict] = []
    cache: dict = {}
    for task in tasks:
        path = (config_paths or {}).get(task) or str(REPO / DEFAULT_CONFIGS[task])
        base = load_finetune_config(path, copy.deepcopy(overrides or {}))
        if base.task != task:
            raise ValueError(f'{path} is a {base.task!r} config, not {task!r}')
        base.backbone = dict(backbone_cfg)
        base.backbone_from_checkpoint = False
        base.linear_probe = linear_probe
        if steps is not None:
            base.optim.steps = int(steps)
        key = _data_key(base)
        if key not in cache:
            t0 = time.time()
            cache[key] = (load_task_samples(base.data, 'train', indices=_needed_indices(base, fractions)),
                          load_task_samples(base.data, 'eval'))
            log(f'loaded {len(cache[key][0])} train / {len(cache[key][1])} eval samples in {time.time() - t0:.0f} s')
        train, evals = cache[key]
        n_total = int(base.data.train_indices[1]) - int(base.data.train_indices[0])
        for frac in fractions:
            labelled = _labelled_for(base, train, frac)
            for seed in seeds:
                for init in ('scratch', 'pretrained'):
                    cfg = _cell_config(base, frac, seed, pretrained if init == 'pretrained' else None, out, None)
                    log(f'--- {task} {frac * 100:g} % {init} seed {seed} ({cfg.optim.steps} steps)')
                    metric = METRIC_OF_TASK[task]
                    try:
                        res = finetune(cfg, labelled, evals, log=log, train_is_labelled=True,
                                       num_train_total=n_total if base.data.source == 'synthetic' else len(train))
                    except (ValueError, FloatingPointError, RuntimeError) as exc:  # one bad run must not end the sweep
                        log(f'run failed: {exc}')
                        row = {'task': task, 'fraction': float(frac), 'init': init, 'seed': int(seed),
                               'metric': metric, 'value': None, 'steps': cfg.optim.steps, 'error': str(exc),
                               'linear_probe': linear_probe}
                        rows.append(row)
                        with open(results_path, 'a') as f:
                            f.write(json.dumps(row, default=str) + '\n')
                        continue
                    row = {'task': task, 'fraction': float(frac), 'init': init, 'seed': int(seed),
                           'metric': metric, 'value': res.metrics.get(metric), 'steps': cfg.optim.steps,
                           'labelled_samples': res.num_labelled_samples, 'first_loss': res.losses[0],
                           'final_loss': res.losses[-1], 'seconds': round(res.seconds, 1),
                           'linear_probe': linear_probe, 'checkpoint': res.checkpoint, 'summary': res.summary_path}
                    if task == 'det':
                        row['mAP_3d'] = res.metrics.get('mAP_3d')
                    if task == 'panoptic':
                        row['mIoU'] = res.metrics.get('mIoU')
                    rows.append(row)
                    with open(results_path, 'a') as f:
                        f.write(json.dumps(row, default=str) + '\n')
    write_report(rows, out, pretrained)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Group by (task, fraction): mean / std over seeds for scratch and pretrained, and the gain."""
    groups: dict = {}
    for r in rows:
        v = r['value']
        groups.setdefault((r['task'], r['fraction'], r['metric']), {}).setdefault(r['init'], []).append(
            float('nan') if v is None else float(v))
    table = []
    for (task, frac, metric), g in sorted(groups.items()):
        s, p = np.asarray(g.get('scratch', []), float), np.asarray(g.get('pretrained', []), float)
        entry = {'task': task, 'fraction': frac, 'metric': metric, 'n_seeds': int(max(len(s), len(p))),
                 'scratch_mean': float(np.nanmean(s)) if len(s) else float('nan'),
                 'scratch_std': float(np.nanstd(s)) if len(s) else float('nan'),
                 'pretrained_mean': float(np.nanmean(p)) if len(p) else float('nan'),
                 'pretrained_std': float(np.nanstd(p)) if len(p) else float('nan')}
        entry['gain'] = entry['pretrained_mean'] - entry['scratch_mean']
        table.append(entry)
    return table


def write_report(rows: list[dict], out: Path, pretrained: str) -> tuple[Path, Path | None]:
    """label_efficiency.md (markdown table, values in %) and label_efficiency.png (if matplotlib works)."""
    table = summarise(rows)
    steps = sorted({r['steps'] for r in rows})
    lines = ['# Label efficiency: pretrained vs from scratch', '',
             f'Pretrained backbone: `{pretrained}`; steps per run: {steps}; seeds per cell: '
             f'{sorted({r["seed"] for r in rows})}; linear probe: {any(r.get("linear_probe") for r in rows)}.',
             'Values in %, mean +- std over seeds (same labelled scenes, same budget for both inits).', '',
             '| task | labels | metric | scratch | pretrained | gain |', '|---|---|---|---|---|---|']
    for e in table:
        lines.append(f"| {e['task']} | {e['fraction'] * 100:g} % | {e['metric']} | "
                     f"{100 * e['scratch_mean']:.2f} +- {100 * e['scratch_std']:.2f} | "
                     f"{100 * e['pretrained_mean']:.2f} +- {100 * e['pretrained_std']:.2f} | "
                     f"{100 * e['gain']:+.2f} |")
    md = out / 'label_efficiency.md'
    md.write_text('\n'.join(lines) + '\n')
    png = out / 'label_efficiency.png'
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        panels = sorted({(e['task'], e['metric']) for e in table})
        fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.6), squeeze=False)
        for ax, (task, metric) in zip(axes[0], panels):
            es = [e for e in table if e['task'] == task and e['metric'] == metric]
            x = [e['fraction'] * 100 for e in es]
            for init, color in (('scratch', 'tab:gray'), ('pretrained', 'tab:blue')):
                ax.errorbar(x, [100 * e[f'{init}_mean'] for e in es], yerr=[100 * e[f'{init}_std'] for e in es],
                            marker='o', capsize=3, label=init, color=color)
            if len(x) > 1:
                ax.set_xscale('log')
            ax.set_xlabel('labelled real frames (%)' if any(r.get('real') for r in rows) else 'labelled scenes (%)')
            ax.set_ylabel(f'{metric} (%)')
            ax.set_title(task)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        fig.savefig(png, dpi=110)
        plt.close(fig)
    except Exception as exc:  # the table is the result; a plot failure must not lose it
        print(f'label_efficiency: plot not written ({exc})', file=sys.stderr)
        png = None
    return md, png


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--pretrained', required=True, help='pretrained backbone checkpoint')
    p.add_argument('--tasks', nargs='+', default=['seg', 'det', 'panoptic'], choices=sorted(METRIC_OF_TASK))
    p.add_argument('--fractions', nargs='+', type=float, default=[0.01, 0.1])
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--steps', type=int, default=None, help='steps per run (default: the configs)')
    p.add_argument('--out', default='runs/label_efficiency')
    p.add_argument('--linear-probe', action='store_true')
    p.add_argument('--config', action='append', default=[], metavar='TASK=YAML',
                   help='config per task (default config/finetune/<task>_1pct.yaml; the fraction is overridden)')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', help='config override (repeatable)')
    p.add_argument('--real', action='store_true',
                   help='real-data protocol: real labelled frames only (config/finetune/{seg_semantickitti,det_kitti}'
                        '.yaml), fractions of the real training frames, held-out real frames')
    args = p.parse_args(argv)
    paths = dict(item.split('=', 1) for item in args.config)
    if args.real:
        fr = args.fractions if args.fractions != [0.01, 0.1] else [1.0]
        rows = run_real_sweep(args.pretrained, args.tasks, fr, args.seeds, args.out, args.steps, paths,
                              parse_set_options(args.set), log=lambda m: print(m, flush=True))
        print((Path(args.out) / 'label_efficiency.md').read_text())
        return 0 if rows else 1
    rows = run_sweep(args.pretrained, args.tasks, args.fractions, args.seeds, args.out, args.steps, paths,
                     parse_set_options(args.set), args.linear_probe, log=lambda m: print(m, flush=True))
    print((Path(args.out) / 'label_efficiency.md').read_text())
    return 0 if rows else 1


if __name__ == '__main__':
    sys.exit(main())
