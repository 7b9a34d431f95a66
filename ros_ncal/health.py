"""Node health for /diagnostics: drops counted by reason, and the verdict (drop ratio over a window, stale
processing, persistence).

Plain Python (no rclpy): the nodes count their drops in a :class:`DropCounter` and feed cumulative counters
to a :class:`HealthMonitor`, which answers OK / WARN / ERROR with the reasons. Rules (thresholds in :class:`HealthConfig`, YAML section ``health`` of
config/calibrator.yaml and config/collector.yaml):

* drop ratio = dropped / (dropped + accepted) over the last ``window_s`` seconds, where ``accepted``
  counts the inputs the node took (pairs handed on) and ``dropped`` every counted drop except the
  reasons in ``ignore_reasons`` (drops by design, e.g. the calibrator keeping only the newest pair
  while a calibration runs). WARN when it exceeds ``max_drop_ratio`` with at least ``min_events``
  events in the window;
* stale: WARN when no frame was processed for ``stale_s`` seconds while the node is expected to
  process (``active``; the grace period starts when the monitor starts or becomes active);
* ERROR when a WARN condition has held for ``error_after_s`` seconds without a break.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from ros_ncal.config_io import param


class DropCounter:
    """Thread-safe counts of dropped inputs by reason; logs one warning per reason per ``period_s``."""

    def __init__(self, logger=None, period_s: float = 5.0):
        self._lock = threading.Lock()
        self._counts: Counter = Counter()
        self._last_warn: dict[str, float] = {}
        self._logger = logger
        self.period_s = float(period_s)

    def drop(self, reason: str, detail: str = '', n: int = 1) -> None:
        with self._lock:
            self._counts[reason] += n
            now = time.monotonic()
            due = now - self._last_warn.get(reason, -1e18) >= self.period_s
            if due:
                self._last_warn[reason] = now
            total = self._counts[reason]
        if due and self._logger is not None:
            self._logger.warning(f'dropped input ({reason}, {total} so far): {detail}')

    def set_external(self, reason: str, total: int) -> None:
        """Mirror a count kept elsewhere (e.g. the pairer's) under ``reason``."""
        with self._lock:
            if total:
                self._counts[reason] = int(total)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    @property
    def total(self) -> int:
        with self._lock:
            return int(sum(self._counts.values()))


@dataclass
class HealthConfig:
    """Thresholds of :class:`HealthMonitor` (``health.*`` node parameters)."""
    window_s: float = param(10.0, 'window of the drop ratio (s)', min=0.1)
    max_drop_ratio: float = param(0.5, 'WARN when dropped / (dropped + accepted) over the window exceeds this',
                                  min=0.0, max=1.0)
    min_events: int = param(5, 'judge the drop ratio only with at least this many inputs in the window', min=1)
    stale_s: float = param(10.0, 'WARN when no frame was processed for this long while active (0 = off)', min=0.0)
    error_after_s: float = param(10.0, 'a WARN condition lasting this long becomes ERROR (0 = never)', min=0.0)
    ignore_reasons: list[str] = param(help='drop reasons that are by design and not counted in the ratio (e.g. busy)',
                                      default_factory=list)

    def validate(self) -> None:
        if not 0.0 <= self.max_drop_ratio <= 1.0:
            raise ValueError(f'health.max_drop_ratio must be in [0, 1], got {self.max_drop_ratio}')


@dataclass
class HealthVerdict:
    level: str                        # OK | WARN | ERROR
    reasons: list[str]                # human-readable, empty when OK
    drop_ratio: float                 # over the window (0 when not enough events)
    window_dropped: int
    window_accepted: int
    since_processed_s: float          # seconds since the last processed frame (or since start / activation)
    warn_for_s: float                 # how long the current WARN condition has held (0 when OK)
    drops_by_reason: dict[str, int] = field(default_factory=dict)   # in the window, counted reasons only

    def values(self) -> dict:
        """Key/values for a DiagnosticStatus."""
        out = {'health.level': self.level, 'health.reasons': '; '.join(self.reasons) or 'none',
               'health.drop_ratio': round(self.drop_ratio, 3), 'health.window_dropped': self.window_dropped,
               'health.window_accepted': self.window_accepted,
               'health.since_processed_s': round(self.since_processed_s, 2),
               'health.warn_for_s': round(self.warn_for_s, 2)}
        return out


class HealthMonitor:
    """Feed :meth:`update` periodically (e.g. with every /diagnostics publication).

    ``update(now_s, accepted, processed, drops, active)``: cumulative totals since start (monotonic
    counters; a counter that goes down is taken as a restart of that counter). ``now_s`` is any
    monotonic clock in seconds.
    """

    def __init__(self, config: HealthConfig | None = None, start_s: float = 0.0):
        self.cfg = config or HealthConfig()
        self._hist: deque = deque()          # (t, accepted, drops dict) snapshots
        self._last_processed: int | None = None
        self._last_progress_s = float(start_s)
        self._was_active = True
        self._warn_since: float | None = None
        self.verdict = HealthVerdict('OK', [], 0.0, 0, 0, 0.0, 0.0)

    def _counted(self, drops: dict[str, int]) -> dict[str, int]:
        return {k: int(v) for k, v in drops.items() if k not in self.cfg.ignore_reasons}

    def update(self, now_s: float, accepted: int, processed: int, drops: dict[str, int],
               active: bool = True) -> HealthVerdict:
        c = self.cfg
        now_s = float(now_s)
        drops = self._counted(drops)
        self._hist.append((now_s, int(accepted), drops))
        while len(self._hist) > 2 and self._hist[1][0] <= now_s - c.window_s:
            self._hist.popleft()
        t0, acc0, drops0 = self._hist[0]
        d_acc = max(0, int(accepted) - acc0)
        by_reason = {k: v - drops0.get(k, 0) for k, v in drops.items() if v - drops0.get(k, 0) > 0}
        d_drop = sum(by_reason.values())
        events = d_acc + d_drop
        ratio = d_drop / events if events else 0.0

        if self._last_processed is None or int(processed) != self._last_processed:
            if self._last_processed is not None:
                self._last_progress_s = now_s
            self._last_processed = int(processed)
        if active and not self._was_active:
            self._last_progress_s = now_s           # grace period from activation
        self._was_active = bool(active)
        since = now_s - self._last_progress_s

        reasons = []
        if events >= c.min_events and ratio > c.max_drop_ratio:
            top = ', '.join(f'{k} {v}' for k, v in sorted(by_reason.items(), key=lambda kv: -kv[1])[:3])
            reasons.append(f'drop ratio {ratio:.2f} > {c.max_drop_ratio:.2f} over {c.window_s:g} s ({top})')
        if active and c.stale_s > 0 and since >= c.stale_s:
            reasons.append(f'no frame processed for {since:.1f} s (> {c.stale_s:g} s)')
        if reasons:
            if self._warn_since is None:
                self._warn_since = now_s
            warn_for = now_s - self._warn_since
            level = 'ERROR' if c.error_after_s > 0 and warn_for >= c.error_after_s else 'WARN'
        else:
            self._warn_since, warn_for, level = None, 0.0, 'OK'
        self.verdict = HealthVerdict(level, reasons, ratio, d_drop, d_acc, since, warn_for, by_reason)
        return self.verdict


def drop_queue_values(dropped: dict[str, int], queues: dict[str, int]) -> dict[str, int]:
    """A node's drop and queue counts flattened into /diagnostics key/values: ``dropped_total``, then
    ``dropped.<reason>`` per drop reason and ``queue.<name>`` per queue (the ``dropped`` and ``queues`` of its
    ``~/status``)."""
    values = {'dropped_total': sum(dropped.values())}
    values.update({f'dropped.{k}': v for k, v in dropped.items()})
    values.update({f'queue.{k}': v for k, v in queues.items()})
    return values


LEVEL_ORDER = {'OK': 0, 'WARN': 1, 'ERROR': 2, 'STALE': 3}


def worst_level(*levels: str) -> str:
    """The most severe of OK < WARN < ERROR < STALE."""
    return max(levels, key=lambda lv: LEVEL_ORDER[lv])
