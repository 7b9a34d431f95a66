"""Clean start and stop of the project's rclpy processes (nodes, ``ncal run``, ``ncal play``, the KITTI player).

What ``ros2 launch`` does on Ctrl-C: SIGINT to every process, a second SIGINT (or SIGTERM) soon after. A
process here must then exit 0 without a traceback, after its executor thread is joined (a daemon thread
still inside rclpy at interpreter exit aborts with "terminate called without an active exception").

* :class:`InterruptWatcher`: SIGINT / SIGTERM handlers that only record the signal (no
  KeyboardInterrupt anywhere, however many arrive), with an optional callback; used with
  ``rclpy.init(signal_handler_options=SignalHandlerOptions.NO)`` so rclpy installs none of its own.
* :func:`spin_until_interrupted`: the executor spins on a thread; the main thread waits in Python (so the
  handlers run at once) for an interrupt, the executor ending, a duration or a ``done`` predicate, then
  shuts the executor down and joins its thread.
* :func:`quiet_interrupts_during_import`: for ``python -m`` entry points, a SIGINT while the heavy
  imports run exits 0 at once (SystemExit, no traceback); :func:`prepare_node_process` adds one OpenBLAS thread
  for the nodes that compute (collector, calibrator, segmenter, detector).
* :func:`ignore_interrupts_for_exit`: a process main's last step; SIGINT / SIGTERM are ignored at the OS
  level while the interpreter tears down (finalization resets Python handlers to the default, so a late
  second Ctrl-C would otherwise kill the process with -2).

Who ignores signals: only a process that is ending. A watcher used in-process (``ncal run`` called from
a test or from ``ncal demo``) gives the previous handlers back, so the caller and anything it starts
afterwards still stop on Ctrl-C (an ignored signal is inherited through fork and exec).
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Callable

from ros_ncal.blas_threads import prefer_single_thread_blas


def quiet_interrupts_during_import() -> None:
    """Until an InterruptWatcher takes over: SIGINT / SIGTERM exit the process with status 0, silently."""
    def _exit(signum, frame):
        raise SystemExit(0)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit)


def prepare_node_process() -> None:
    """First step of a computing node run as a process of its own (``python -m ros_ncal.nodes.<node>``), before
    numpy, torch and rclpy load: one OpenBLAS thread unless the user chose (ros_ncal.blas_threads: OpenBLAS'
    spinning threads slow the nodes' skinny matmuls and torch several fold on a busy machine); and Ctrl-C
    while the imports run exits 0 without a traceback (:func:`quiet_interrupts_during_import`)."""
    prefer_single_thread_blas()
    quiet_interrupts_during_import()


def ignore_interrupts_for_exit() -> None:
    """The process is ending: SIGINT / SIGTERM are ignored at the OS level from now on (SIG_IGN survives
    interpreter finalization, which resets a Python handler to SIG_DFL). Only for process mains: an ignored
    signal is inherited by every child started afterwards."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


class InterruptWatcher:
    """``with InterruptWatcher(on_interrupt) as w:`` -- SIGINT / SIGTERM set ``w.event`` (and call
    ``on_interrupt`` once, on the first); they never raise. Main thread only (Python's signal rule).
    On exit the previous handlers come back (``restore``, the default); a process main that ends right
    after passes ``restore=False``: further signals are then ignored until the process is gone,
    interpreter teardown included (:func:`ignore_interrupts_for_exit`)."""

    def __init__(self, on_interrupt: Callable[[], None] | None = None, restore: bool = True):
        self.event = threading.Event()
        self.count = 0
        self.signals: list[int] = []
        self.on_interrupt = on_interrupt
        self._restore = restore
        self._old: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        self.count += 1
        self.signals.append(int(signum))
        first = not self.event.is_set()
        self.event.set()
        if first and self.on_interrupt is not None:
            try:
                self.on_interrupt()
            except Exception:  # noqa: BLE001 - a handler must not raise into arbitrary code
                pass

    def __enter__(self) -> 'InterruptWatcher':
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._restore:
            for sig, old in self._old.items():
                signal.signal(sig, old)
        else:
            ignore_interrupts_for_exit()

    @property
    def interrupted(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout_s: float | None = None, done: Callable[[], bool] | None = None,
             period_s: float = 0.1) -> bool:
        """Wait until interrupted (True), or ``done()`` / the timeout (False)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.event.is_set():
            if done is not None and done():
                return False
            left = period_s if deadline is None else min(period_s, deadline - time.monotonic())
            if left <= 0:
                return False
            self.event.wait(left)
        return True


def spin_until_interrupted(executor, watcher: InterruptWatcher, duration_s: float = 0.0,
                           done: Callable[[], bool] | None = None, shutdown_timeout_s: float = 5.0) -> str:
    """Spin ``executor`` on a thread until an interrupt, ``duration_s`` (> 0), ``done()`` or the executor
    stops by itself; then shut it down and join the thread. Returns why: 'interrupted' | 'duration' |
    'done' | 'executor_ended'."""
    from rclpy.executors import ExternalShutdownException
    errors: list[BaseException] = []

    def spin() -> None:
        try:
            executor.spin()
        except ExternalShutdownException:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported to the caller's thread
            errors.append(exc)
    thread = threading.Thread(target=spin, name='ncal-executor', daemon=True)
    thread.start()
    ended = (lambda: not thread.is_alive() or (done is not None and done()))
    try:
        if watcher.wait(duration_s if duration_s > 0 else None, done=ended):
            why = 'interrupted'
        elif not thread.is_alive():
            why = 'executor_ended'
        elif done is not None and done():
            why = 'done'
        else:
            why = 'duration'
    finally:
        executor.shutdown(timeout_sec=shutdown_timeout_s)
        thread.join(timeout=shutdown_timeout_s + 5.0)
    if errors:
        raise errors[0]
    return why


def main_guard(fn: Callable[[], int]) -> int:
    """Run a process's main function; a KeyboardInterrupt that still escapes (before the watcher is
    installed) ends the process with status 0 and one line instead of a traceback."""
    try:
        return int(fn() or 0)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 0
