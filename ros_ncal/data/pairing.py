"""Approximate-time pairing of camera and LiDAR items (pure python, no ROS).

The LiDAR item is the anchor (the Sample stamp is the LiDAR stamp). A LiDAR item is paired
with the camera item closest in time, within ``tolerance_ns``, once no later camera item can
be closer (a camera item at or after the LiDAR stamp, or beyond the tolerance, has arrived).
Each item is used at most once. Queues are bounded: pushing beyond ``max_queue`` drops the
oldest item (reason ``overflow``); an item that can no longer meet any partner is dropped
with reason ``too_far``. Stamps are assumed non-decreasing per stream (as from a driver or a
bag); :meth:`flush` pairs what is left at the end of an offline stream.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any


@dataclass
class PairerConfig:
    tolerance_ns: int = 50_000_000
    max_queue: int = 10


@dataclass
class Pair:
    """camera: the pushed camera item (e.g. an image, or (image, camera_info)); lidar: the cloud item."""
    camera: Any
    lidar: Any
    camera_stamp_ns: int
    lidar_stamp_ns: int

    @property
    def dt_ns(self) -> int:
        return self.camera_stamp_ns - self.lidar_stamp_ns


class ApproximateTimePairer:
    """push_camera / push_lidar return the list of pairs completed by that push."""

    def __init__(self, tolerance_ns: int = 50_000_000, max_queue: int = 10):
        if tolerance_ns < 0:
            raise ValueError(f'tolerance_ns must be >= 0, got {tolerance_ns}')
        if max_queue < 1:
            raise ValueError(f'max_queue must be >= 1, got {max_queue}')
        self.tolerance_ns = int(tolerance_ns)
        self.max_queue = int(max_queue)
        self._cams: deque[tuple[int, Any]] = deque()
        self._lidars: deque[tuple[int, Any]] = deque()
        self._newest_cam: int | None = None
        self._newest_lidar: int | None = None
        self.dropped = {'camera': Counter(), 'lidar': Counter()}
        self.n_pairs = 0

    @classmethod
    def from_config(cls, cfg: PairerConfig) -> 'ApproximateTimePairer':
        return cls(cfg.tolerance_ns, cfg.max_queue)

    @property
    def drop_counts(self) -> Counter:
        """Total drops by reason over both streams."""
        return self.dropped['camera'] + self.dropped['lidar']

    @property
    def pending(self) -> tuple[int, int]:
        """(queued camera items, queued LiDAR items)."""
        return len(self._cams), len(self._lidars)

    def push_camera(self, stamp_ns: int, item: Any) -> list[Pair]:
        stamp_ns = int(stamp_ns)
        self._cams.append((stamp_ns, item))
        self._newest_cam = stamp_ns if self._newest_cam is None else max(self._newest_cam, stamp_ns)
        self._bound(self._cams, 'camera')
        return self._match()

    def push_lidar(self, stamp_ns: int, item: Any) -> list[Pair]:
        stamp_ns = int(stamp_ns)
        self._lidars.append((stamp_ns, item))
        self._newest_lidar = stamp_ns if self._newest_lidar is None else max(self._newest_lidar, stamp_ns)
        self._bound(self._lidars, 'lidar')
        return self._match()

    def flush(self) -> list[Pair]:
        """End of stream: pair every LiDAR item with its closest remaining camera item in tolerance."""
        pairs = self._match(final=True)
        self.dropped['lidar']['too_far'] += len(self._lidars)
        self.dropped['camera']['too_far'] += len(self._cams)
        self._lidars.clear()
        self._cams.clear()
        return pairs

    def _bound(self, queue: deque, side: str) -> None:
        while len(queue) > self.max_queue:
            queue.popleft()
            self.dropped[side]['overflow'] += 1

    def _match(self, final: bool = False) -> list[Pair]:
        tol = self.tolerance_ns
        pairs: list[Pair] = []
        kept: deque[tuple[int, Any]] = deque()
        for l_stamp, l_item in self._lidars:
            best_i, best_d = -1, None
            for i, (c_stamp, _) in enumerate(self._cams):
                d = abs(c_stamp - l_stamp)
                if d <= tol and (best_d is None or d < best_d):
                    best_i, best_d = i, d
            if best_i < 0:
                if self._newest_cam is not None and self._newest_cam > l_stamp + tol:
                    self.dropped['lidar']['too_far'] += 1
                else:
                    kept.append((l_stamp, l_item))
                continue
            if final or self._newest_cam >= l_stamp:
                c_stamp, c_item = self._cams[best_i]
                del self._cams[best_i]
                pairs.append(Pair(camera=c_item, lidar=l_item, camera_stamp_ns=c_stamp, lidar_stamp_ns=l_stamp))
            else:
                kept.append((l_stamp, l_item))
        self._lidars = kept
        # Camera items no pending or future LiDAR item can reach.
        if self._newest_lidar is not None:
            horizon = min([s for s, _ in self._lidars] + [self._newest_lidar])
            while self._cams and self._cams[0][0] + tol < horizon:
                self._cams.popleft()
                self.dropped['camera']['too_far'] += 1
        self.n_pairs += len(pairs)
        return pairs
