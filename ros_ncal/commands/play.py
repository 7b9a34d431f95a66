"""`ncal play BAG`: replay a rosbag2 (mcap / sqlite3) onto the live ROS graph."""
from __future__ import annotations

import sys

NAME = 'play'
HELP = 'replay a rosbag2 (mcap or sqlite3) with original header stamps; /tf_static latched'


def _bool(s: str) -> bool:
    if s.lower() in ('1', 'true', 'yes', 'on'):
        return True
    if s.lower() in ('0', 'false', 'no', 'off'):
        return False
    raise ValueError(f'expected true/false, got {s!r}')


def add_arguments(parser) -> None:
    parser.add_argument('bag', help='bag directory or storage file (.mcap / .db3)')
    parser.add_argument('--rate', type=float, default=1.0, help='playback speed factor; 0 = as fast as possible')
    parser.add_argument('--loop', action='store_true', help='repeat until interrupted')
    parser.add_argument('--topics', nargs='+', default=None, help='only these topics')
    parser.add_argument('--start-paused', type=_bool, default=False, metavar='BOOL',
                        help='wait for a call of the std_srvs/Trigger service ~/resume (default false)')
    parser.add_argument('--wait-for-subscribers', type=float, default=0.0, metavar='SEC',
                        help='wait up to SEC for a subscriber on every data topic before playing')
    parser.add_argument('--linger', type=float, default=0.5, metavar='SEC',
                        help='keep latched topics alive this long after the last message')


def run(args) -> int:
    from ros_ncal.rosenv import apply_safe_ros_env
    apply_safe_ros_env()
    from ros_ncal.ros.player import PlayerConfig, play_bag

    def announce(node):
        if args.start_paused:
            print(f'ncal play: paused; call service {node.get_fully_qualified_name()}/resume (std_srvs/Trigger)',
                  flush=True)
    cfg = PlayerConfig(rate=args.rate, loop=args.loop, topics=args.topics, start_paused=args.start_paused,
                       wait_for_subscribers_s=args.wait_for_subscribers)
    try:
        stats = play_bag(args.bag, cfg, linger_s=args.linger, on_ready=announce)
    except (FileNotFoundError, ValueError) as exc:
        print(f'ncal play: {exc}', file=sys.stderr)
        return 2
    total = sum(stats.published.values())
    print(f'ncal play: published {total} messages in {stats.wall_s:.2f} s ({stats.loops} loop(s)): {stats.published}')
    return 0
