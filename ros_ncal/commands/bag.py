"""`ncal bag`: write KITTI frames into a rosbag2, summarize a bag."""
from __future__ import annotations

import json
import sys

NAME = 'bag'
HELP = 'rosbag2 tools: write-kitti (KITTI folder -> mcap/sqlite3 bag), info'


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest='bag_command', metavar='BAG_COMMAND')
    w = sub.add_parser('write-kitti', help='KITTI object folder -> rosbag2 (points, image, camera_info, /tf_static)')
    w.add_argument('kitti_dir', help='KITTI object root (with training/) or a split folder (with velodyne/)')
    w.add_argument('out', help='OUT.mcap / OUT.db3 (bag directory OUT is created) or a directory (see --storage)')
    w.add_argument('--frames', nargs='+', default=None, help='frame ids (default: all complete frames)')
    w.add_argument('--storage', choices=('mcap', 'sqlite3'), default=None, help='default: from the suffix, else mcap')
    w.add_argument('--repeat', type=int, default=1, help='write the frame list this many times')
    w.add_argument('--hz', type=float, default=10.0, help='frame rate of the stamps')
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
    if args.bag_command == 'info':
        from ros_ncal.bag import bag_summary
        try:
            s = bag_summary(args.bag)
        except (FileNotFoundError, ValueError) as exc:
            print(f'ncal bag info: {exc}', file=sys.stderr)
            return 2
        print(json.dumps(s.as_dict(), indent=2) if args.json else s.format())
        return 0
    print('ncal bag: choose write-kitti or info (see ncal bag -h)', file=sys.stderr)
    return 2
