"""A worker thread fed through a slot of size 1 (the latest item wins), so that the nodes' subscription
callbacks never wait for slow work (disk writes, calibration, inference). Plain Python, no ROS."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable


class LatestWorker:
    """A daemon thread running ``fn(item)`` on submitted items, through a slot of size 1.

    :meth:`submit` never blocks: when the slot already holds an item that the worker has not taken
    yet, the new item replaces it (the latest wins) and ``submit`` returns the replaced item so the
    caller can count it as dropped. ``fn`` exceptions go to ``on_error(item, exc)``, never kill the thread.
    """

    def __init__(self, fn: Callable[[Any], None], name: str = 'worker',
                 on_error: Callable[[Any, BaseException], None] | None = None):
        self._fn = fn
        self._on_error = on_error
        self._cv = threading.Condition()
        self._slot: deque = deque(maxlen=1)
        self._busy = False
        self._stop = False
        self.processed = 0
        self.errors = 0
        self.max_pending_seen = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any):
        """Queue ``item``; returns the item it replaced (not yet started), else None."""
        with self._cv:
            replaced = self._slot[0] if self._slot else None
            self._slot.append(item)
            self.max_pending_seen = max(self.max_pending_seen, len(self._slot))
            self._cv.notify()
        return replaced

    @property
    def pending(self) -> int:
        with self._cv:
            return len(self._slot)

    @property
    def busy(self) -> bool:
        with self._cv:
            return self._busy

    def idle(self) -> bool:
        with self._cv:
            return not self._busy and not self._slot

    def wait_idle(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.01)
        return self.idle()

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._slot and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                item = self._slot.popleft()
                self._busy = True
            try:
                self._fn(item)
            except BaseException as exc:  # noqa: BLE001 - a bad item must not kill the worker
                self.errors += 1
                if self._on_error is not None:
                    try:
                        self._on_error(item, exc)
                    except Exception:  # noqa: BLE001
                        pass
            finally:
                with self._cv:
                    self._busy = False
                    self.processed += 1
