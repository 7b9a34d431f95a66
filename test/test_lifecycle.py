"""Signal handling of the project's processes (ros_ncal.ros.lifecycle): only a process that is ending ignores
Ctrl-C; in-process use gives the caller its handlers back, so whatever it starts afterwards still stops on
Ctrl-C (an ignored signal is inherited through fork and exec)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from ros_ncal.ros.lifecycle import InterruptWatcher

pytestmark = pytest.mark.skipif(sys.platform == 'win32', reason='POSIX signals')


@pytest.fixture
def saved_handlers():
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield old
    for sig, handler in old.items():
        signal.signal(sig, handler)


def _child_stops_on_sigint() -> int:
    """Start a child that sleeps, Ctrl-C it as `kill -INT` would; return its exit status."""
    p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    try:
        return p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()


def test_watcher_records_repeated_interrupts_without_raising_and_restores_handlers(saved_handlers):
    calls = []
    with InterruptWatcher(on_interrupt=lambda: calls.append(1)) as w:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while w.count < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert w.interrupted and w.count == 3
    assert w.signals == [signal.SIGINT, signal.SIGTERM, signal.SIGINT]
    assert calls == [1], 'the callback runs once, on the first signal'
    assert signal.getsignal(signal.SIGINT) is saved_handlers[signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) is saved_handlers[signal.SIGTERM]
    assert _child_stops_on_sigint() == -signal.SIGINT


def test_a_process_main_ignores_interrupts_after_its_watcher(saved_handlers):
    with InterruptWatcher(restore=False):
        pass
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


@pytest.mark.ros
def test_in_process_ncal_run_leaves_ctrl_c_working_for_the_caller_and_its_children(saved_handlers, capsys):
    """The CI failure of stop 15: an in-process ``ncal run`` left SIGINT ignored, and a ``ros2 launch`` started
    later in the same pytest process never stopped on Ctrl-C."""
    from ros_ncal.cli import main
    rc = main(['run', '--arg', 'calibrator:=true', '--param', 'calibrator:backend:=none',
               '--arg', f'points_topic:=/lifecycle_{uuid.uuid4().hex[:6]}/points', '--duration', '1'])
    assert rc == 0, capsys.readouterr()
    assert 'ncal run: stopped (duration)' in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is saved_handlers[signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) is saved_handlers[signal.SIGTERM]
    assert _child_stops_on_sigint() == -signal.SIGINT


def test_the_ncal_console_script_ignores_a_ctrl_c_that_arrives_during_teardown():
    """``ncal`` (``ros_ncal.cli:entry``): the status of ``main``, and a SIGINT after the work is done (here from
    an atexit hook, i.e. while the interpreter shuts down) is ignored instead of raising there."""
    code = ("import atexit, os, signal, sys, time\n"
            "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.2)))\n"
            "sys.argv = ['ncal', 'run', '--list', '--arg', 'calibrator:=true']\n"
            "from ros_ncal.cli import entry\n"
            "entry()\n")
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert 'calibrator' in p.stdout
    assert 'KeyboardInterrupt' not in p.stderr, p.stderr[-2000:]
