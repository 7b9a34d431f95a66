#!/usr/bin/env python3
"""Benchmark one submanifold 3x3x3 conv layer (32 -> 32) on ~50k active voxels of a real KITTI scan.

Prints: kernel-map build time; forward+backward with the cached map and with a rebuild; the same layer in
spconv single-threaded when installed (its CPU conv is only correct with one thread); dense conv3d on the
bounding box of a crop (the whole scan's box is far too large for a dense grid); ratios against them.

    .venv/bin/python bench/bench_sparse.py [--voxels 50000] [--voxel-size 0.05] [--threads 2] [--reps 5]
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ros_ncal.models.sparse import (KernelMapCache, SparseTensor, SubMConv3d, build_submanifold_map,  # noqa: E402
                                    get_engine, voxelize)
from ros_ncal.models.sparse.engines import EngineUnavailableError  # noqa: E402


def load_scan(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.fromfile(path, dtype=np.float32).reshape(-1, 4))


def active_voxels(points: torch.Tensor, voxel_size: float, target: int):
    """Voxelize and keep the target number of voxels nearest the sensor (a contiguous, realistic set)."""
    st, _ = voxelize(points, torch.zeros(len(points), dtype=torch.long), voxel_size)
    if st.num_voxels > target:
        centre = st.coords[:, 1:].double() * voxel_size
        keep = torch.argsort(centre[:, :2].norm(dim=1))[:target]
        keep = torch.sort(keep).values
        st = SparseTensor(st.coords[keep], st.feats[keep])
    return st


def timed(fn, reps: int):
    """Median wall seconds of fn over reps calls after one warm-up (process CPU time in CPU_TIMES[-1])."""
    fn()  # warm-up
    times, cpu = [], []
    for _ in range(reps):
        c = time.process_time()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    CPU_TIMES.append(statistics.median(cpu))
    return statistics.median(times)


CPU_TIMES = []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--scan', default=str(REPO.parent / 'shared' / 'data' / 'kitti_object' / 'training' / 'velodyne'
                                          / '000000.bin'))
    ap.add_argument('--voxels', type=int, default=50000)
    ap.add_argument('--voxel-size', type=float, default=0.05)
    ap.add_argument('--channels', type=int, default=32)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--crop', type=float, default=4.0, help='edge (m) of the crop used for the dense baseline')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pts = load_scan(Path(args.scan))
    st = active_voxels(pts, args.voxel_size, args.voxels)
    C = args.channels
    feats = torch.randn(st.num_voxels, C)
    print(f'scan {Path(args.scan).name}: {len(pts)} points -> {st.num_voxels} active voxels at {args.voxel_size} m; '
          f'{C}->{C} submanifold 3x3x3; threads={args.threads}')

    cs = st.coordinate_set
    t_map = timed(lambda: build_submanifold_map(cs, 3, 1), args.reps)
    t_map_cpu = CPU_TIMES[-1]
    kmap = build_submanifold_map(cs, 3, 1)
    print(f'kernel map build: {t_map * 1e3:.1f} ms [{t_map_cpu * 1e3:.1f} ms CPU] ({kmap.num_pairs()} pairs, '
          f'{kmap.num_pairs() / st.num_voxels:.1f} neighbours per voxel)')

    conv = SubMConv3d(C, C)

    def fwd_bwd(x: SparseTensor):
        f = x.feats.detach().requires_grad_(True)
        y = conv(x.replace_feats(f))
        y.feats.square().mean().backward()
        conv.weight.grad = None

    x_cached = SparseTensor(st.coords, feats)
    t_cached = timed(lambda: fwd_bwd(x_cached), args.reps)
    t_rebuild = timed(lambda: fwd_bwd(SparseTensor(st.coords, feats, cache=KernelMapCache())), args.reps)
    print(f'load average {os.getloadavg()[0]:.1f} (wall times below; process CPU time in brackets)')
    print(f'torch engine fwd+bwd, cached map : {t_cached * 1e3:.1f} ms [{CPU_TIMES[-2] * 1e3:.1f} ms CPU]')
    print(f'torch engine fwd+bwd, rebuilt map: {t_rebuild * 1e3:.1f} ms [{CPU_TIMES[-1] * 1e3:.1f} ms CPU]')

    # single-threaded comparison with spconv
    try:
        sp = get_engine('spconv')
    except EngineUnavailableError as exc:
        print(f'spconv: not available ({exc})')
        sp = None
    if sp is not None:
        torch.set_num_threads(1)
        t_torch1 = timed(lambda: fwd_bwd(x_cached), args.reps)
        x_sp = SparseTensor(st.coords, feats)

        def sp_fwd_bwd():
            f = feats.detach().requires_grad_(True)
            y = sp.submanifold_conv(x_sp.replace_feats(f), conv.weight, 3, 1)
            y.feats.square().mean().backward()
            conv.weight.grad = None
        t_sp = timed(sp_fwd_bwd, args.reps)
        with torch.no_grad():
            diff = (sp.submanifold_conv(x_sp, conv.weight, 3, 1).feats - conv(x_cached).feats).abs().max().item()
        torch.set_num_threads(2)
        sp.force_single_thread = False
        with torch.no_grad():
            diff2 = (sp.submanifold_conv(x_sp, conv.weight, 3, 1).feats - conv(x_cached).feats).abs().max().item()
        sp.force_single_thread = True
        torch.set_num_threads(args.threads)
        print(f'spconv with 2 threads (guard off): max |diff| vs torch engine {diff2:.2e}')
        print(f'1 thread: torch engine {t_torch1 * 1e3:.1f} ms [{CPU_TIMES[-2] * 1e3:.1f} CPU], spconv '
              f'{t_sp * 1e3:.1f} ms [{CPU_TIMES[-1] * 1e3:.1f} CPU] (max |diff| {diff:.2e}); '
              f'ratio torch/spconv = {t_torch1 / t_sp:.2f} wall, {CPU_TIMES[-2] / CPU_TIMES[-1]:.2f} CPU')

    # dense baseline on a crop: the scan's bounding box is infeasible as a dense grid
    lo = st.coords[:, 1:].min(0).values
    hi = st.coords[:, 1:].max(0).values
    box = (hi - lo + 1).tolist()
    print(f'full bounding box {box} = {np.prod(box) / 1e6:.0f} M cells x {C} ch float32 = '
          f'{np.prod(box) * C * 4 / 2 ** 30:.0f} GiB per activation: dense infeasible, comparing on a crop')
    edge = int(round(args.crop / args.voxel_size))
    centre = st.coords[:, 1:].double().median(0).values.long()
    inside = ((st.coords[:, 1:] >= centre - edge // 2) & (st.coords[:, 1:] < centre + edge // 2)).all(1)
    inside &= st.coords[:, 3] >= st.coords[inside, 3].min() if inside.any() else inside
    crop_c = st.coords[inside]
    crop_lo = crop_c[:, 1:].min(0).values
    crop_box = (crop_c[:, 1:].max(0).values - crop_lo + 1).tolist()
    x_crop = SparseTensor(crop_c, feats[inside])
    t_crop_sparse = timed(lambda: fwd_bwd(x_crop), args.reps)
    dense_in = torch.zeros(1, C, *crop_box)
    rel = crop_c[:, 1:] - crop_lo
    dense_in[0, :, rel[:, 0], rel[:, 1], rel[:, 2]] = feats[inside].T
    w = conv.weight.detach().reshape(3, 3, 3, C, C).permute(4, 3, 0, 1, 2).contiguous().requires_grad_(True)

    def dense_fwd_bwd():
        d = dense_in.clone().requires_grad_(True)
        F.conv3d(d, w, padding=1).square().mean().backward()
        w.grad = None
    c_sparse = CPU_TIMES[-1]
    t_dense = timed(dense_fwd_bwd, max(1, args.reps // 2))
    print(f'crop {crop_box} ({int(np.prod(crop_box))} cells, {int(inside.sum())} active): '
          f'sparse {t_crop_sparse * 1e3:.1f} ms '
          f'[{c_sparse * 1e3:.1f} CPU], dense conv3d {t_dense * 1e3:.1f} ms [{CPU_TIMES[-1] * 1e3:.1f} CPU]; '
          f'ratio dense/sparse = {t_dense / t_crop_sparse:.1f} wall, {CPU_TIMES[-1] / c_sparse:.1f} CPU')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
