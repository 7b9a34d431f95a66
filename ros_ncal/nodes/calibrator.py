"""Calibrator node: online camera-LiDAR extrinsic estimation with gated ``/tf_static`` publication.

Same inputs as the collector (``image`` or ``image/compressed``, ``camera_info``, ``points``; nominal
extrinsic from ``/tf_static`` or ``extrinsic.*`` parameters). For each camera-LiDAR pair:

* a calibration worker thread (slot of 1, newest wins, replaced pairs counted as ``busy`` drops;
  at most one calibration per ``min_period_s`` of LiDAR time) runs the backend
  (``backend``: a :func:`ros_ncal.calib.make_calibrator` spec such as ``nclr/classical`` (default:
  classical refinement from the guess and from the NCLR estimate, the better edge alignment wins),
  ``nclr``, ``classical``, ``none``, ``nclr+classical``; ``refine: classical`` appends a classical
  refinement stage to a plain or chained spec), hands the per-frame estimate to
  :class:`ros_ncal.calib.online.OnlineCalibration` (fusion, joint stage, drift, /tf_static gate) and
  publishes what it returns;
* an overlay worker projects the cloud with the current estimate (fused, else nominal) onto the
  image, coloured by depth, and publishes ``~/overlay`` (optionally downscaled).

Outputs: ``~/extrinsic`` (geometry_msgs/PoseWithCovarianceStamped: header.frame_id = LiDAR frame,
pose = camera optical frame in the LiDAR frame, i.e. T_lidar_cam; covariance from the filter's
standard error, order x y z rx ry rz in the LiDAR frame) and ``~/confidence`` (std_msgs/Float32, the
fused confidence); ``/tf_static`` (T_lidar_cam, parent = LiDAR frame, child = camera optical frame)
ONLY when the fused confidence >= ``tf.min_confidence``, its standard errors are below
``tf.max_rot_std_deg`` / ``tf.max_trans_std_m`` and it moved more than ``tf.min_change_deg`` or
``tf.min_change_m`` from the last published (or the nominal); once the joint stage refined it, the last two
joint results must agree (``tf.joint_agree_*``, instead of the fused translation's standard error) and the change
exceed ``tf.joint_min_change_*``; ``~/debug/processing_time_ms``
(std_msgs/Float64); ``~/status`` (JSON) and ``/diagnostics`` (latency, confidence, drift from nominal,
drops by reason, frames processed; WARN when the drift exceeds ``drift.tolerance_*`` for longer than
``drift.hold_s`` of LiDAR time, ERROR beyond twice the tolerance).

Fused confidence = mean per-frame confidence of the filter's inliers x min(1, inliers / fusion.min_frames).
The fusion, the confidences, the joint stage, the current estimate, the drift alarm and the /tf_static
gate are :class:`ros_ncal.calib.online.OnlineCalibration` (no ROS); this node feeds it frames, publishes
what it decides, checks the TF frame ids and logs.
The nominal extrinsic follows ``/tf_static`` until this node publishes its first estimate, then stays frozen.
Service ``~/reset`` (std_srvs/Trigger) clears the fused estimate.
"""
from __future__ import annotations

if __name__ == '__main__':   # a process of its own: one OpenBLAS thread, quiet Ctrl-C while torch / rclpy load
    from ros_ncal.ros.lifecycle import prepare_node_process
    prepare_node_process()

import json
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node

from ros_ncal.assets import NCLR_CALIB
from ros_ncal.calib.online import (DriftConfig, JointScheduleConfig, OnlineCalibration, OnlineConfig,
                                   OnlineFusionConfig, TfGateConfig)
from ros_ncal.config_io import param
from ros_ncal.data.sample import InvalidSampleError, Sample
from ros_ncal.data.sensor_input import ExtrinsicParams, PairedInput, SensorInputConfig
from ros_ncal.geometry import invert, scale_intrinsics
from ros_ncal.geometry.distortion import Rectifier
from ros_ncal.health import DropCounter, HealthConfig, HealthMonitor, drop_queue_values, worst_level
from ros_ncal.viz import depth_colors, draw_points
from ros_ncal.worker import LatestWorker

from ._common import SensorInput, declare_config, spin_node_main


@dataclass
class FusionParams:
    window: int = param(100, 'per-frame estimates kept by the online filter', min=1, max=10000)
    gate: float = param(3.0, 'inlier gate on the normalised residual', min=0.1)
    min_frame_confidence: float = param(0.05, 'per-frame estimates below this confidence are not fused',
                                        min=0.0, max=1.0)
    min_frames: int = param(5, 'inliers needed for full fused confidence', min=1)
    prior_rot_std_deg: float = param(1.0, 'standard error of a rotation no frame estimated (how well the nominal '
                                          'is known); used by ~/extrinsic and the tf.max_rot_std_deg gate', min=1e-6)
    prior_trans_std_m: float = param(0.02, 'standard error of a translation no frame estimated (kept at the '
                                           'nominal); used by ~/extrinsic and the tf.max_trans_std_m gate', min=1e-6)


@dataclass
class TfParams:
    publish: bool = param(True, 'publish accepted estimates on /tf_static')
    min_confidence: float = param(0.7, 'fused confidence needed to publish', min=0.0, max=1.0)
    max_rot_std_deg: float = param(0.5, 'largest rotation standard error allowed to publish', min=0.0)
    max_trans_std_m: float = param(0.05, 'largest translation standard error allowed to publish', min=0.0)
    min_change_deg: float = param(0.1, 'republish only when the estimate moved more than this', min=0.0)
    min_change_m: float = param(0.01, '... or more than this', min=0.0)
    joint_agree_deg: float = param(0.5, 'a joint-refined estimate: the last two joint results agree within this '
                                        'rotation (instead of the fused translation standard error)', min=0.0)
    joint_agree_m: float = param(0.05, '... and this translation', min=0.0)
    joint_min_change_deg: float = param(0.2, 'a joint-refined estimate is republished only when it moved more than '
                                             'this (the joint stage\'s accuracy on real data)', min=0.0)
    joint_min_change_m: float = param(0.05, '... or more than this', min=0.0)


@dataclass
class DriftParams:
    tolerance_deg: float = param(1.0, 'fused-vs-nominal rotation difference that counts as drift', min=0.0)
    tolerance_m: float = param(0.05, 'fused-vs-nominal translation difference that counts as drift', min=0.0)
    hold_s: float = param(2.0, 'drift must last this long (LiDAR time) before the alarm', min=0.0)
    min_confidence: float = param(0.5, 'drift is judged only with at least this fused confidence', min=0.0,
                                  max=1.0)


@dataclass
class JointParams:
    enabled: bool = param(True, 'joint multi-frame edge alignment of the fused estimate (the translation); '
                                'not with the none backend')
    every_n: int = param(5, 'run after every n-th fused frame', min=1)
    buffer: int = param(10, 'frames kept for it (the newest, at least min_spacing_s apart)', min=2, max=200)
    min_frames: int = param(4, 'frames needed in the buffer', min=2)
    min_fused_frames: int = param(5, 'fused inliers needed first (the rotation must be close)', min=1)
    min_spacing_s: float = param(0.5, 'LiDAR-time spacing of buffered frames', min=0.0)


@dataclass
class CalibratorHealth(HealthConfig):
    """``health.*``: the library's thresholds with the calibrator's defaults (config/calibrator.yaml)."""
    stale_s: float = param(15.0, 'WARN when no frame was calibrated for this long (0 = off)', min=0.0)
    error_after_s: float = param(15.0, 'a WARN condition lasting this long becomes ERROR (0 = never)', min=0.0)
    ignore_reasons: list[str] = param(help='drop reasons by design, not counted in the drop ratio (busy: only the '
                                           'newest pair waits while a calibration runs)',
                                      default_factory=lambda: ['busy', 'overlay_busy'])


@dataclass
class OverlayParams:
    enabled: bool = param(True, 'publish ~/overlay')
    scale: float = param(0.5, 'overlay image size relative to the camera image', min=0.05, max=1.0)
    point_radius: int = param(1, 'drawn point half-size in overlay pixels', min=0, max=10)
    max_depth_m: float = param(60.0, 'depth at the red end of the colour ramp', min=0.1)
    every_n: int = param(1, 'render an overlay for every n-th pair', min=1)


@dataclass
class CalibratorConfig:
    """Calibrator parameters (``config/calibrator.yaml``)."""
    input: SensorInputConfig = param(default_factory=SensorInputConfig)
    extrinsic: ExtrinsicParams = param(default_factory=ExtrinsicParams)
    backend: str = param('nclr/classical', "calibrator spec for ros_ncal.calib.make_calibrator: 'nclr/classical' "
                                           "(handover), 'nclr', 'classical', 'none', 'nclr+classical', ...")
    fallback_backend: str = param('classical', "used when 'backend' cannot be built here (e.g. no checkpoint); "
                                               "'' = fail instead")
    refine: str = param('none', 'optional refinement stage after the backend', choices=('none', 'classical'))
    checkpoint: str = param('', f"NCLR checkpoint ('' = the packaged {NCLR_CALIB.name} when present)")
    device: str = param('', "torch device for learned backends ('' = their default)")
    classical_config: str = param('', "YAML with 'classical' and 'nclr' sections for the calibrator stages ('' = defaults)")
    init_from: str = param('fused', 'initial guess given to the backend', choices=('fused', 'nominal'))
    min_period_s: float = param(0.0, 'calibrate at most once per this LiDAR-time period (0 = whenever idle)',
                                min=0.0)
    fusion: FusionParams = param(default_factory=FusionParams)
    tf: TfParams = param(default_factory=TfParams)
    drift: DriftParams = param(default_factory=DriftParams)
    joint: JointParams = param(default_factory=JointParams)
    overlay: OverlayParams = param(default_factory=OverlayParams)
    diagnostics_period_s: float = param(1.0, 'period of /diagnostics and ~/status', min=0.05, max=60.0)
    warn_period_s: float = param(5.0, 'at most one warning per drop reason per this period', min=0.0)
    health: CalibratorHealth = param(default_factory=CalibratorHealth)


def build_backend(cfg: CalibratorConfig, logger=None):
    """(calibrator object, spec actually used, note) from the backend / refine / fallback parameters."""
    from ros_ncal.calib import CalibratorUnavailableError, make_calibrator
    from ros_ncal.calib.registry import with_refinement
    checkpoint = cfg.checkpoint or (str(NCLR_CALIB) if NCLR_CALIB.exists() else '')
    options = {'checkpoint': checkpoint or None, 'config_path': cfg.classical_config or None,
               'device': cfg.device or None}

    def spec_of(name: str) -> str:
        return with_refinement(name, cfg.refine)
    spec = spec_of(cfg.backend)
    try:
        return make_calibrator(spec, **options), spec, ''
    except CalibratorUnavailableError as exc:
        if not cfg.fallback_backend:
            raise
        fallback = spec_of(cfg.fallback_backend)
        note = f'backend {spec!r} unavailable ({exc}); using {fallback!r}'
        if logger is not None:
            logger.warning(note)
        return make_calibrator(fallback, **options), fallback, note


def build_joint(cfg: CalibratorConfig):
    """The joint multi-frame refiner: settings from the ``joint`` section (and edge extraction from the
    ``classical`` section) of ``classical_config``, else the library defaults, then the node's buffer size."""
    from ros_ncal.calib.joint import JointEdgeRefiner
    refiner = JointEdgeRefiner.from_yaml(cfg.classical_config or None)
    refiner.cfg.max_frames = max(refiner.cfg.max_frames, cfg.joint.buffer)
    refiner.cfg.min_frames = min(refiner.cfg.min_frames, cfg.joint.min_frames)
    return refiner


def online_config(cfg: CalibratorConfig) -> OnlineConfig:
    """The :class:`ros_ncal.calib.online.OnlineConfig` of the calibrator's ``init_from``, ``fusion.*``, ``tf.*``,
    ``drift.*`` and ``joint.*`` parameters (same names; ``joint.enabled`` decides whether a refiner is given)."""
    def section(cls, params):
        return cls(**{f.name: getattr(params, f.name) for f in fields(cls)})
    return OnlineConfig(init_from=cfg.init_from, fusion=section(OnlineFusionConfig, cfg.fusion),
                        tf=section(TfGateConfig, cfg.tf), drift=section(DriftConfig, cfg.drift),
                        joint=section(JointScheduleConfig, cfg.joint))


def pose_covariance_lidar_cam(T_cam_lidar: np.ndarray, cov_cam_lidar: np.ndarray, unknown_var: float = 1e6) -> np.ndarray:
    """6x6 covariance of T_cam_lidar (tangent [rotvec on the left (rad), translation (m)]) -> covariance
    of the pose T_lidar_cam in ROS order (x, y, z, rx, ry, rz), about the LiDAR frame axes."""
    if not np.all(np.isfinite(cov_cam_lidar)):
        return np.diag([unknown_var] * 6)
    R, t = T_cam_lidar[:3, :3], T_cam_lidar[:3, 3]
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    J = np.zeros((6, 6))
    J[:3, :3] = -R.T @ tx      # d translation / d omega
    J[:3, 3:] = -R.T           # d translation / d v
    J[3:, :3] = -R.T           # d rotation / d omega
    out = J @ cov_cam_lidar @ J.T
    return 0.5 * (out + out.T)


def tf_frames_problem(parent: str, child: str, lidar_frame: str = '', camera_frame: str = '') -> str:
    """Why ``parent -> child`` must not go on /tf_static ('' when it may): an empty frame, parent == child,
    or not the configured LiDAR (parent) and camera (child) frames when those are set."""
    parent, child = parent.lstrip('/'), child.lstrip('/')
    if not parent or not child:
        return 'empty frame id'
    if parent == child:
        return 'parent equals child'
    if lidar_frame and parent != lidar_frame.lstrip('/'):
        return f'parent is not the configured LiDAR frame {lidar_frame!r}'
    if camera_frame and child != camera_frame.lstrip('/'):
        return f'child is not the configured camera frame {camera_frame!r}'
    return ''


def render_overlay(rgb: np.ndarray, points: np.ndarray, T_cam_lidar: np.ndarray, K: np.ndarray,
                   scale: float = 1.0, radius: int = 1, max_depth_m: float = 60.0) -> tuple[np.ndarray, int]:
    """rgb (H, W, 3) uint8, points (N, 3+) LiDAR -> (overlay (h, w, 3) uint8, points drawn).

    The image is downscaled by ``scale`` first; points are squares of half-size ``radius`` coloured by
    depth on the one ramp of every overlay (:func:`ros_ncal.viz.depth_colors`: near = red), far points drawn first.
    """
    H, W = rgb.shape[:2]
    if scale < 1.0:
        from PIL import Image as PILImage
        w, h = max(1, round(W * scale)), max(1, round(H * scale))
        img = np.asarray(PILImage.fromarray(rgb).resize((w, h), PILImage.BILINEAR)).copy()
        K = scale_intrinsics(K, w / W, h / H)
    else:
        img, (h, w) = rgb.copy(), (H, W)
    u, v, depth = _project_in_view(points, T_cam_lidar, K, (h, w))
    draw_points(img, np.stack([u, v], axis=1), depth_colors(depth, max_depth_m), depth, radius)
    return img, int(len(depth))


def _project_in_view(points: np.ndarray, T_cam_lidar: np.ndarray, K: np.ndarray, hw: tuple[int, int],
                     min_depth: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """points (N, 3+) LiDAR -> (u (M,) int64, v (M,) int64, depth (M,) float32) of the points that land in the
    (h, w) image (nearest pixel). Same model as ``ros_ncal.geometry.project_lidar``, written with float32
    broadcasting (no BLAS call: a skinny matmul on a loaded machine is ~10x slower with OpenBLAS threads)."""
    P = np.asarray(points, dtype=np.float32)[:, :3]
    R = np.asarray(T_cam_lidar, dtype=np.float32)[:3, :3]
    t = np.asarray(T_cam_lidar, dtype=np.float32)[:3, 3]
    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    zc = x * R[2, 0] + y * R[2, 1] + z * R[2, 2] + t[2]
    keep = zc > min_depth
    x, y, z, zc = x[keep], y[keep], z[keep], zc[keep]
    xc = (x * R[0, 0] + y * R[0, 1] + z * R[0, 2] + t[0]) / zc
    yc = (x * R[1, 0] + y * R[1, 1] + z * R[1, 2] + t[1]) / zc
    K = np.asarray(K, dtype=np.float64)
    u = np.floor(K[0, 0] * xc + K[0, 1] * yc + K[0, 2] + 0.5)
    v = np.floor(K[1, 1] * yc + K[1, 2] + 0.5)
    h, w = hw
    ok = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    return u[ok].astype(np.int64), v[ok].astype(np.int64), zc[ok]


class CalibratorNode(Node):
    """Online extrinsic calibration (see module docstring)."""

    def __init__(self, **kwargs):
        super().__init__(kwargs.pop('node_name', 'calibrator'), **kwargs)
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float32, Float64, String

        from ros_ncal.ros.diagnostics import DiagnosticsHelper
        from ros_ncal.ros.qos import reliable_qos
        from ros_ncal.ros.tf_static import StaticTransformBroadcaster

        self.cfg: CalibratorConfig = declare_config(self, CalibratorConfig)
        self.backend, self.backend_spec, self.backend_note = build_backend(self.cfg, self.get_logger())
        self.health = HealthMonitor(self.cfg.health, start_s=time.monotonic())
        self.joint = build_joint(self.cfg) if self.cfg.joint.enabled and self.backend_spec != 'none' else None
        # fusion, confidences, joint stage, current estimate, drift and the /tf_static gate (its own lock)
        self.core = OnlineCalibration(online_config(self.cfg), self.joint)
        self.drops = DropCounter(self.get_logger(), self.cfg.warn_period_s)
        self.skipped: Counter = Counter()
        self._lock = threading.Lock()
        self._rectifier = Rectifier()
        # state (guarded by _lock)
        self.nominal: np.ndarray | None = None
        self.n_calibrated = 0
        self.n_overlays = 0
        self.n_pairs = 0
        self.processing_ms = 0.0
        self.latency_ms = {'calibration': 0.0, 'overlay': 0.0}
        self._last_calib_stamp: int | None = None

        self._sensor_group = ReentrantCallbackGroup()
        self._ctl_group = MutuallyExclusiveCallbackGroup()
        q = reliable_qos(5)
        self._pub_extrinsic = self.create_publisher(PoseWithCovarianceStamped, '~/extrinsic', q)
        self._pub_conf = self.create_publisher(Float32, '~/confidence', q)
        self._pub_overlay = self.create_publisher(Image, '~/overlay', q)
        self._pub_proc = self.create_publisher(Float64, '~/debug/processing_time_ms', q)
        self._pub_status = self.create_publisher(String, '~/status', 10)
        self._tf = StaticTransformBroadcaster(self)
        self._diag = DiagnosticsHelper(self, 'calibrator', hardware_id=self.backend_spec)
        self.calib_worker = LatestWorker(self._calibrate, 'calibrator-backend', self._worker_error('backend_error'))
        self.overlay_worker = LatestWorker(self._overlay, 'calibrator-overlay', self._worker_error('overlay_error'))
        self.input = SensorInput(self, self.cfg.input, self.cfg.extrinsic, self.drops, self._on_pair,
                                 callback_group=self._sensor_group)
        self._timer = self.create_timer(self.cfg.diagnostics_period_s, self.publish_diagnostics,
                                        callback_group=self._ctl_group)
        from std_srvs.srv import Trigger
        self._srv_reset = self.create_service(Trigger, '~/reset', self._srv_reset_cb, callback_group=self._ctl_group)
        self.get_logger().info(f'calibrator: backend {self.backend_spec!r}'
                               + (f' ({self.backend_note})' if self.backend_note else ''))

    def _worker_error(self, reason: str):
        def handler(pair, exc: BaseException) -> None:
            self.drops.drop(reason, f'{type(exc).__name__}: {exc}')
        return handler

    def reset(self) -> str:
        """Forget the fused estimate (e.g. after the sensors were remounted); the nominal is kept."""
        return f'cleared {self.core.reset()} fused frames'

    # the calibration state lives in self.core; these read it (tests, benches, status)
    @property
    def filter(self):
        """The core's :class:`ros_ncal.calib.OnlineExtrinsicFilter` (to read: ``count``)."""
        return self.core.filter

    @property
    def fused(self):
        return self.core.fused

    @property
    def fused_confidence(self) -> float:
        return self.core.fused_confidence

    @property
    def current(self) -> np.ndarray | None:
        return self.core.current

    @property
    def last_published(self) -> np.ndarray | None:
        return self.core.last_published

    @property
    def n_tf_published(self) -> int:
        return self.core.n_published

    @property
    def drift(self) -> dict:
        """{'rot_deg', 'trans_m', 'state', 'since_ns', 'held_s'}: the core's drift verdict."""
        return asdict(self.core.drift)

    def _srv_reset_cb(self, request, response):
        response.success, response.message = True, self.reset()
        return response

    # -- executor thread: hand pairs to the workers
    def _on_pair(self, pair: PairedInput) -> None:
        with self._lock:
            self.n_pairs += 1
            n = self.n_pairs
            if self.nominal is None or not self.input._tf_freeze:  # noqa: SLF001
                self.nominal = pair.T_cam_lidar
            do_calib = self._last_calib_stamp is None or self.cfg.min_period_s <= 0 or \
                abs(pair.cloud.stamp_ns - self._last_calib_stamp) >= self.cfg.min_period_s * 1e9
            if do_calib:
                self._last_calib_stamp = pair.cloud.stamp_ns
        if self.cfg.overlay.enabled and (n - 1) % self.cfg.overlay.every_n == 0:
            if self.overlay_worker.submit(pair) is not None:
                self.drops.drop('overlay_busy', 'overlay rendering still busy; kept the newest pair')
        if do_calib:
            if self.calib_worker.submit(pair) is not None:
                self.drops.drop('busy', 'calibration still running; kept the newest pair')
        else:
            self.skipped['rate_limited'] += 1

    def _decode_or_drop(self, pair: PairedInput):
        """The pair's RGB image (decoded once, shared by both workers), or None with the drop counted once
        per pair (whichever worker meets the failure first counts it)."""
        try:
            return pair.decode_image(self._rectifier)
        except ValueError as exc:
            if pair.claim_decode_failure():
                self.drops.drop(getattr(exc, 'reason', 'image_malformed'), str(exc))
            return None

    # -- calibration worker
    def _calibrate(self, pair: PairedInput) -> None:
        from std_msgs.msg import Float64
        rgb = self._decode_or_drop(pair)
        if rgb is None:
            return
        with self._lock:
            nominal = self.nominal if self.nominal is not None else pair.T_cam_lidar
        T_init = self.core.initial_guess(nominal)
        try:
            sample = Sample(points=pair.cloud.points, image=rgb, K=pair.intrinsics.K, T_cam_lidar=T_init,
                            stamp_ns=pair.cloud.stamp_ns, image_stamp_ns=pair.camera.stamp_ns,
                            frame_ids=(pair.cloud.frame_id, pair.camera.frame_id))
        except InvalidSampleError as exc:
            self.drops.drop('sample_invalid', str(exc))
            return
        t_backend = time.perf_counter()
        res = self.backend.estimate(sample, T_init)
        proc_ms = (time.perf_counter() - t_backend) * 1e3
        out = self.core.process_frame(sample, res, nominal)     # fusion, joint stage, drift, /tf_static gate
        with self._lock:
            self.processing_ms = proc_ms
        self._pub_proc.publish(Float64(data=float(proc_ms)))
        self._publish_extrinsic(out.current, out.fused, out.confidence, pair)
        if out.drift_alarm:
            d = out.drift
            self.get_logger().warning(f'extrinsic drift {d.rot_deg:.2f} deg / {d.trans_m:.3f} m from nominal '
                                      f'for {d.held_s:.1f} s ({d.state})')
        if out.tf.publish:
            self._publish_tf(out.current, out.confidence, out.tf, pair)
        with self._lock:
            self.latency_ms['calibration'] = (time.monotonic() - pair.received_mono) * 1e3
            self.n_calibrated += 1      # counted once the frame is fully handled (drift and TF included)

    def _publish_extrinsic(self, T_cam_lidar: np.ndarray, fused, conf: float, pair: PairedInput) -> None:
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from std_msgs.msg import Float32

        from ros_ncal.ros.conversions import make_header, matrix_to_transform_msg
        T_lidar_cam = invert(T_cam_lidar)
        tr = matrix_to_transform_msg(T_lidar_cam)
        msg = PoseWithCovarianceStamped(header=make_header(pair.cloud.frame_id, pair.cloud.stamp_ns))
        msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = (
            tr.translation.x, tr.translation.y, tr.translation.z)
        msg.pose.pose.orientation = tr.rotation
        cov = pose_covariance_lidar_cam(T_cam_lidar, fused.covariance) if fused is not None else np.diag([1e6] * 6)
        msg.pose.covariance = [float(x) for x in cov.ravel()]
        self._pub_extrinsic.publish(msg)
        self._pub_conf.publish(Float32(data=float(conf)))

    def _publish_tf(self, T: np.ndarray, conf: float, decision, pair: PairedInput) -> None:
        """T: (4, 4) T_cam_lidar the core's gate let through (``decision``: its TfDecision). Sends it on
        /tf_static unless the message frames are wrong, and tells the core what was sent."""
        parent, child = pair.cloud.frame_id, pair.camera.frame_id
        bad = tf_frames_problem(parent, child, self.cfg.input.lidar_frame, self.cfg.input.camera_frame)
        if bad:
            self.drops.drop('frame_mismatch', f'not publishing {parent!r} -> {child!r} on /tf_static: {bad}')
            return
        self.input.freeze_tf()     # the nominal stays the one heard before our first publication
        self._tf.send_matrix(invert(T), parent, child, pair.cloud.stamp_ns)
        self.core.mark_published(T)
        self.get_logger().info(f'published extrinsic on /tf_static (confidence {conf:.2f}, '
                               f'{decision.change_rot_deg:.2f} deg / {decision.change_trans_m:.3f} m from the previous)')

    # -- overlay worker
    def _overlay(self, pair: PairedInput) -> None:
        from ros_ncal.ros.conversions import rgb_to_image_msg
        rgb = self._decode_or_drop(pair)
        if rgb is None:
            return
        T = self.core.current
        if T is None:
            with self._lock:
                T = self.nominal if self.nominal is not None else pair.T_cam_lidar
        o = self.cfg.overlay
        img, _ = render_overlay(rgb, pair.cloud.points, T, pair.intrinsics.K, o.scale, o.point_radius, o.max_depth_m)
        self._pub_overlay.publish(rgb_to_image_msg(img, pair.camera.frame_id, pair.cloud.stamp_ns))
        with self._lock:
            self.n_overlays += 1
            self.latency_ms['overlay'] = (time.monotonic() - pair.received_mono) * 1e3

    # -- reporting
    def status(self) -> dict:
        self.input._sync_pairer_drops()  # noqa: SLF001
        calib = self.core.status()
        with self._lock:
            st = {'backend': self.backend_spec, 'backend_note': self.backend_note, 'pairs': self.n_pairs,
                  'calibrated': self.n_calibrated, 'overlays': self.n_overlays,
                  **{k: calib[k] for k in ('tf_published', 'confidence', 'frame_confidence', 'frame_message',
                                           'fused_frames', 'estimated', 'rot_std_deg', 'trans_std_m')},
                  'processing_time_ms': round(self.processing_ms, 2),
                  'latency_ms': {k: round(v, 2) for k, v in self.latency_ms.items()},
                  'drift': calib['drift'], 'skipped': dict(self.skipped), 'joint': calib['joint']}
        st['dropped'] = self.drops.snapshot()
        st['received'] = self.input.received()
        st['queues'] = {**self.input.queue_sizes(), 'calib_pending': self.calib_worker.pending,
                        'calib_busy': int(self.calib_worker.busy), 'overlay_pending': self.overlay_worker.pending}
        return st

    def publish_diagnostics(self) -> dict:
        from std_msgs.msg import String
        st = self.status()
        level = st['drift']['state']
        if level == 'OK' and st['backend_note']:
            level = 'WARN'
        verdict = self.health.update(time.monotonic(), accepted=st['pairs'], processed=st['calibrated'],
                                     drops=st['dropped'])
        level = worst_level(level, verdict.level)
        st['health'] = {'level': verdict.level, 'reasons': verdict.reasons}
        self._pub_status.publish(String(data=json.dumps(st)))
        msg = (f"drift {st['drift']['rot_deg']:.2f} deg / {st['drift']['trans_m']:.3f} m ({st['drift']['state']}), "
               f"confidence {st['confidence']:.2f}, backend {st['backend']}")
        if verdict.reasons:
            msg = '; '.join(verdict.reasons) + '; ' + msg
        values = {'backend': st['backend'], 'frames_received': st['pairs'], 'frames_processed': st['calibrated'],
                  'overlays': st['overlays'], 'confidence': float(st['confidence']),
                  'frame_confidence': st['frame_confidence'], 'latency_ms': float(st['latency_ms']['calibration']),
                  'overlay_latency_ms': float(st['latency_ms']['overlay']),
                  'processing_time_ms': float(st['processing_time_ms']),
                  'drift_deg': float(st['drift']['rot_deg']), 'drift_m': float(st['drift']['trans_m']),
                  'drift_state': st['drift']['state'], 'tf_published': st['tf_published'],
                  'estimated': st['estimated'] or 'nothing',
                  'rot_std_deg': st['rot_std_deg'] if st['rot_std_deg'] is not None else 'inf',
                  'trans_std_m': st['trans_std_m'] if st['trans_std_m'] is not None else 'inf'}
        values.update(verdict.values())
        values.update(drop_queue_values(st['dropped'], st['queues']))
        self._diag.publish(level, msg, values)
        return st

    def close(self) -> None:
        self.calib_worker.stop(timeout_s=30.0)
        self.overlay_worker.stop(timeout_s=10.0)


def main(args=None) -> int:
    return spin_node_main(CalibratorNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
