"""One OpenBLAS thread in the project's processes unless exported (ros_ncal.blas_threads): the ``ncal`` entry and
the node processes' start-up set it before numpy loads, so numpy's OpenBLAS really starts with one thread, and
an exported value wins. Each case runs in a fresh interpreter (OpenBLAS reads the variable once, at load)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# In the child: run the entry point with its work replaced by a report of what the process looks like when the
# command would start: the variable, whether numpy was already loaded, and OpenBLAS's own thread count once numpy
# loads (read through the bundled library where the wheel exposes it, else None).
_PROBE = r'''
import ctypes, json, os, sys
def report():
    before = 'numpy' in sys.modules
    import numpy  # noqa: F401
    threads = None
    for path in sorted({l.split()[-1] for l in open('/proc/self/maps') if 'openblas' in l.lower() and '/' in l}):
        lib = ctypes.CDLL(path)
        for name in ('scipy_openblas_get_num_threads64_', 'openblas_get_num_threads64_', 'openblas_get_num_threads'):
            if hasattr(lib, name):
                threads = int(getattr(lib, name)())
                break
    print(json.dumps({'env': os.environ.get('OPENBLAS_NUM_THREADS'), 'numpy_before': before, 'threads': threads}))
    return 0
ENTRY
'''

_CLI = '''
import ros_ncal.cli as cli
cli.main = report
cli.entry()
'''
_NODE = '''
from ros_ncal.ros.lifecycle import prepare_node_process
prepare_node_process()
report()
'''


def _run(entry: str, openblas: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != 'OPENBLAS_NUM_THREADS'}
    if openblas is not None:
        env['OPENBLAS_NUM_THREADS'] = openblas
    p = subprocess.run([sys.executable, '-c', _PROBE.replace('ENTRY', entry)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc/self/maps')
@pytest.mark.parametrize('entry', [_CLI, _NODE], ids=['ncal', 'node'])
def test_one_openblas_thread_unless_exported(entry):
    unset = _run(entry, None)
    assert unset['env'] == '1' and unset['numpy_before'] is False
    if unset['threads'] is not None:
        assert unset['threads'] == 1
    chosen = _run(entry, '2')
    assert chosen['env'] == '2'
    if chosen['threads'] is not None:
        assert chosen['threads'] == min(2, os.cpu_count() or 1)     # OpenBLAS caps it at the cores
