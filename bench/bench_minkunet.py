#!/usr/bin/env python3
"""Benchmark MinkUNet forward+backward+SGD step on full KITTI frames (CPU): time per frame and peak memory.

Each configuration runs in its own subprocess so that its peak resident memory (ru_maxrss) is its own.
``--threads 1,2`` runs every model at each thread count, one after the other in the same run (the
same-run baseline of a thread-scaling figure); ``--pure-torch`` adds the engine's pure-PyTorch path
(NCAL_SPARSE_NATIVE=0, what CUDA / autocast use) at the same thread counts.

    .venv/bin/python bench/bench_minkunet.py                       # default grid below
    .venv/bin/python bench/bench_minkunet.py --depth 14 --width 0.5 --voxel-size 0.05 --threads 1,2 --reps 2
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_SCAN = REPO.parent / 'shared' / 'data' / 'kitti_object' / 'training' / 'velodyne' / '000000.bin'
# (depth, width, voxel_size)
DEFAULT_GRID = [(14, 0.5, 0.1), (14, 0.5, 0.05), (18, 1.0, 0.1), (18, 1.0, 0.05)]


def run_one(args) -> dict:
    import numpy as np
    import torch
    from ros_ncal.models import MinkUNet
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pts = torch.from_numpy(np.fromfile(args.scan, dtype=np.float32).reshape(-1, 4))
    net = MinkUNet(in_channels=1, out_dim=64, depth=args.depth, width=args.width, voxel_size=args.voxel_size)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times, fwd_times, cpu_times = [], [], []
    for rep in range(args.reps + 1):
        c0 = time.process_time()
        t0 = time.perf_counter()
        out, vox = net([pts], return_voxels=True)
        t1 = time.perf_counter()
        out[0].square().mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        c2 = time.process_time()
        if rep > 0 or args.reps == 0:
            times.append(t2 - t0)
            cpu_times.append(c2 - c0)
            fwd_times.append(t1 - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    levels = {k[1]: v.coords.shape[0] for k, v in vox.cache.entries.items() if k[0] == 'coords'}
    return {'depth': args.depth, 'width': args.width, 'voxel_size': args.voxel_size, 'points': len(pts),
            'voxels': levels.get(1), 'voxels_per_stride': levels, 'channels': list(net.channels),
            'params_M': sum(p.numel() for p in net.parameters()) / 1e6,
            'fwd_s': statistics.median(fwd_times), 'fwd_bwd_s': statistics.median(times),
            'fwd_bwd_cpu_s': statistics.median(cpu_times),
            'peak_rss_MB': peak, 'rss_before_MB': rss0, 'threads': args.threads}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--scan', default=str(DEFAULT_SCAN))
    ap.add_argument('--depth', type=int)
    ap.add_argument('--width', type=float, default=1.0)
    ap.add_argument('--voxel-size', type=float, default=0.1)
    ap.add_argument('--reps', type=int, default=1, help='timed repetitions after one warm-up')
    ap.add_argument('--threads', default='2', help='thread count(s), comma-separated ("all" = every core)')
    ap.add_argument('--pure-torch', action='store_true', help="also time the engine's pure-PyTorch path")
    ap.add_argument('--single', action='store_true', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.single:
        args.threads = int(args.threads)
        print(json.dumps(run_one(args)))
        return 0
    threads = []
    for tok in args.threads.split(','):
        n = (os.cpu_count() or 1) if tok.strip() == 'all' else int(tok)
        if n not in threads:
            threads.append(n)
    paths = [('native', '1')] + ([('pure-PyTorch', '0')] if args.pure_torch else [])
    grid = [(args.depth, args.width, args.voxel_size)] if args.depth else DEFAULT_GRID
    print(f'scan {Path(args.scan).name}, threads {threads} of {os.cpu_count()} cores, '
          f'load average {os.getloadavg()[0]:.1f}')
    print('| model | width | voxel | engine path | threads | points | voxels (stride 1) | params | fwd '
          '| fwd+bwd+step (wall) | fwd+bwd+step (process CPU) | speed vs 1st thread count | peak RSS |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
    for depth, width, vs in grid:
        for path, flag in paths:
            first = None
            for t in threads:
                cmd = [sys.executable, __file__, '--single', '--scan', args.scan, '--depth', str(depth),
                       '--width', str(width), '--voxel-size', str(vs), '--reps', str(args.reps), '--threads', str(t)]
                res = subprocess.run(cmd, capture_output=True, text=True,
                                     env={**os.environ, 'NCAL_SPARSE_NATIVE': flag})
                if res.returncode != 0:
                    print(f'| MinkUNet{depth} | {width} | {vs} | {path} | {t} | failed: '
                          f'{res.stderr.strip().splitlines()[-1:]} |')
                    continue
                r = json.loads(res.stdout.strip().splitlines()[-1])
                first = first or r['fwd_bwd_s']
                print(f"| MinkUNet{depth} | {width} | {vs} m | {path} | {t} | {r['points']} | {r['voxels']} | "
                      f"{r['params_M']:.1f} M | {r['fwd_s']:.2f} s | {r['fwd_bwd_s']:.2f} s | "
                      f"{r['fwd_bwd_cpu_s']:.2f} s | {first / r['fwd_bwd_s']:.2f}x | {r['peak_rss_MB']:.0f} MB |",
                      flush=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
