"""`ncal`: the project's command line tool.

Subcommands live one per module in ``ros_ncal/commands/``; each module defines
``NAME`` (str), ``HELP`` (str), ``add_arguments(parser)`` and ``run(args) -> int``.
They are discovered here, so adding a command never edits this file. Modules are
imported only to build the parser: keep heavy imports (torch, rclpy) inside ``run``.

Errors (ros_ncal.cli_errors): before a command runs, its outputs are checked writable (the arguments named
by the module's optional ``OUTPUT_ARGS``, default ``('out',)``). One handler around every command turns a
user error (a bad file, key, argument or disk) into one line naming it and exit code 2, and any other
exception into one line with a hint and exit code 1; ``--debug`` (before or after the command name) prints
the traceback as well.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback

import ros_ncal.commands as _commands
from ros_ncal.blas_threads import prefer_single_thread_blas
from ros_ncal.cli_errors import classify, ensure_writable

DEFAULT_OUTPUT_ARGS = ('out',)


def _command_modules():
    for info in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda i: i.name):
        if info.name.startswith('_'):
            continue
        yield importlib.import_module(f'{_commands.__name__}.{info.name}')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='ncal', description='ros_ncal: 2D-3D neural calibration tools')
    parser.add_argument('--debug', action='store_true', help='print the traceback of an error')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.add_argument('--debug', action='store_true', default=argparse.SUPPRESS,
                       help='print the traceback of an error')
        p.set_defaults(_run=mod.run, _outputs=tuple(getattr(mod, 'OUTPUT_ARGS', DEFAULT_OUTPUT_ARGS)))
    return parser


def output_paths(args) -> list[tuple[str, str]]:
    """(label, path) of the outputs a parsed command line names (the module's OUTPUT_ARGS that are set)."""
    out = []
    for name in getattr(args, '_outputs', ()):
        value = getattr(args, name, None)
        if isinstance(value, str) and value:
            out.append((f'--{name.replace("_", "-")}', value))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, '_run', None):
        parser.print_help()
        return 2
    outputs = output_paths(args)
    try:
        for label, path in outputs:       # before any work: a bad --out must not cost a run
            ensure_writable(path, label)
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one top-level handler
        code, line = classify(exc, [f'{label} {path}' for label, path in outputs])
        return _report(args, code, line)


def _report(args, code: int, line: str) -> int:
    """Print the one line (and with --debug the traceback) to stderr; return the exit code."""
    if getattr(args, 'debug', False):
        traceback.print_exc()
    print(f'ncal {args.command}: error: {line}', file=sys.stderr)
    return code


def entry() -> None:
    """The ``ncal`` console script: :func:`main`, then exit with its status, ignoring a late Ctrl-C while
    the interpreter tears down (``main`` itself leaves signal handling as it found it, for in-process
    callers). Before any command imports numpy: one OpenBLAS thread unless exported (ros_ncal.blas_threads),
    as in the nodes, so ``ncal calibrate`` / ``eval-calib`` run the calibrator as the node does."""
    prefer_single_thread_blas()
    code = main()
    from ros_ncal.ros.lifecycle import ignore_interrupts_for_exit
    ignore_interrupts_for_exit()
    sys.exit(code)


if __name__ == '__main__':
    entry()
