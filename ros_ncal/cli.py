"""`ncal`: the project's command line tool.

Subcommands live one per module in ``ros_ncal/commands/``; each module defines
``NAME`` (str), ``HELP`` (str), ``add_arguments(parser)`` and ``run(args) -> int``.
They are discovered here, so adding a command never edits this file. Modules are
imported only to build the parser: keep heavy imports (torch, rclpy) inside ``run``.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import ros_ncal.commands as _commands


def _command_modules():
    for info in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda i: i.name):
        if info.name.startswith('_'):
            continue
        yield importlib.import_module(f'{_commands.__name__}.{info.name}')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='ncal', description='ros_ncal: 2D-3D neural calibration tools')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, '_run', None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
