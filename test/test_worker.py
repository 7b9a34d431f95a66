"""ros_ncal.worker.LatestWorker: the nodes' worker thread fed through a slot of one (no ROS)."""
from __future__ import annotations

from ros_ncal.worker import LatestWorker

from support import wait_for


def test_latest_worker_keeps_only_the_newest_pending_item():
    import threading
    gate = threading.Event()
    seen = []

    def work(x):
        gate.wait(5)
        seen.append(x)
    w = LatestWorker(work)
    assert w.submit(1) is None
    assert wait_for(lambda: w.busy, 5)
    assert w.submit(2) is None
    assert w.submit(3) == 2          # 2 never started: replaced
    assert w.pending == 1
    gate.set()
    assert w.wait_idle(5)
    assert seen == [1, 3] and w.max_pending_seen == 1
    w.stop()


def test_latest_worker_survives_exceptions():
    errors = []
    w = LatestWorker(lambda x: 1 / x, on_error=lambda item, exc: errors.append((item, type(exc).__name__)))
    w.submit(0)
    assert w.wait_idle(5)
    w.submit(2)
    assert w.wait_idle(5)
    assert errors == [(0, 'ZeroDivisionError')] and w.processed == 2
    w.stop()
