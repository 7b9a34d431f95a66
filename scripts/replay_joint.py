#!/usr/bin/env python3
"""Re-run only the joint stage of the online sequences of an ``ncal eval-calib --sequence --joint`` report, from
the fused corrections its records carry, with the joint settings of a calibration YAML; writes a copy of the
report whose ``<calibrator>+joint`` records and sequence summary are the replayed ones (``scripts/results_tables.py
collect`` renders it like any report). The network stage is not re-run: a change of the joint or coarse stage is
measured on exactly the starts the original run gave it. The frames are read again from the KITTI raw drive and
must be the report's (checked by id).

Usage: .venv/bin/python scripts/replay_joint.py REPORT OUT_REPORT --frame-range 57:77 --frame-step 2 \\
           [--config config/calib_eval_gross.yaml] [--kitti-raw-drive DIR] [--calibrators nclr_wide/classical]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ros_ncal.blas_threads import prefer_single_thread_blas

prefer_single_thread_blas()     # before numpy loads, as in `ncal` (ros_ncal/blas_threads.py)

import numpy as np  # noqa: E402

from ros_ncal.calib.eval_data import load_kitti_raw_samples  # noqa: E402
from ros_ncal.calib.evaluate import sequence_frames, summarize_sequences  # noqa: E402
from ros_ncal.calib.joint import JointEdgeRefiner  # noqa: E402
from ros_ncal.calib.offline import apply_joint  # noqa: E402
from ros_ncal.geometry import invert, pose_error  # noqa: E402


def replay(report: dict, samples: list, refiner: JointEdgeRefiner, calibrators: list[str] | None) -> list[str]:
    """Replace, in ``report`` (modified), each ``<name>+joint`` record of the chosen calibrators by the joint stage
    re-run from that sequence's fused correction; returns one line per sequence."""
    seq = report['sequence']
    by_base = {(r['sequence'], r['calibrator']): r for r in seq['records']}
    lines = []
    for i, rec in enumerate(seq['records']):
        name = rec['calibrator']
        if not name.endswith('+joint') or (calibrators and name[:-len('+joint')] not in calibrators):
            continue
        base = by_base[(rec['sequence'], name[:-len('+joint')])]
        if 'fused_correction' not in base:
            raise ValueError(f'{name}, sequence {rec["sequence"]}: the report has no fused corrections (written '
                             f'before 2026-12-03); re-run ncal eval-calib')
        D, C = np.asarray(base['perturbation'], dtype=np.float64), np.asarray(base['fused_correction'], dtype=np.float64)
        frames = sequence_frames(samples, D)
        t0 = time.perf_counter()
        res = refiner.refine(frames, [f.T_cam_lidar @ C for f in frames])
        C2 = apply_joint(C, frames[0].T_cam_lidar, res)
        rre, rte = pose_error(C2, invert(D))
        seq['records'][i] = {**rec, 'rre_deg': rre, 'rte_cm': 100.0 * rte, 'joint': res.to_dict(),
                             'trajectory': rec['trajectory'][:-1] + [[rre, 100.0 * rte]]}
        lines.append(f'sequence {rec["sequence"]} {name}: was {rec["rre_deg"]:.2f} deg / {rec["rte_cm"]:.1f} cm, now '
                     f'{rre:.2f} deg / {100 * rte:.1f} cm ({time.perf_counter() - t0:.0f} s): {res.message}')
        print(lines[-1], flush=True)
    if calibrators:     # +joint rows of the other calibrators would show the old joint stage: dropped
        seq['records'] = [r for r in seq['records']
                          if not r['calibrator'].endswith('+joint') or r['calibrator'][:-len('+joint')] in calibrators]
    seq['summary'] = summarize_sequences(seq['records'], seq['success_rre_deg'], seq['success_rte_m'])
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('report', type=Path)
    ap.add_argument('out', type=Path)
    ap.add_argument('--frame-range', required=True, help="the report's --frame-range")
    ap.add_argument('--frame-step', type=int, default=1, help="the report's --frame-step")
    ap.add_argument('--kitti-raw-drive', default=None)
    ap.add_argument('--config', default=None, help="joint / classical settings (default: the report's config)")
    ap.add_argument('--calibrators', default=None, help='comma list (default: every calibrator with +joint rows); '
                    'the other calibrators\' +joint rows are dropped from the output')
    args = ap.parse_args(argv)
    report = json.loads(args.report.read_text())
    kw = {'drive_dir': args.kitti_raw_drive} if args.kitti_raw_drive else {}
    samples, ids = load_kitti_raw_samples(frames=args.frame_range, step=args.frame_step, **kw)
    if ids != report['sample_ids']:
        raise SystemExit(f'the frames {ids[:2]}... are not the report\'s {report["sample_ids"][:2]}...')
    config = args.config or report.get('info', {}).get('config')
    refiner = JointEdgeRefiner.from_yaml(config)
    replay(report, samples, refiner, args.calibrators.split(',') if args.calibrators else None)
    report.setdefault('info', {})['joint_replayed'] = {'from': str(args.report), 'config': config,
                                                      'joint': refiner.cfg.to_dict()}
    report['sequence']['joint'] = refiner.cfg.to_dict()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    for name, s in report['sequence']['summary'].items():
        print(f"{name}: success {100 * s['success_rate']:.0f} %, median {s.get('rre_median_deg', float('nan')):.2f} "
              f"deg / {s.get('rte_median_cm', float('nan')):.1f} cm")
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
