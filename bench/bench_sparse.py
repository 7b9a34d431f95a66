#!/usr/bin/env python3
"""Benchmark one submanifold 3x3x3 conv layer (32 -> 32) on ~50k active voxels of a real KITTI scan.

One run, interleaved repetitions (every configuration once per round, so a load change on a shared machine
hits all of them alike), forward+backward with the kernel map cached:

* the torch engine (native CPU kernels) at 1, 2, ... threads up to all cores;
* the same engine's pure-PyTorch path (gather - matmul - index_add_; what CUDA / autocast use) at 1 thread
  (``--pure-threads 1,2`` adds more; on a loaded 2-core machine its 2-thread run takes minutes);
* spconv 2.x at one thread when installed (its CPU submanifold conv is only correct with one thread);
* torchsparse (CPU) at the same thread counts when importable (``--torchsparse-path DIR`` adds DIR to
  sys.path; v2.0.0 built from ../shared/vendor, see docs/performance.md);

then the kernel-map build and a rebuilt-map fwd+bwd, and dense conv3d on the bounding box of a crop (the whole
scan's box is far too large for a dense grid). Wall times are medians; process CPU time in brackets.

    .venv/bin/python bench/bench_sparse.py [--voxels 50000] [--threads 1,2,all] [--reps 7] [--no-dense]
    .venv/bin/python bench/bench_sparse.py --device cuda      # GPU: torch engine (and spconv if it has CUDA)
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
from ros_ncal.models.sparse.engines import EngineUnavailableError, native  # noqa: E402


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


SYNC = [lambda: None]  # torch.cuda.synchronize on a GPU run


def timed(fn, reps: int, threads: int = None):
    """(median wall s, median process CPU s) of fn over reps calls after one warm-up."""
    if threads:
        torch.set_num_threads(threads)
    fn()
    SYNC[0]()
    times, cpu = [], []
    for _ in range(reps):
        c = time.process_time()
        t = time.perf_counter()
        fn()
        SYNC[0]()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(times), statistics.median(cpu)


def interleaved(configs: dict, reps: int) -> dict:
    """configs: name -> (threads, fn). Each round runs every configuration once; returns name -> (wall, cpu)."""
    samples = {name: ([], []) for name in configs}
    for threads, fn in configs.values():  # warm-up (kernel maps, native build, allocator)
        torch.set_num_threads(threads)
        fn()
    for _ in range(reps):
        for name, (threads, fn) in configs.items():
            torch.set_num_threads(threads)
            c = time.process_time()
            t = time.perf_counter()
            fn()
            SYNC[0]()
            samples[name][0].append(time.perf_counter() - t)
            samples[name][1].append(time.process_time() - c)
    return {name: (statistics.median(w), statistics.median(c)) for name, (w, c) in samples.items()}


def thread_counts(spec: str):
    out = []
    for tok in spec.split(','):
        n = (os.cpu_count() or 1) if tok.strip() == 'all' else int(tok)
        if n not in out:
            out.append(n)
    return out


def torchsparse_runner(path, coords: torch.Tensor, feats: torch.Tensor, weight: torch.Tensor):
    """fwd+bwd closure through torchsparse's CPU conv (or None with the reason)."""
    if path:
        sys.path.insert(0, str(path))
    try:
        import torchsparse
        import torchsparse.backend
        import torchsparse.nn.functional as tsF
    except ImportError as exc:
        return None, f'not importable ({exc})'
    if not hasattr(torchsparse.backend, 'build_mask_from_kmap'):
        # v2.0.0: the hashmap kernel-map builder calls this CUDA-only helper even on CPU, where its result is
        # unused (the CPU conv ignores the masks); stand in for it so the CPU path runs unchanged.
        torchsparse.backend.build_mask_from_kmap = lambda n_in, n_out, nbmaps, nbsizes: (None, None)
    # torchsparse: coords [x, y, z, batch]; odd-kernel offsets with x fastest (ours: z fastest)
    ts_coords = torch.cat([coords[:, 1:], coords[:, :1]], 1).int().contiguous()
    k = round(weight.shape[0] ** (1 / 3))
    c_in, c_out = weight.shape[1:]
    ts_w = weight.detach().reshape(k, k, k, c_in, c_out).permute(2, 1, 0, 3, 4).reshape(-1, c_in, c_out)
    ts_w = ts_w.contiguous().requires_grad_(True)
    x = torchsparse.SparseTensor(feats, ts_coords)

    def forward(f):
        x.feats = f
        return tsF.conv3d(x, ts_w, 3).feats

    def fwd_bwd():
        f = feats.detach().requires_grad_(True)
        forward(f).square().mean().backward()
        ts_w.grad = None
    try:
        with torch.no_grad():
            out = forward(feats)
    except Exception as exc:  # noqa: BLE001  (report any failure of the optional engine as one line)
        return None, f'CPU conv failed: {type(exc).__name__}: {exc}'
    return (fwd_bwd, out), f'torchsparse {getattr(torchsparse, "__version__", "?")}'


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--scan', default=str(REPO.parent / 'shared' / 'data' / 'kitti_object' / 'training' / 'velodyne'
                                          / '000000.bin'))
    ap.add_argument('--voxels', type=int, default=50000)
    ap.add_argument('--voxel-size', type=float, default=0.05)
    ap.add_argument('--channels', type=int, default=32)
    ap.add_argument('--threads', default='1,2,all', help='comma-separated thread counts; "all" = every core')
    ap.add_argument('--reps', type=int, default=7)
    ap.add_argument('--crop', type=float, default=4.0, help='edge (m) of the crop used for the dense baseline')
    ap.add_argument('--no-dense', action='store_true', help='skip the dense conv3d crop baseline')
    ap.add_argument('--torchsparse-path', default=os.environ.get('NCAL_TORCHSPARSE_PATH'),
                    help='directory holding a torchsparse build (added to sys.path)')
    ap.add_argument('--pure-threads', default='1', help="thread counts for the pure-PyTorch path ('' = none)")
    ap.add_argument('--device', default='cpu', help='cpu or cuda[:i] (GPU: thread counts do not apply)')
    args = ap.parse_args()
    device = torch.device(args.device)
    threads = thread_counts(args.threads) if device.type == 'cpu' else [torch.get_num_threads()]
    if device.type == 'cuda':
        SYNC[0] = torch.cuda.synchronize
    t_max = max(threads)
    torch.manual_seed(0)
    pts = load_scan(Path(args.scan))
    st = active_voxels(pts, args.voxel_size, args.voxels)
    if device.type != 'cpu':
        st = SparseTensor(st.coords.to(device), st.feats.to(device))
        print(f'device {device}: {torch.cuda.get_device_name(device) if device.type == "cuda" else device}')
    C = args.channels
    feats = torch.randn(st.num_voxels, C, device=device)
    print(f'scan {Path(args.scan).name}: {len(pts)} points -> {st.num_voxels} active voxels at {args.voxel_size} m; '
          f'{C}->{C} submanifold 3x3x3; threads {threads} of {os.cpu_count()} cores; '
          f'load average {os.getloadavg()[0]:.1f}')
    print(f'native kernels: {"yes" if native.available() else "no (" + str(native.unavailable_reason()) + ")"}')

    conv = SubMConv3d(C, C).to(device)
    x_cached = SparseTensor(st.coords, feats)

    def fwd_bwd(x: SparseTensor):
        f = x.feats.detach().requires_grad_(True)
        y = conv(x.replace_feats(f))
        y.feats.square().mean().backward()
        conv.weight.grad = None

    def pure_torch(fn):
        def run():
            supports = native.supports
            native.supports = lambda *t: False
            try:
                fn()
            finally:
                native.supports = supports
        return run

    configs = {f'torch engine, {t} thread(s)': (t, lambda: fwd_bwd(x_cached)) for t in threads}
    if device.type == 'cpu':
        for t in (thread_counts(args.pure_threads) if args.pure_threads else []):
            configs[f'torch engine pure-PyTorch path, {t} thread(s)'] = (t, pure_torch(lambda: fwd_bwd(x_cached)))
    notes = []
    with torch.no_grad():
        ref = conv(x_cached).feats
    try:
        sp = get_engine('spconv')
        x_sp = SparseTensor(st.coords, feats)

        def sp_fwd_bwd():
            f = feats.detach().requires_grad_(True)
            sp.submanifold_conv(x_sp.replace_feats(f), conv.weight, 3, 1).feats.square().mean().backward()
            conv.weight.grad = None
        configs['spconv, 1 thread' if device.type == 'cpu' else 'spconv'] = (1, sp_fwd_bwd)
        torch.set_num_threads(1)
        with torch.no_grad():
            diff = (sp.submanifold_conv(x_sp, conv.weight, 3, 1).feats - ref).abs().max().item()
        notes.append(f'spconv: max |diff| vs torch engine {diff:.1e}')
    except EngineUnavailableError as exc:
        notes.append(f'spconv: not available ({exc})')
    ts, why = (torchsparse_runner(args.torchsparse_path, st.coords, feats, conv.weight) if device.type == 'cpu'
               else (None, 'CPU comparison only here'))
    if ts is None:
        notes.append(f'torchsparse: {why}')
    else:
        ts_fn, ts_out = ts
        notes.append(f'{why}: max |diff| vs torch engine {(ts_out - ref).abs().max().item():.1e}')
        for t in threads:
            configs[f'torchsparse, {t} thread(s)'] = (t, ts_fn)

    res = interleaved(configs, args.reps)
    base = res[f'torch engine, {threads[0]} thread(s)'][0]
    spc = res.get('spconv, 1 thread', res.get('spconv', (None,)))[0]
    print(f'\nfwd+bwd, cached kernel map, {args.reps} interleaved rounds (median):')
    print('| engine | threads | wall | process CPU | speed vs spconv 1 thread | speed vs torch engine 1 thread |')
    print('|---|---|---|---|---|---|')
    for name, (wall, cpu) in res.items():
        label, nthr = name.rsplit(', ', 1) if ', ' in name else (name, str(device))
        vs_sp = f'{spc / wall:.2f}x' if spc else '-'
        print(f'| {label} | {nthr.split()[0]} | {wall * 1e3:.1f} ms | {cpu * 1e3:.1f} ms | {vs_sp} | '
              f'{base / wall:.2f}x |')
    for line in notes:
        print(line)

    cs = st.coordinate_set
    t_map, c_map = timed(lambda: build_submanifold_map(cs, 3, 1), args.reps, threads=1)
    kmap = build_submanifold_map(cs, 3, 1)
    where = '1 thread' if device.type == 'cpu' else device
    print(f'\nkernel map build ({where}): {t_map * 1e3:.1f} ms [{c_map * 1e3:.1f} ms CPU] ({kmap.num_pairs()} pairs, '
          f'{kmap.num_pairs() / st.num_voxels:.1f} neighbours per voxel)')
    for t in sorted({1, t_max}) if device.type == 'cpu' else threads:
        w, c = timed(lambda: fwd_bwd(SparseTensor(st.coords, feats, cache=KernelMapCache())), args.reps, threads=t)
        print(f'torch engine fwd+bwd with the map rebuilt each call, {t} thread(s): {w * 1e3:.1f} ms '
              f'[{c * 1e3:.1f} CPU]')

    if args.no_dense:
        return 0
    torch.set_num_threads(t_max)
    lo = st.coords[:, 1:].min(0).values
    hi = st.coords[:, 1:].max(0).values
    box = (hi - lo + 1).tolist()
    print(f'full bounding box {box} = {np.prod(box) / 1e6:.0f} M cells x {C} ch float32 = '
          f'{np.prod(box) * C * 4 / 2 ** 30:.0f} GiB per activation: dense infeasible, comparing on a crop')
    edge = int(round(args.crop / args.voxel_size))
    centre = st.coords[:, 1:].double().median(0).values.long()
    inside = ((st.coords[:, 1:] >= centre - edge // 2) & (st.coords[:, 1:] < centre + edge // 2)).all(1)
    crop_c = st.coords[inside]
    crop_lo = crop_c[:, 1:].min(0).values
    crop_box = (crop_c[:, 1:].max(0).values - crop_lo + 1).tolist()
    x_crop = SparseTensor(crop_c, feats[inside])
    t_crop_sparse, c_sparse = timed(lambda: fwd_bwd(x_crop), args.reps)
    dense_in = torch.zeros(1, C, *crop_box, device=device)
    rel = crop_c[:, 1:] - crop_lo
    dense_in[0, :, rel[:, 0], rel[:, 1], rel[:, 2]] = feats[inside].T
    w = conv.weight.detach().reshape(3, 3, 3, C, C).permute(4, 3, 0, 1, 2).contiguous().requires_grad_(True)

    def dense_fwd_bwd():
        d = dense_in.clone().requires_grad_(True)
        F.conv3d(d, w, padding=1).square().mean().backward()
        w.grad = None
    t_dense, c_dense = timed(dense_fwd_bwd, max(1, args.reps // 2))
    print(f'crop {crop_box} ({int(np.prod(crop_box))} cells, {int(inside.sum())} active), {t_max} thread(s): '
          f'sparse {t_crop_sparse * 1e3:.1f} ms [{c_sparse * 1e3:.1f} CPU], dense conv3d {t_dense * 1e3:.1f} ms '
          f'[{c_dense * 1e3:.1f} CPU]; ratio dense/sparse = {t_dense / t_crop_sparse:.1f} wall')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
