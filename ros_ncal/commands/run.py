"""`ncal run`: start a node suite (ros_ncal/runner/suite.py) in one process, no ROS install needed."""
from __future__ import annotations

import sys

NAME = 'run'
HELP = 'start a node suite with its YAML parameters on a MultiThreadedExecutor (plain-venv ros2 launch)'


def add_arguments(parser) -> None:
    parser.add_argument('--suite', default='default', help='suite name in ros_ncal/runner/suite.py (default: default)')
    parser.add_argument('--arg', action='append', default=[], metavar='NAME:=VALUE',
                        help='launch argument, as for ros2 launch (e.g. points_topic:=/velodyne_points, calibrator:=false)')
    parser.add_argument('--param', action='append', default=[], metavar='[NODE:]KEY:=VALUE',
                        help='parameter override for every node, or for NODE only')
    parser.add_argument('--skip-missing', action='store_true', help='start the nodes that exist, report the others')
    parser.add_argument('--list', action='store_true', help='print the resolved nodes and their ros-args, start nothing')
    parser.add_argument('--duration', type=float, default=0.0, help='stop after this many seconds (0 = until Ctrl-C)')


def parse_assignments(items: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if ':=' not in item:
            raise ValueError(f'{what} {item!r}: expected NAME:=VALUE')
        k, v = item.split(':=', 1)
        out.append((k.strip(), v))
    return out


def build_invocations(args):
    from ros_ncal.runner.suite import RawParam, resolve_invocations, suite_specs
    invs = resolve_invocations(suite_specs(args.suite), dict(parse_assignments(args.arg, '--arg')), check_files=False)
    for key, value in parse_assignments(args.param, '--param'):
        node, _, pname = key.rpartition(':')
        for inv in invs:
            if not node or node == inv.spec.name:
                inv.params[pname] = RawParam(value)     # typed as `ros2 run -p` types it
    return invs


def run(args) -> int:
    try:
        invs = build_invocations(args)
    except (KeyError, ValueError) as exc:
        print(f'ncal run: {exc}', file=sys.stderr)
        return 2
    if args.list:
        for inv in invs:
            print(f'{inv.spec.name}: {inv.spec.entry}\n  {" ".join(inv.ros_args())}')
        return 0
    from ros_ncal.rosenv import apply_safe_ros_env
    apply_safe_ros_env()
    from ros_ncal.ros.lifecycle import InterruptWatcher, spin_until_interrupted
    from ros_ncal.ros.suite_runner import NodeMissingError, SuiteRunner
    # Ctrl-C (SIGINT, then another from ros2 launch or an impatient user) or SIGTERM: stop the executor,
    # close every node (workers, open datasets), shut rclpy down; exit 0 without a traceback
    with InterruptWatcher() as interrupts:
        runner = SuiteRunner(invs, skip_missing=args.skip_missing)
        try:
            runner.start()
        except NodeMissingError as exc:
            enable_arg = next((i.spec.enable_arg for i in invs if i.spec.name == exc.node_name), exc.node_name)
            print(f'ncal run: {exc}\n  (use --skip-missing to start the others, or --arg {enable_arg}:=false)',
                  file=sys.stderr)
            return 3
        except (FileNotFoundError, ValueError) as exc:
            print(f'ncal run: {exc}', file=sys.stderr)
            return 2
        for name, why in runner.report.missing.items():
            print(f'ncal run: skipped {name}: {why}', file=sys.stderr)
        print(f'ncal run: started {", ".join(runner.report.started) or "nothing"}', flush=True)
        try:
            why = spin_until_interrupted(runner.executor, interrupts, duration_s=args.duration)
        finally:
            runner.stop()
        print(f'ncal run: stopped ({why})', flush=True)
    return 0
