"""`ncal synth`: render synthetic frames; write preview PNGs, dataset shards, and a statistics print."""
from __future__ import annotations

NAME = 'synth'
OUTPUT_ARGS = ('out', 'shards')     # checked writable by the CLI before any frame is rendered
HELP = 'render synthetic LiDAR+camera frames (procedural streets): preview PNGs and/or dataset shards'


def add_arguments(parser) -> None:
    parser.add_argument('--out', default=None, help='folder for PNG previews (image, class overlay, labels, BEV)')
    parser.add_argument('--shards', default=None,
                        help='dataset folder to append the Samples to as tar shards (ros_ncal.data.shards)')
    parser.add_argument('--frames', type=int, default=2, help='number of frames (default 2)')
    parser.add_argument('--seed', type=int, default=0, help='world seed (replaces the config seed)')
    parser.add_argument('--start-index', type=int, default=0,
                        help='first sample index (disjoint ranges let several processes share one seed)')
    parser.add_argument('--config', default=None, help='synthetic YAML (default config/synthetic.yaml)')
    parser.add_argument('--drive', action='store_true',
                        help='consecutive 10 Hz frames of one scene (scene = --seed) instead of independent scenes')
    parser.add_argument('--samples-per-shard', type=int, default=64, help='with --shards (default 64)')
    parser.add_argument('--image-format', choices=('png', 'jpg'), default='png', help='with --shards')


def run(args) -> int:
    import itertools
    import sys
    import time
    from dataclasses import replace

    import numpy as np

    from ros_ncal.data.synthetic import BOX_CLASS_NAMES, CLASS_NAMES, SyntheticWorld, load_synthetic_config
    from ros_ncal.viz.synthetic_preview import save_previews

    if args.frames < 1 or args.start_index < 0:
        print('--frames must be >= 1 and --start-index >= 0', file=sys.stderr)
        return 2
    if args.out is None and args.shards is None:
        print('nothing to write: give --out (previews) and/or --shards (dataset)', file=sys.stderr)
        return 2
    cfg = replace(load_synthetic_config(args.config), seed=args.seed)
    world = SyntheticWorld(cfg)
    if args.drive:
        frames = itertools.islice(world.drive(args.seed, args.start_index + args.frames), args.start_index, None)
    else:
        frames = (world.sample(i) for i in range(args.start_index, args.start_index + args.frames))
    writer = None
    if args.shards is not None:
        from ros_ncal.data.shards import ShardWriter
        sensors = {'lidar': {'frame_id': cfg.lidar.frame_id, 'beams': cfg.lidar.n_beams,
                             'azimuth_steps': cfg.lidar.n_azimuth},
                   'camera': {'frame_id': cfg.camera.frame_id, 'width': cfg.camera.width,
                              'height': cfg.camera.height}}
        writer = ShardWriter(args.shards, samples_per_shard=args.samples_per_shard, image_format=args.image_format,
                             class_names={'points': list(CLASS_NAMES), 'boxes': list(BOX_CLASS_NAMES)},
                             sensors=sensors, durability='shard', source='synthetic')
    t0 = time.perf_counter()
    try:
        for k in range(args.frames):
            t = time.perf_counter()
            sample = next(frames)
            dt = time.perf_counter() - t
            index = args.start_index + k
            if args.out is not None:
                save_previews(sample, args.out, f'frame_{index:06d}')
            if writer is not None:
                writer.append(sample)
            counts = np.bincount(sample.point_labels, minlength=len(CLASS_NAMES))
            top = ', '.join(f'{CLASS_NAMES[c]} {counts[c]}' for c in np.argsort(-counts)[:6] if counts[c])
            boxes = np.bincount(sample.box_labels, minlength=len(BOX_CLASS_NAMES))
            print(f'frame {index}: {sample.num_points} points ({top}); boxes: '
                  + ', '.join(f'{n} {b}' for n, b in zip(BOX_CLASS_NAMES, boxes)) + f'; rendered in {dt:.2f} s')
    finally:
        if writer is not None:
            writer.close()
    where = ', '.join(x for x in (args.out and f'previews in {args.out}',
                                  args.shards and f'shards in {args.shards}') if x)
    print(f'{args.frames} frame(s) in {time.perf_counter() - t0:.1f} s; {where}')
    return 0
