"""Shard write / read throughput vs reading the raw KITTI files, measured in the same run.

    .venv/bin/python bench/bench_shards.py [--kitti DIR] [--samples 40] [--repeat 3]

The real KITTI training frames are cycled to --samples samples. Baseline: read_kitti_frame (velodyne .bin +
image_2 .png decode + calib + label_2 parse). Shards: ShardWriter in both durability modes (png and jpg)
and ShardDataset iteration (decode to validated Samples). Files are in the page cache for both sides
(warm reads: this measures decode/parse cost, not the disk). Prints samples/s, MB/s and the ratios.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ros_ncal.data.readers.kitti import kitti_frames, read_kitti_frame  # noqa: E402
from ros_ncal.data.shards import ShardDataset, ShardWriter  # noqa: E402


def best_of(fn, repeat):
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.glob('shard-*.tar'))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--kitti', default=str(REPO.parent / 'shared' / 'data' / 'kitti_object' / 'training'))
    ap.add_argument('--samples', type=int, default=40)
    ap.add_argument('--repeat', type=int, default=3, help='best of N timings')
    ap.add_argument('--samples-per-shard', type=int, default=4)
    args = ap.parse_args()
    split = Path(args.kitti)
    frames = kitti_frames(split)
    order = [frames[i % len(frames)] for i in range(args.samples)]
    raw_bytes = sum((split / sub / f'{f}.{ext}').stat().st_size for f in order
                    for sub, ext in (('velodyne', 'bin'), ('image_2', 'png'), ('calib', 'txt'), ('label_2', 'txt')))
    n = len(order)
    t_raw, samples = best_of(lambda: [read_kitti_frame(split, f) for f in order], args.repeat)
    rows = [('raw KITTI files: read+decode', n / t_raw, raw_bytes / t_raw / 1e6, raw_bytes)]
    results = {}
    tmp = Path(tempfile.mkdtemp(prefix='bench_shards_'))
    try:
        for fmt, durability in (('png', 'shard'), ('png', 'sample'), ('jpg', 'shard')):
            d = tmp / f'{fmt}_{durability}'

            def write():
                shutil.rmtree(d, ignore_errors=True)
                with ShardWriter(d, samples_per_shard=args.samples_per_shard, image_format=fmt,
                                 durability=durability) as w:
                    for s in samples:
                        w.append(s)
            t_w, _ = best_of(write, args.repeat)
            nbytes = dir_bytes(d)
            rows.append((f'shard write {fmt}, durability={durability}', n / t_w, nbytes / t_w / 1e6, nbytes))
            if durability == 'shard':
                t_r, got = best_of(lambda: list(ShardDataset(d)), args.repeat)
                assert len(got) == n
                rows.append((f'shard read {fmt} (decode to Samples)', n / t_r, nbytes / t_r / 1e6, nbytes))
                results[fmt] = t_r
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f'{n} samples ({len(frames)} real KITTI frames cycled), best of {args.repeat}, '
          f'{args.samples_per_shard} samples/shard')
    print(f'{"":45s} {"samples/s":>10s} {"MB/s":>8s} {"bytes":>12s}')
    for name, sps, mbs, nb in rows:
        print(f'{name:45s} {sps:10.1f} {mbs:8.1f} {nb:12d}')
    print(f'ratio shard read png / raw read: {t_raw / results["png"]:.2f}x')
    print(f'ratio shard read jpg / raw read: {t_raw / results["jpg"]:.2f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())
