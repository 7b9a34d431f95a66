"""The camera-LiDAR input of the collector and calibrator nodes, without ROS: its parameters (``input.*``,
``extrinsic.*``), the frames it pairs and the validated pair that becomes a :class:`ros_ncal.data.sample.Sample`.

The node-side front end (``ros_ncal.nodes._common.SensorInput``: subscriptions, tf2) fills these; the other
pieces it uses are here in the library too: :class:`ros_ncal.data.pairing.ApproximateTimePairer`,
:class:`ros_ncal.data.stamp_guard.StampGuard`, :class:`ros_ncal.geometry.distortion.Rectifier`,
:func:`ros_ncal.geometry.extrinsic_from_params`. :class:`DropInput` carries a drop reason (the segmenter /
detector input raises it too); :func:`decode_cloud` and :func:`keep_valid_points` are the PointCloud2 checks of
both node front ends (decode, empty, NaN/inf, out-of-range coordinates, too few points), :func:`accept_stamp`
their stamp check.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ros_ncal.config_io import param
from ros_ncal.geometry import extrinsic_from_params
from ros_ncal.geometry.distortion import Rectifier
from ros_ncal.msgcodec import CameraIntrinsics, cloud_to_xyzi, compressed_to_rgb, image_to_rgb, stamp_to_ns

from .stamp_guard import StampGuard


class DropInput(ValueError):
    """Raised inside a node's input front end with a drop reason."""

    def __init__(self, reason: str, detail: str = ''):
        super().__init__(f'{reason}: {detail}')
        self.reason = reason
        self.detail = detail


def accept_stamp(guard: StampGuard, stamp) -> int:
    """A header stamp -> nanoseconds when ``guard`` accepts it; DropInput(stamp_zero / stamp_future / stamp_past)
    naming the newest accepted stamp otherwise."""
    ns = stamp_to_ns(stamp)
    reason = guard.check(ns)
    if reason is not None:
        newest = guard.newest_ns or 0
        raise DropInput(reason, f'stamp {ns * 1e-9:.3f} s vs newest accepted {newest * 1e-9:.3f} s')
    return ns


def decode_cloud(msg) -> np.ndarray:
    """PointCloud2 -> (N, 4) float32 x, y, z, intensity, every row (NaN/inf kept: :func:`keep_valid_points`
    removes them); DropInput('cloud_malformed') when the message cannot be read."""
    try:
        with np.errstate(over='ignore', invalid='ignore'):   # garbage doubles -> inf: removed as non-finite
            return cloud_to_xyzi(msg, drop_nonfinite=False, extra_fields=()).points
    except ValueError as exc:
        raise DropInput('cloud_malformed', str(exc)) from None


@dataclass(frozen=True)
class ValidPoints:
    """What :func:`keep_valid_points` kept and removed."""
    points: np.ndarray           # (M, 4) float32, C-contiguous, finite (within the coordinate limit when set)
    n_nonfinite: int             # rows removed for NaN/inf in any column
    n_out_of_range: int          # finite rows removed for |x|, |y| or |z| beyond the coordinate limit

    @property
    def n_removed(self) -> int:
        return self.n_nonfinite + self.n_out_of_range


def keep_valid_points(pts: np.ndarray, min_points: int, max_nonfinite_fraction: float,
                      max_coordinate_m: float | None = None) -> ValidPoints:
    """The rule for a decoded cloud's rows (``input.min_points``, ``input.max_nonfinite_fraction``,
    ``input.max_coordinate_m``): remove rows with NaN/inf (and, when ``max_coordinate_m`` is given, rows with
    |x|, |y| or |z| beyond it); drop the whole cloud when it has no rows (cloud_empty), when more than
    ``max_nonfinite_fraction`` of its rows or too many to leave ``min_points`` are bad (cloud_nonfinite, or
    cloud_out_of_range when out-of-range rows outnumber the NaN/inf ones), or when fewer than ``min_points``
    remain (cloud_empty). Raises :class:`DropInput`.
    """
    n = len(pts)
    if n == 0:
        raise DropInput('cloud_empty', 'PointCloud2 has no points')
    finite = np.isfinite(pts).all(axis=1)
    valid = finite if max_coordinate_m is None else finite & (np.abs(pts[:, :3]) <= max_coordinate_m).all(axis=1)
    n_bad = int(n - valid.sum())
    n_nonfinite = int(n - finite.sum())
    if n_bad:
        if n_bad > max_nonfinite_fraction * n or n - n_bad < min_points:
            if n_nonfinite >= n_bad - n_nonfinite:
                raise DropInput('cloud_nonfinite', f'{n_nonfinite} of {n} points have NaN/inf')
            raise DropInput('cloud_out_of_range', f'{n_bad - n_nonfinite} of {n} points beyond '
                                                  f'input.max_coordinate_m {max_coordinate_m}')
        pts = pts[valid]
    if len(pts) < min_points:
        raise DropInput('cloud_empty', f'{len(pts)} points < input.min_points {min_points}')
    return ValidPoints(np.ascontiguousarray(pts), n_nonfinite, n_bad - n_nonfinite)


@dataclass
class SensorInputConfig:
    """Inputs shared by the collector and the calibrator (``input.*`` parameters)."""
    image_topic: str = param('image', 'sensor_msgs/Image topic (raw transport)')
    compressed_image_topic: str = param('image/compressed', 'sensor_msgs/CompressedImage topic (compressed transport)')
    image_transport: str = param('raw', 'which image topic to subscribe', choices=('raw', 'compressed'))
    camera_info_topic: str = param('camera_info', 'sensor_msgs/CameraInfo topic')
    points_topic: str = param('points', 'sensor_msgs/PointCloud2 topic')
    reliable: bool = param(False, 'subscribe RELIABLE instead of BEST_EFFORT (sensor-data QoS)')
    qos_depth: int = param(5, 'subscription queue depth (KEEP_LAST)', min=1, max=100)
    pair_tolerance_s: float = param(0.05, 'max |camera stamp - LiDAR stamp| of a pair', min=0.0, max=1.0)
    pair_max_queue: int = param(10, 'messages per stream waiting for a partner (oldest dropped beyond)',
                                min=1, max=100)
    max_future_s: float = param(2.0, 'drop stamps this far ahead of the newest accepted one (0 = off)', min=0.0)
    max_past_s: float = param(30.0, 'drop stamps this far behind the newest accepted one (0 = off)', min=0.0)
    lidar_frame: str = param('', 'expected LiDAR frame id; empty = take it from the message header')
    camera_frame: str = param('', 'expected camera optical frame id; empty = take it from the message header')
    distortion: str = param('rectify', 'images with non-zero distortion: rectify them or drop them',
                            choices=('rectify', 'reject'))
    min_points: int = param(1, 'clouds with fewer finite points are dropped', min=1)
    max_nonfinite_fraction: float = param(0.9, 'drop a cloud when more than this fraction of points is NaN/inf '
                                               '(smaller NaN parts are removed)', min=0.0, max=1.0)
    tf_topic: bool = param(False, 'also take transforms from /tf (not only /tf_static) for the extrinsic chain')


@dataclass
class ExtrinsicParams:
    """Nominal T_cam_lidar given as parameters (``extrinsic.*``); empty = use /tf_static."""
    source: str = param('auto', "'tf': /tf_static only; 'param': these parameters only; 'auto': parameters when "
                                'set, else /tf_static', choices=('auto', 'tf', 'param'))
    T_cam_lidar: list[float] = param(help='16 numbers, row-major 4x4 T_cam_lidar (LiDAR -> camera optical)',
                                     default_factory=list)
    xyz: list[float] = param(help='translation of T_cam_lidar (3 numbers), with quat_xyzw', default_factory=list)
    quat_xyzw: list[float] = param(help='rotation of T_cam_lidar as quaternion x, y, z, w', default_factory=list)

    def validate(self) -> None:
        T = extrinsic_from_params(self.T_cam_lidar, self.xyz, self.quat_xyzw)
        if self.source == 'param' and T is None:
            raise ValueError("parameter extrinsic.source is 'param' but neither extrinsic.T_cam_lidar nor "
                             'extrinsic.xyz + extrinsic.quat_xyzw is set')

    def matrix(self) -> np.ndarray | None:
        if self.source == 'tf':
            return None
        return extrinsic_from_params(self.T_cam_lidar, self.xyz, self.quat_xyzw)


@dataclass
class CameraFrame:
    """A decoded camera message waiting for its LiDAR partner."""
    msg: Any                     # Image or CompressedImage (decoded lazily)
    compressed: bool
    stamp_ns: int
    frame_id: str
    decoder: Any = None          # ros_ncal.ros.image_decode.ImageDecoder (cv_bridge where installed); None: msgcodec


@dataclass
class CloudFrame:
    points: np.ndarray           # (N, 4) float32 finite
    stamp_ns: int
    frame_id: str
    n_nonfinite: int = 0


@dataclass
class PairedInput:
    """A validated camera-LiDAR pair, ready to become a Sample (image still to decode)."""
    camera: CameraFrame
    cloud: CloudFrame
    intrinsics: CameraIntrinsics
    T_cam_lidar: np.ndarray      # nominal extrinsic (4, 4)
    received_mono: float         # time.monotonic() when the pair completed
    _rgb: np.ndarray | None = field(default=None, repr=False)
    _error: ValueError | None = field(default=None, repr=False)
    _failure_claimed: bool = field(default=False, repr=False)
    _decode_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def decode_image(self, rectifier: Rectifier | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB (rectified when the CameraInfo has distortion and a rectifier is given).

        Decoded once; later calls (another worker) get the same array (treat it as read-only), or the
        same ValueError (DropInput) when decoding failed.
        """
        with self._decode_lock:
            if self._error is not None:
                raise self._error
            if self._rgb is None:
                try:
                    self._rgb = self._decode(rectifier)
                except ValueError as exc:
                    self._error = exc
                    raise
            return self._rgb

    def claim_decode_failure(self) -> bool:
        """True for the first caller only: the one worker that counts this pair's decode failure as a drop."""
        with self._decode_lock:
            first = not self._failure_claimed
            self._failure_claimed = True
            return first

    def _decode(self, rectifier: Rectifier | None) -> np.ndarray:
        msg, decoder = self.camera.msg, self.camera.decoder
        if decoder is not None:          # the nodes' ImageDecoder
            rgb = decoder.compressed_to_rgb(msg) if self.camera.compressed else decoder.to_rgb(msg)
        else:
            rgb = (compressed_to_rgb(msg.data, str(getattr(msg, 'format', '') or '')) if self.camera.compressed
                   else image_to_rgb(msg))
        H, W = rgb.shape[:2]
        if self.intrinsics.width and self.intrinsics.height and (W, H) != (self.intrinsics.width,
                                                                           self.intrinsics.height):
            raise DropInput('image_size_mismatch', f'image {W}x{H} does not match CameraInfo '
                                                   f'{self.intrinsics.width}x{self.intrinsics.height}')
        if rectifier is not None:
            rgb = rectifier(rgb, self.intrinsics.K, self.intrinsics.D, self.intrinsics.distortion_model)
        return np.ascontiguousarray(rgb)
