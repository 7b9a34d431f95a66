"""Sensor stamp sanity for live inputs: reject stamps far from the stream's newest, recover from gaps and
bursts (used by every node's input stage; tested without ROS)."""
from __future__ import annotations

import threading
import time


class StampGuard:
    """Accepts a stamp within [newest - max_past, newest + max_future] of the newest accepted stamp.

    A single future stamp does not move the reference. After ``reset_after`` consecutive rejections
    for being in the past (a bag restarted, the clock jumped back), or ``reset_after`` consecutive
    future stamps that agree with each other (a real stream that resumed after a gap longer than
    max_future: a sensor outage, a paused bag, a slow start), the reference is reset to that stamp,
    so a gap can never make a node reject everything forever while a lone hostile stamp cannot move it.
    When the reference moved forward that way and then ``recover_after`` consecutive stamps agree with
    the reference from before the move (the burst was bogus, the real stream continues), the old
    reference comes back at once (``reverts``): a burst of future stamps costs the real stream at most
    ``recover_after - 1`` messages instead of ``reset_after``.
    """

    def __init__(self, max_future_s: float, max_past_s: float, reset_after: int = 20, recover_after: int = 2):
        self.max_future_ns = int(max_future_s * 1e9)
        self.max_past_ns = int(max_past_s * 1e9)
        self.reset_after = int(reset_after)
        self.recover_after = max(1, int(recover_after))
        self._lock = threading.Lock()
        self.newest_ns: int | None = None
        self._past_run = 0
        self._future_run = 0
        self._future_last: int | None = None
        self._before_jump: int | None = None   # reference before the last forward reset
        self._jump_mono = 0.0
        self._return_run = 0
        self._return_newest = 0
        self.resets = 0
        self.reverts = 0

    def _near_before_jump(self, stamp_ns: int) -> bool:
        b = self._before_jump
        if b is None:
            return False
        lo = b - self.max_past_ns if self.max_past_ns > 0 else -2**62
        # the real stream went on while the burst lasted: allow the wall time since the jump
        hi = b + self.max_future_ns + int((time.monotonic() - self._jump_mono) * 1e9)
        return lo <= stamp_ns <= hi

    def check(self, stamp_ns: int) -> str | None:
        """None when accepted, else the drop reason ('stamp_zero', 'stamp_future', 'stamp_past')."""
        if stamp_ns <= 0:
            return 'stamp_zero'
        with self._lock:
            if self.newest_ns is None:
                self.newest_ns = stamp_ns
                return None
            if self.max_future_ns > 0 and stamp_ns > self.newest_ns + self.max_future_ns:
                consistent = (self._future_last is not None
                              and abs(stamp_ns - self._future_last) <= self.max_future_ns)
                self._future_run = self._future_run + 1 if consistent else 1
                self._future_last = stamp_ns
                if self._future_run >= self.reset_after:
                    self._before_jump, self._return_run = self.newest_ns, 0
                    self._jump_mono = time.monotonic()
                    self.newest_ns, self._future_run, self._future_last = stamp_ns, 0, None
                    self.resets += 1
                    return None
                return 'stamp_future'
            self._future_run, self._future_last = 0, None
            if self.max_past_ns > 0 and stamp_ns < self.newest_ns - self.max_past_ns:
                if self._near_before_jump(stamp_ns):
                    self._return_run += 1
                    self._return_newest = max(self._return_newest, stamp_ns) if self._return_run > 1 else stamp_ns
                    if self._return_run >= self.recover_after:    # the forward jump was bogus: undo it
                        self.newest_ns = max(self._before_jump, self._return_newest)
                        self._before_jump, self._return_run, self._past_run = None, 0, 0
                        self.reverts += 1
                        return None
                else:
                    self._return_run = 0
                self._past_run += 1
                if self._past_run >= self.reset_after:
                    self.newest_ns, self._past_run = stamp_ns, 0
                    self._before_jump, self._return_run = None, 0
                    self.resets += 1
                return 'stamp_past'
            self._past_run = 0
            self._return_run = 0
            self.newest_ns = max(self.newest_ns, stamp_ns)
            return None
