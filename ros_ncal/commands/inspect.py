"""`ncal inspect`: statistics of a shard dataset and LiDAR-on-image overlay PNGs."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAME = 'inspect'
HELP = 'dataset statistics and overlays (points projected with each sample\'s extrinsic, boxes as wireframes)'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('dataset', help='shard dataset directory (written by ncal prepare / the collector)')
    parser.add_argument('--out', default=None, help='write overlay PNGs and stats.json here')
    parser.add_argument('--max', type=int, default=8, help='overlays to render (default 8)')
    parser.add_argument('--color', choices=('depth', 'class', 'intensity'), default='depth',
                        help="point colouring (class needs point labels; falls back to depth without them)")
    parser.add_argument('--radius', type=int, default=1, help='point splat radius in pixels')
    parser.add_argument('--max-depth', type=float, default=60.0, help='depth colour scale end (m)')
    parser.add_argument('--stats-limit', type=int, default=None, help='compute statistics on at most N samples')


def run(args) -> int:
    from PIL import Image

    from ros_ncal.data.inspect import dataset_stats, format_stats
    from ros_ncal.viz.sample_overlay import render_overlay
    from ros_ncal.data.shards import ShardDataset, ShardError
    try:
        ds = ShardDataset(args.dataset)
    except ShardError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(f'{args.dataset}: {len(ds)} samples in {ds.num_shards} shards; manifest total '
          f'{ds.manifest.get("total", "n/a")}')
    for r in ds.skipped:
        print(f'  skipped {r.what}: {r.reason}')
    for n in ds.notes:
        print(f'  note: {n}')
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    rendered = 0

    def samples():
        nonlocal rendered
        for i, s in enumerate(ds):
            if args.stats_limit is not None and i >= args.stats_limit:
                return
            if out is not None and rendered < args.max:
                mode = args.color if (args.color != 'class' or s.point_labels is not None) else 'depth'
                img = render_overlay(s, color=mode, radius=args.radius, max_depth=args.max_depth)
                name = str(s.meta.get('frame', i)).replace('/', '_')
                Image.fromarray(img).save(out / f'overlay_{rendered:03d}_{name}_{mode}.png', optimize=True)
                rendered += 1
            yield s

    stats = dataset_stats(samples()).as_dict(ds.class_names)
    print(format_stats(stats))
    if out is not None:
        stats['skipped'] = [{'what': r.what, 'reason': r.reason} for r in ds.skipped]
        stats['notes'] = list(ds.notes)
        (out / 'stats.json').write_text(json.dumps(stats, indent=1))
        print(f'{rendered} overlays and stats.json in {out}')
    return 0
