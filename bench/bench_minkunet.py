#!/usr/bin/env python3
"""Benchmark MinkUNet forward+backward on full KITTI frames (CPU): time per frame and peak memory.

Each configuration runs in its own subprocess so that its peak resident memory (ru_maxrss) is its own.

    .venv/bin/python bench/bench_minkunet.py                       # default grid below
    .venv/bin/python bench/bench_minkunet.py --depth 18 --width 1.0 --voxel-size 0.05 --reps 1
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
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--single', action='store_true', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.single:
        print(json.dumps(run_one(args)))
        return 0
    grid = [(args.depth, args.width, args.voxel_size)] if args.depth else DEFAULT_GRID
    print(f'scan {Path(args.scan).name}, threads={args.threads}, load average {os.getloadavg()[0]:.1f}')
    print('| model | width | voxel | points | voxels (stride 1) | params | fwd | fwd+bwd+step (wall) '
          '| fwd+bwd+step (process CPU) | peak RSS |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for depth, width, vs in grid:
        cmd = [sys.executable, __file__, '--single', '--scan', args.scan, '--depth', str(depth), '--width', str(width),
               '--voxel-size', str(vs), '--reps', str(args.reps), '--threads', str(args.threads)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f'| MinkUNet{depth} | {width} | {vs} | failed: {res.stderr.strip().splitlines()[-1:]} |')
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"| MinkUNet{depth} | {width} | {vs} m | {r['points']} | {r['voxels']} | {r['params_M']:.1f} M | "
              f"{r['fwd_s']:.2f} s | {r['fwd_bwd_s']:.2f} s | {r['fwd_bwd_cpu_s']:.2f} s | "
              f"{r['peak_rss_MB']:.0f} MB |", flush=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
