"""The Sample contract: one synchronized camera-LiDAR pair (docs/design.md, "Frames and transforms").

Validated on construction, so a Sample that exists is a Sample that is right:
shapes, dtypes, finite values, a rigid ``T_cam_lidar`` and a ``K`` with positive focal lengths.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ros_ncal.geometry import validate_K, validate_rigid


class InvalidSampleError(ValueError):
    """A Sample field has the wrong shape, dtype or non-finite values."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise InvalidSampleError(msg)


@dataclass(eq=False)
class Sample:
    """One synchronized camera-LiDAR pair.

    points: (N, 4) float32, x y z intensity, LiDAR frame, finite.
    image: (H, W, 3) uint8 RGB, rectified.
    K: (3, 3) float64 pinhole intrinsics of ``image``.
    T_cam_lidar: (4, 4) float64 nominal extrinsic (maps LiDAR points into the camera optical frame).
    stamp_ns: LiDAR stamp; image_stamp_ns: camera stamp (defaults to stamp_ns).
    frame_ids: (lidar_frame, camera_optical_frame).
    point_labels: optional (N,) int32 semantic class per point.
    instance_ids: optional (N,) int32 instance per point, 0 = none.
    boxes: optional (M, 7) float32 x y z l w h yaw in the LiDAR frame; box_labels: (M,) int32.
    pixel_labels: optional (H, W) int32 semantic class per pixel (synthetic data).
    meta: free-form JSON-serialisable extras (source, sequence, true extrinsic, ...).
    """

    points: np.ndarray
    image: np.ndarray
    K: np.ndarray
    T_cam_lidar: np.ndarray
    stamp_ns: int = 0
    image_stamp_ns: int | None = None
    frame_ids: tuple[str, str] = ('lidar', 'camera_optical_frame')
    point_labels: np.ndarray | None = None
    instance_ids: np.ndarray | None = None
    boxes: np.ndarray | None = None
    box_labels: np.ndarray | None = None
    pixel_labels: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pts = np.asarray(self.points)
        _check(pts.ndim == 2 and pts.shape[1] == 4, f'points: expected (N, 4), got {pts.shape}')
        self.points = np.ascontiguousarray(pts, dtype=np.float32)
        _check(bool(np.isfinite(self.points).all()), 'points: contains NaN or inf (drop them before building a Sample)')
        img = np.asarray(self.image)
        _check(img.ndim == 3 and img.shape[2] == 3 and img.shape[0] > 0 and img.shape[1] > 0,
               f'image: expected (H, W, 3), got {img.shape}')
        _check(img.dtype == np.uint8, f'image: expected uint8 RGB, got {img.dtype}')
        self.image = np.ascontiguousarray(img)
        try:
            self.K = validate_K(self.K)
            self.T_cam_lidar = validate_rigid(self.T_cam_lidar, atol=1e-4, name='T_cam_lidar')
        except ValueError as exc:
            raise InvalidSampleError(str(exc)) from exc
        self.stamp_ns = int(self.stamp_ns)
        self.image_stamp_ns = self.stamp_ns if self.image_stamp_ns is None else int(self.image_stamp_ns)
        _check(len(self.frame_ids) == 2 and all(isinstance(f, str) for f in self.frame_ids),
               f'frame_ids: expected (lidar, camera) strings, got {self.frame_ids!r}')
        self.frame_ids = (str(self.frame_ids[0]), str(self.frame_ids[1]))
        n = len(self.points)
        for name in ('point_labels', 'instance_ids'):
            arr = getattr(self, name)
            if arr is not None:
                arr = np.asarray(arr)
                _check(arr.shape == (n,), f'{name}: expected ({n},) to match points, got {arr.shape}')
                _check(np.issubdtype(arr.dtype, np.integer), f'{name}: expected integers, got {arr.dtype}')
                setattr(self, name, arr.astype(np.int32, copy=False))
        if self.boxes is not None:
            b = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 7) if np.size(self.boxes) else np.zeros((0, 7), np.float32)
            _check(bool(np.isfinite(b).all()), 'boxes: contains NaN or inf')
            _check(bool((b[:, 3:6] > 0).all()), 'boxes: l, w, h must be positive')
            self.boxes = b
            labels = np.zeros(len(b), np.int32) if self.box_labels is None else np.asarray(self.box_labels)
            _check(labels.shape == (len(b),), f'box_labels: expected ({len(b)},), got {labels.shape}')
            self.box_labels = labels.astype(np.int32, copy=False)
        elif self.box_labels is not None:
            raise InvalidSampleError('box_labels given without boxes')
        if self.pixel_labels is not None:
            pl = np.asarray(self.pixel_labels)
            _check(pl.shape == self.image.shape[:2], f'pixel_labels: expected {self.image.shape[:2]}, got {pl.shape}')
            self.pixel_labels = pl.astype(np.int32, copy=False)

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    @property
    def num_points(self) -> int:
        return int(len(self.points))

    def replace(self, **changes) -> 'Sample':
        """A validated copy with some fields changed."""
        return replace(self, **changes)


TRUE_EXTRINSIC_KEY = 'T_cam_lidar_true'   # Sample.meta key of the true extrinsic when the nominal is not it


def true_extrinsic(sample: Sample) -> np.ndarray:
    """(4, 4) the best-known true T_cam_lidar: ``sample.meta['T_cam_lidar_true']`` when present (synthetic drives
    and evaluation frames with a wrong nominal; checked rigid), else ``sample.T_cam_lidar``."""
    if sample.meta and TRUE_EXTRINSIC_KEY in sample.meta:
        return validate_rigid(np.asarray(sample.meta[TRUE_EXTRINSIC_KEY], dtype=np.float64), 1e-4,
                              name=f'meta[{TRUE_EXTRINSIC_KEY!r}]')
    return np.asarray(sample.T_cam_lidar, dtype=np.float64)
