"""`ncal bag`: write KITTI frames into a rosbag2, summarize a bag."""
from __future__ import annotations

import json
import sys

NAME = 'bag'
HELP = ('rosbag2 tools: write-kitti (KITTI object folder -> mcap/sqlite3 bag), write-kitti-raw (a KITTI raw drive '
        'as a robot records it, nominal optionally off, truth beside the bag), info')


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest='bag_command', metavar='BAG_COMMAND')
    w = sub.add_parser('write-kitti', help='KITTI object folder -> rosbag2 (points, image, camera_info, /tf_static)')
    w.add_argument('kitti_dir', help='KITTI object root (with training/) or a split folder (with velodyne/)')
    w.add_argument('out', help='OUT.mcap / OUT.db3 (bag directory OUT is created) or a directory (see --storage)')
    w.add_argument('--frames', nargs='+', default=None, help='frame ids (default: all complete frames)')
    w.add_argument('--storage', choices=('mcap', 'sqlite3'), default=None, help='default: from the suffix, else mcap')
    w.add_argument('--repeat', type=int, default=1, help='write the frame list this many times')
    w.add_argument('--hz', type=float, default=10.0, help='frame rate of the stamps')
    r = sub.add_parser('write-kitti-raw', help='KITTI raw drive -> 10 Hz rosbag2 as `ros2 bag record` gives it '
                                               '(best-effort sensor topics, /tf_static = the nominal), truth in '
                                               'OUT.truth.json beside the bag')
    r.add_argument('drive_dir', help="KITTI raw drive folder (image_02/data, velodyne_points/data; the day's "
                                     'calib_*.txt one level up)')
    r.add_argument('out', help='bag directory OUT (or OUT.mcap / OUT.db3); the truth goes to OUT.truth.json')
    r.add_argument('--error', default=None, metavar='DEG,M',
                   help='/tf_static nominal off the true extrinsic by exactly DEG degrees and M metres '
                        '(seeded random axis / direction; default 0,0 = the recorded extrinsic)')
    r.add_argument('--seed', type=int, default=0, help='seed of the --error axis and direction (default 0)')
    r.add_argument('--frames', default=None, metavar='A:B', help='slice of the drive\'s frames (default all)')
    r.add_argument('--camera', type=int, choices=(2, 3), default=2, help='2 = image_02 (default), 3 = image_03')
    r.add_argument('--storage', choices=('mcap', 'sqlite3'), default=None, help='default: from the suffix, else mcap')
    r.add_argument('--force', action='store_true', help='replace an existing OUT and its truth file')
    i = sub.add_parser('info', help='topics, types, counts, duration, offered QoS; metadata cross-check')
    i.add_argument('bag', help='bag directory or storage file')
    i.add_argument('--json', action='store_true', help='print JSON')


def run(args) -> int:
    if args.bag_command == 'write-kitti':
        from ros_ncal.bag import bag_summary
        from ros_ncal.bag.kitti import write_kitti_bag
        try:
            bag_dir, counts = write_kitti_bag(args.kitti_dir, args.out, frames=args.frames, storage=args.storage,
                                              repeat=args.repeat, hz=args.hz)
        except (FileNotFoundError, ValueError) as exc:
            print(f'ncal bag write-kitti: {exc}', file=sys.stderr)
            return 2
        print(f'wrote {bag_dir}: {counts}')
        print(bag_summary(bag_dir).format())
        return 0
    if args.bag_command == 'write-kitti-raw':
        return _write_kitti_raw(args)
    if args.bag_command == 'info':
        from ros_ncal.bag import bag_summary
        try:
            s = bag_summary(args.bag)
        except (FileNotFoundError, ValueError) as exc:
            print(f'ncal bag info: {exc}', file=sys.stderr)
            return 2
        print(json.dumps(s.as_dict(), indent=2) if args.json else s.format())
        return 0
    print('ncal bag: choose write-kitti, write-kitti-raw or info (see ncal bag -h)', file=sys.stderr)
    return 2


def _write_kitti_raw(args) -> int:
    from ros_ncal.bag import bag_summary
    from ros_ncal.bag.kitti_raw import parse_frame_range, write_kitti_raw_bag
    from ros_ncal.bag.perturbed import truth_path
    from ros_ncal.data.readers.kitti_raw import KittiRawReaderConfig, open_kitti_raw_drive
    err = (0.0, 0.0)
    try:
        if args.error is not None:
            err = tuple(float(x) for x in args.error.split(','))
            if len(err) != 2 or min(err) < 0:
                raise ValueError
    except ValueError:
        print(f'ncal bag write-kitti-raw: --error expects DEG,M >= 0 (e.g. 10,0.5), got {args.error!r}',
              file=sys.stderr)
        return 2
    try:
        reader = KittiRawReaderConfig(camera=args.camera)
        frames = parse_frame_range(args.frames, len(open_kitti_raw_drive(args.drive_dir, reader).frames))
        bag_dir, counts, truth = write_kitti_raw_bag(args.drive_dir, args.out, err[0], err[1], args.seed, frames,
                                                     storage=args.storage, reader=reader, overwrite=args.force)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f'ncal bag write-kitti-raw: {exc}', file=sys.stderr)
        return 2
    print(f'wrote {bag_dir}: {len(truth["frames"])} frames ({truth["stamps"]}), {counts}')
    if truth['skipped']:
        print(f'skipped {len(truth["skipped"])} unreadable frame(s): {truth["skipped"][:3]}')
    print(f'/tf_static nominal off the truth by {truth["error_deg"]:.3f} deg / {truth["error_m"] * 100:.2f} cm; '
          f'truth: {truth_path(bag_dir)}')
    print(bag_summary(bag_dir).format())
    return 0
