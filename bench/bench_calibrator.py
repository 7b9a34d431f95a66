"""Seconds per frame of the default calibrator backend (``nclr/classical``) on real KITTI frames, beside a
same-run baseline: the same frames and initial guesses through another source tree (e.g. the previous
commit: ``git worktree add /tmp/ncal_base HEAD``), target <= 0.3 s per frame on the 2 cores (issue 10).

Each tree runs in its own worker process (``PYTHONPATH=TREE``; model and frames loaded, one warm-up frame,
then every frame timed), alternately, ``--rounds`` times, so both see the same machine load. Printed per tree:
wall and process CPU seconds per frame (median / mean / max; CPU counts every thread) and the median
rotation error before / after, so a speed-up that changed the estimates would show. ``--stages`` adds, in
the first tree only, the stages alone: NCLR with 1 and 3 network passes and 64 / 256 RANSAC hypotheses,
and the classical refiner once on a fresh frame, once on a frame already seen (the handover's second run)
and through the original code path (``implementation: reference``).

Run:  git worktree add /tmp/ncal_base HEAD   # the baseline tree (once; remove with git worktree remove)
      .venv/bin/python bench/bench_calibrator.py --baseline-tree /tmp/ncal_base --stages
      .venv/bin/python bench/bench_calibrator.py --data drive --baseline-tree /tmp/ncal_base   # the raw drive
      .venv/bin/python bench/bench_calibrator.py --data drive --baseline-tree . --baseline-blas-threads 0
                       # the workers run with one OpenBLAS thread as `ncal` and the nodes do (--blas-threads);
                       # this compares against OpenBLAS's own default (one thread per core)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- worker (runs inside one tree)

def _load(data: str, frames: int, drive_step: int):
    if data == 'kitti':
        from ros_ncal.calib.eval_data import load_kitti_samples
        return load_kitti_samples(splits=('testing', 'training'), max_frames=frames)
    from ros_ncal.data.readers.kitti_raw import open_kitti_raw_drive, read_kitti_raw_frame
    shared = Path(os.environ.get('NCAL_SHARED_DATA', REPO.parent / 'shared' / 'data'))
    drive = open_kitti_raw_drive(shared / 'kitti_raw' / '2011_09_26' / '2011_09_26_drive_sfnd_sync')
    idx = list(range(0, len(drive.frames), max(1, drive_step)))[:frames]
    return [read_kitti_raw_frame(drive, i) for i in idx], [f'drive/{drive.frames[i]}' for i in idx]


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def worker(args) -> None:
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    from ros_ncal.calib import calibrator_input, make_calibrator
    from ros_ncal.geometry import pose_error, random_perturbation
    samples, ids = _load(args.data, args.frames, args.drive_step)
    ckpt = args.checkpoint or str(Path(os.environ['PYTHONPATH'].split(os.pathsep)[0]) / 'ros_ncal/assets/nclr_calib.pt')
    opts = {'checkpoint': ckpt, 'config_path': args.config}
    cal = make_calibrator(args.backend, **opts)
    rng = np.random.default_rng(args.seed)
    guesses = [s.T_cam_lidar @ random_perturbation(rng, args.max_deg, args.max_m) for s in samples]
    cal.estimate(calibrator_input(samples[-1], guesses[-1]), guesses[-1])          # warm-up (lazy imports)
    rows = []
    for s, name, T0 in zip(samples, ids, guesses):
        res, wall, cpu = _timed(lambda: cal.estimate(calibrator_input(s, T0), T0))
        rows.append({'id': name, 'wall_s': wall, 'cpu_s': cpu, 'rre_before': pose_error(T0, s.T_cam_lidar)[0],
                     'rre_after': pose_error(res.T_cam_lidar, s.T_cam_lidar)[0],
                     'rte_after_cm': 100 * pose_error(res.T_cam_lidar, s.T_cam_lidar)[1]})
    out = {'frames': rows}
    if args.stages:
        out['stages'] = _stages(samples, guesses, opts)
    print('@@RESULT ' + json.dumps(out), flush=True)


def _stages(samples, guesses, opts) -> dict:
    """Each stage alone over the same frames: {name: [(wall, cpu) per frame]}."""
    import copy

    from ros_ncal.calib import calibrator_input
    from ros_ncal.calib.classical import ClassicalCalibConfig, EdgeAlignmentCalibrator
    from ros_ncal.nclr.calibrator import NCLRCalibrator, NCLRInferenceConfig
    out = {}
    base_inf = NCLRInferenceConfig.from_yaml(opts['config_path'])
    for passes in (1, 3):
        for hyp in (64, 256):
            inf = copy.deepcopy(base_inf)
            inf.iterations, inf.ransac_hypotheses = passes, hyp
            cal = NCLRCalibrator.from_checkpoint(opts['checkpoint'], infer=inf)
            cal.estimate(calibrator_input(samples[0], guesses[0]), guesses[0])
            out[f'nclr passes={passes} hypotheses={hyp}'] = [
                _timed(lambda: cal.estimate(calibrator_input(s, T0), T0))[1:] for s, T0 in zip(samples, guesses)]
    ccfg = ClassicalCalibConfig.from_yaml(opts['config_path'])
    fast = EdgeAlignmentCalibrator(ccfg)
    fresh, seen = [], []
    for s, T0 in zip(samples, guesses):
        fast._cache.clear()
        fresh.append(_timed(lambda: fast.estimate(calibrator_input(s, T0), T0))[1:])
        seen.append(_timed(lambda: fast.estimate(calibrator_input(s, T0), T0))[1:])
    out['classical (new frame)'] = fresh
    out['classical (frame seen: handover 2nd run)'] = seen
    rcfg = copy.deepcopy(ccfg)
    rcfg.implementation = 'reference'
    ref = EdgeAlignmentCalibrator(rcfg)
    out['classical implementation=reference'] = [
        _timed(lambda: ref.estimate(calibrator_input(s, T0), T0))[1:] for s, T0 in zip(samples, guesses)]
    return out


# ----------------------------------------------------------------------------- driver

def _run_tree(tree: Path, args, stages: bool, blas_threads: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), '--worker', '--backend', args.backend, '--data', args.data,
           '--frames', str(args.frames), '--drive-step', str(args.drive_step), '--max-deg', str(args.max_deg),
           '--max-m', str(args.max_m), '--seed', str(args.seed), '--threads', str(args.threads),
           '--config', str(tree / args.config)]
    if args.checkpoint:
        cmd += ['--checkpoint', args.checkpoint]
    if stages:
        cmd.append('--stages')
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=str(args.threads),
               NCAL_SHARED_DATA=os.environ.get('NCAL_SHARED_DATA', str(REPO.parent / 'shared' / 'data')))
    env.pop('OPENBLAS_NUM_THREADS', None)
    if blas_threads > 0:
        env['OPENBLAS_NUM_THREADS'] = str(blas_threads)
    p = subprocess.run(cmd, cwd=str(tree), env=env, capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith('@@RESULT '):
            return json.loads(line[len('@@RESULT '):])
    raise RuntimeError(f'worker for {tree} failed (rc {p.returncode}):\n{p.stderr[-3000:]}')


def _stats(xs) -> str:
    import numpy as np
    return f'{np.median(xs):.3f} / {np.mean(xs):.3f} / {np.max(xs):.3f}'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--backend', default='nclr/classical')
    ap.add_argument('--data', choices=['kitti', 'drive'], default='kitti',
                    help='kitti: kitti_object testing + training frames; drive: the KITTI raw drive')
    ap.add_argument('--frames', type=int, default=15)
    ap.add_argument('--drive-step', type=int, default=5, help='--data drive: every n-th frame')
    ap.add_argument('--max-deg', type=float, default=10.0, help='initial error: rotation up to this (uniform)')
    ap.add_argument('--max-m', type=float, default=0.5, help='initial error: translation up to this')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=2, help='torch / OpenMP threads in both workers')
    ap.add_argument('--config', default='config/calib_eval.yaml', help='relative to each tree')
    ap.add_argument('--checkpoint', default=None, help='default: each tree\'s ros_ncal/assets/nclr_calib.pt')
    ap.add_argument('--baseline-tree', default=None, help='source tree of the same-run baseline')
    ap.add_argument('--blas-threads', type=int, default=1,
                    help='OPENBLAS_NUM_THREADS of the workers: 1 as `ncal` and the nodes set it '
                         '(ros_ncal.blas_threads), 0 = unset (OpenBLAS starts one thread per core)')
    ap.add_argument('--baseline-blas-threads', type=int, default=None,
                    help='the baseline worker\'s OPENBLAS_NUM_THREADS (default: --blas-threads); with '
                         '--baseline-tree . this compares the setting alone')
    ap.add_argument('--rounds', type=int, default=1)
    ap.add_argument('--stages', action='store_true', help='also time the stages alone (first tree)')
    ap.add_argument('--json', default=None, help='write all results here')
    ap.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    import numpy as np
    trees = [('this tree', REPO)] + ([('baseline', Path(args.baseline_tree).resolve())] if args.baseline_tree else [])
    results: dict[str, list] = {name: [] for name, _ in trees}
    blas_of = {'this tree': args.blas_threads,
               'baseline': args.blas_threads if args.baseline_blas_threads is None else args.baseline_blas_threads}
    stages = None
    for r in range(args.rounds):
        order = trees if r % 2 == 0 else trees[::-1]
        for name, tree in order:
            res = _run_tree(tree, args, stages=args.stages and name == 'this tree' and stages is None,
                            blas_threads=blas_of[name])
            results[name] += res['frames']
            stages = res.get('stages', stages)
            print(f'round {r + 1}: {name} ({tree}): ' + ', '.join(
                f'{x["id"]} {x["wall_s"]:.2f} s wall / {x["cpu_s"]:.2f} s cpu' for x in res['frames']), flush=True)
    print(f'\n{args.backend} on {args.data} ({args.frames} frames, initial error up to {args.max_deg:g} deg / '
          f'{args.max_m:g} m, {args.threads} threads, {args.rounds} round(s)); seconds per frame median / mean / max')
    for name, tree in trees:
        rows = results[name]
        blas = blas_of[name]
        print(f'  {name:10s} wall {_stats([x["wall_s"] for x in rows])}   cpu {_stats([x["cpu_s"] for x in rows])}'
              f'   RRE median {np.median([x["rre_before"] for x in rows]):.2f} -> '
              f'{np.median([x["rre_after"] for x in rows]):.2f} deg   ({tree}, '
              f'OPENBLAS_NUM_THREADS={blas if blas > 0 else "unset"})')
    if len(trees) == 2:
        a, b = results['this tree'], results['baseline']
        print(f'  speed-up (median wall): {np.median([x["wall_s"] for x in b]) / np.median([x["wall_s"] for x in a]):.1f}x,'
              f' (median cpu): {np.median([x["cpu_s"] for x in b]) / np.median([x["cpu_s"] for x in a]):.1f}x')
    if stages:
        print('\nstages alone (this tree), seconds per frame median / mean / max:')
        for k, v in stages.items():
            print(f'  {k:45s} wall {_stats([x[0] for x in v])}   cpu {_stats([x[1] for x in v])}')
    load = os.getloadavg()
    print(f'\nload average during the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores')
    if args.json:
        Path(args.json).write_text(json.dumps({'args': vars(args), 'results': results, 'stages': stages,
                                               'loadavg': load}, indent=1))


if __name__ == '__main__':
    main()
