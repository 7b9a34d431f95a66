"""`ncal prepare`: convert KITTI (object, raw) / SemanticKITTI / nuScenes / rosbag2 / synthetic data into dataset
shards."""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

NAME = 'prepare'
HELP = 'convert a recording or dataset folder into append-only tar shards (docs/data.md)'

SOURCES = ('kitti', 'kitti-raw', 'semantickitti', 'nuscenes', 'rosbag', 'synthetic')


def _writer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('--out', required=True, help='dataset directory to write (created; must be empty unless --append)')
    p.add_argument('--append', action='store_true', help='append to an existing dataset directory')
    p.add_argument('--samples-per-shard', type=int, default=4, help='samples per tar shard (default 4)')
    p.add_argument('--image-format', choices=('png', 'jpg'), default='png', help='png (lossless, default) or jpg')
    p.add_argument('--jpeg-quality', type=int, default=95)
    p.add_argument('--durability', choices=('shard', 'sample'), default='shard',
                   help="'shard' (default): commit full shards, fastest, rerun after a crash; "
                        "'sample': every sample durable on return")
    p.add_argument('--max', type=int, default=None, help='stop after this many samples')
    p.add_argument('--config', default=None, help='reader config YAML (config/datasets/<source>.yaml)')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest='source', metavar='SOURCE', required=True)
    p = sub.add_parser('kitti', help='KITTI object split folder (velodyne, image_2, calib[, label_2])')
    p.add_argument('path', help='split folder (e.g. .../training) or the dataset root holding training/')
    p.add_argument('--split', default=None, help='with a dataset root: training or testing (default training)')
    _writer_args(p)
    p = sub.add_parser('kitti-raw', help='KITTI raw drive folder (image_0X/data, velodyne_points/data; the day\'s '
                                         'calib_*.txt one level up)')
    p.add_argument('path', help='drive folder, e.g. .../2011_09_26/2011_09_26_drive_0005_sync')
    p.add_argument('--camera', type=int, choices=(2, 3), default=None, help='2 = image_02 (default), 3 = image_03')
    p.add_argument('--hz', type=float, default=None, help='frame rate of synthesized stamps when the drive has no '
                                                          'timestamps.txt (default 10)')
    _writer_args(p)
    p = sub.add_parser('semantickitti', help='SemanticKITTI sequence folder (+ odometry image_2 and calib)')
    p.add_argument('path', help='sequence folder, e.g. .../sequences/00')
    p.add_argument('--images', default=None, help='odometry image_2 folder (default <sequence>/image_2)')
    p.add_argument('--calib', default=None, help='odometry calib.txt or YAML with K, T_cam_lidar')
    _writer_args(p)
    p = sub.add_parser('nuscenes', help='mmdetection3d nuScenes info pickle (v1.1), one Sample per camera')
    p.add_argument('path', help='info .pkl')
    p.add_argument('--data-root', default=None, help='folder with samples/<SENSOR>/ (default: the pickle folder)')
    p.add_argument('--cameras', default=None, help='comma-separated camera names (default all six)')
    _writer_args(p)
    p = sub.add_parser('rosbag', help='rosbag2 (mcap or sqlite3): PointCloud2 + Image/CompressedImage + CameraInfo + /tf_static')
    p.add_argument('path', help='bag directory or storage file')
    p.add_argument('--points-topic', default=None)
    p.add_argument('--image-topic', default=None)
    p.add_argument('--camera-info-topic', default=None)
    p.add_argument('--tolerance-ms', type=float, default=None, help='pairing tolerance (default 50)')
    p.add_argument('--override', default=None, help='YAML with K and/or T_cam_lidar replacing CameraInfo / TF')
    p.add_argument('--distortion', choices=('undistort', 'error', 'ignore'), default=None)
    _writer_args(p)
    p = sub.add_parser('synthetic', help='the procedural synthetic world (ros_ncal.data.synthetic)')
    p.add_argument('--frames', type=int, required=True, help='number of samples')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--drive', action='store_true', help='consecutive frames of one scene instead of independent scenes')
    p.add_argument('--synthetic-config', default=None, help='config/synthetic.yaml by default')
    _writer_args(p)


def _source_items(args):
    """-> (iterator of Sample | SkipRecord, total or None, class_names, sensors)."""
    from ros_ncal.data import labels
    from ros_ncal.data.readers import load_reader_config
    if args.source == 'kitti':
        from ros_ncal.data.readers.kitti import KittiReaderConfig, iter_kitti_samples, kitti_frames
        cfg = load_reader_config(KittiReaderConfig, args.config)
        split = Path(args.path)
        if args.split or not (split / cfg.velodyne_dir).is_dir():
            split = split / (args.split or 'training')
        frames = kitti_frames(split, cfg)
        if args.max is not None:
            frames = frames[:args.max]
        names = [None] * (max(cfg.box_classes.values()) + 1) if cfg.box_classes else []
        for n, i in cfg.box_classes.items():
            names[i] = n if names[i] is None else f'{names[i]}|{n}'
        return (iter_kitti_samples(split, cfg, frames), len(frames), {'boxes': names},
                {'lidar': {'frame': cfg.frame_ids[0], 'model': 'Velodyne HDL-64E'},
                 'camera': {'frame': cfg.frame_ids[1], 'model': 'KITTI camera 2 (left colour, rectified)'}})
    if args.source == 'kitti-raw':
        from ros_ncal.data.readers.kitti_raw import KittiRawReaderConfig, iter_kitti_raw_samples, open_kitti_raw_drive
        cfg = load_reader_config(KittiRawReaderConfig, args.config, camera=args.camera, hz=args.hz)
        drive = open_kitti_raw_drive(args.path, cfg)
        total = len(drive.frames) if args.max is None else min(len(drive.frames), args.max)
        return (iter_kitti_raw_samples(args.path, cfg, slice(0, total)), total, None,
                {'lidar': {'frame': cfg.frame_ids[0], 'model': 'Velodyne HDL-64E'},
                 'camera': {'frame': cfg.frame_ids[1], 'model': f'KITTI camera {cfg.camera} (colour, rectified)'},
                 'drive': drive.name, 'stamps': drive.stamps_source})
    if args.source == 'semantickitti':
        from ros_ncal.data.readers.semantickitti import (SemanticKittiReaderConfig, iter_semantickitti_samples,
                                                         semantickitti_scans)
        cfg = load_reader_config(SemanticKittiReaderConfig, args.config, calib=args.calib, image_dir=args.images)
        total = len(semantickitti_scans(args.path))
        return (iter_semantickitti_samples(args.path, cfg), total, {'points': list(labels.SEMANTICKITTI_CLASSES)},
                {'lidar': {'frame': cfg.frame_ids[0]}, 'camera': {'frame': cfg.frame_ids[1]}})
    if args.source == 'nuscenes':
        from ros_ncal.data.readers.nuscenes import NuScenesReaderConfig, iter_nuscenes_samples, load_info
        cams = tuple(c.strip() for c in args.cameras.split(',')) if args.cameras else None
        cfg = load_reader_config(NuScenesReaderConfig, args.config, cameras=cams)
        total = len(load_info(args.path)['data_list']) * len(cfg.cameras)
        return (iter_nuscenes_samples(args.path, args.data_root, cfg), total,
                {'boxes': list(labels.NUSCENES_BOX_CLASSES)},
                {'lidar': {'frame': cfg.lidar_frame}, 'cameras': list(cfg.cameras)})
    if args.source == 'rosbag':
        from ros_ncal.data.readers.rosbag import RosbagReaderConfig, iter_rosbag_samples
        cfg = load_reader_config(RosbagReaderConfig, args.config, points_topic=args.points_topic,
                                 image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
                                 tolerance_ms=args.tolerance_ms, override=args.override, distortion=args.distortion)
        return iter_rosbag_samples(args.path, cfg), None, None, {'bag': str(args.path)}
    if args.source == 'synthetic':
        import dataclasses
        from ros_ncal.data.synthetic import BOX_CLASS_NAMES, CLASS_NAMES, SyntheticWorld, load_synthetic_config
        scfg = dataclasses.replace(load_synthetic_config(args.synthetic_config), seed=args.seed)
        world = SyntheticWorld(scfg)
        n = args.frames if args.max is None else min(args.frames, args.max)
        items = world.drive(args.seed, n) if args.drive else (world.sample(i) for i in range(n))
        return items, n, {'points': list(CLASS_NAMES), 'boxes': list(BOX_CLASS_NAMES)}, {'synthetic_seed': args.seed}
    raise ValueError(f'unknown source {args.source}')


def _limited(items, limit):
    from ros_ncal.data.sample import Sample
    n = 0
    for item in items:
        if limit is not None and n >= limit:
            return
        if isinstance(item, Sample):
            n += 1
        yield item


def run(args) -> int:
    from ros_ncal.data.readers import write_samples
    from ros_ncal.data.readers.rosbag import BagInputError
    from ros_ncal.data.readers.semantickitti import MissingCameraDataError
    from ros_ncal.data.shards import ShardError, ShardWriter
    out = Path(args.out)
    if out.exists() and any(out.glob('shard-*.tar')) and not args.append:
        print(f'error: {out} already holds shards; pass --append to add to it or choose a new --out', file=sys.stderr)
        return 2
    try:
        items, total, class_names, sensors = _source_items(args)
        items = iter(items)
        first = next(items, None)  # a source that cannot start (no images, no CameraInfo) fails before any write
        items = itertools.chain([first] if first is not None else [], items)
        with ShardWriter(out, samples_per_shard=args.samples_per_shard, image_format=args.image_format,
                         jpeg_quality=args.jpeg_quality, class_names=class_names, sensors=sensors,
                         durability=args.durability, source=args.source) as writer:
            t0 = time.time()
            report = write_samples(_limited(items, args.max), writer, total=total, desc=f'prepare {args.source}',
                                   progress=not args.no_progress)
            elapsed = time.time() - t0
            total_written = writer.num_samples
    except (BagInputError, MissingCameraDataError, FileNotFoundError, ShardError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(report.summary())
    print(f'{out}: {total_written} samples in total ({elapsed:.1f} s for this run)')
    stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime())
    (out / f'prepare-report-{stamp}.json').write_text(json.dumps({
        'source': args.source, 'input': str(getattr(args, 'path', '')), 'written': report.written,
        'skipped': [{'what': r.what, 'reason': r.reason} for r in report.skipped], 'seconds': round(elapsed, 3),
        'total_in_dataset': total_written}, indent=1))
    return 0 if report.written > 0 else 1
