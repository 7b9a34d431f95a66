"""Online calibration core: the state machine behind the calibrator node, without ROS.

:class:`OnlineCalibration` takes one calibrated frame at a time (the :class:`Sample`, the backend's
:class:`CalibResult` and the nominal extrinsic of that frame) and owns everything that happens to it after
the backend: the robust fusion (:class:`OnlineExtrinsicFilter`), the per-frame and fused confidences, the
joint multi-frame stage (a buffer of frames, run every n-th fused frame, kept only when it succeeded), the
current estimate (joint-refined, else fused, else nominal), the initial guess of the next frame, the drift
alarm on the sensor clock, and the decision whether the current estimate may go on ``/tf_static``. Each frame
returns a :class:`FrameOutcome`; the caller publishes what it says and reports back what it actually sent
with :meth:`OnlineCalibration.mark_published`. Who drives it: ``ros_ncal.nodes.calibrator`` (its
calibration worker thread calls :meth:`~OnlineCalibration.process_frame`; its executor thread reads
:meth:`~OnlineCalibration.status`). The node keeps the subscriptions, the worker threads, the frame-id check
of the TF message, publishing and logging.

Fused confidence = mean per-frame confidence of the filter's inliers x min(1, inliers / fusion.min_frames).
Drift: WARN when the current estimate differs from the nominal by more than ``drift.tolerance_*`` for longer
than ``drift.hold_s`` of sensor time (ERROR beyond twice the tolerance), judged only at a fused confidence of
at least ``drift.min_confidence``. The sensor clock accumulates the LiDAR stamps of the processed frames; a
step back (a looped bag) or a gap over 60 s counts as the previous frame interval.

Who else drives it: ``ros_ncal.calib.offline.calibrate_sequence`` (``ncal calibrate``, the evaluation's
sequence protocol), in the offline form: ``relative_to_nominal`` (it fuses the corrections
``inv(T_nominal) @ T_est`` relative to each frame's own nominal, since frames of a dataset may carry
different nominals), ``confidence_floor`` 1e-3 (every successful frame counts), the YAML ``fusion`` section
as the filter's config, and no scheduled joint stage (one joint refinement over all frames after the
sequence, by the caller); its drift and TF verdicts are computed and not used.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ros_ncal.config_io import to_jsonable
from ros_ncal.data.sample import Sample
from ros_ncal.geometry import invert, pose_error

from .fusion import FusionConfig, FusionResult, OnlineExtrinsicFilter
from .result import CalibResult

# a gap between two processed frames longer than this is not sensor time (a pause, a bag jump)
MAX_FRAME_GAP_NS = 60 * 10**9
DRIFT_STATES = ('OK', 'WARN', 'ERROR')


@dataclass
class OnlineFusionConfig:
    """The robust fusion and the fused confidence (the node's ``fusion.*`` parameters)."""

    window: int = 100                   # per-frame estimates kept by the filter
    gate: float = 3.0                   # inlier gate on the normalised residual
    min_frame_confidence: float = 0.05  # per-frame estimates below are not fused
    min_frames: int = 5                 # inliers needed for full fused confidence
    prior_rot_std_deg: float = 1.0      # standard error of components no frame estimated
    prior_trans_std_m: float = 0.02

    def filter_config(self) -> FusionConfig:
        """The :class:`FusionConfig` of the filter (the library defaults for everything else)."""
        return FusionConfig(gate=self.gate, window=self.window, min_confidence=self.min_frame_confidence,
                            prior_rot_std_deg=self.prior_rot_std_deg, prior_trans_std_m=self.prior_trans_std_m)


@dataclass
class TfGateConfig:
    """When the current estimate may go on ``/tf_static`` (the node's ``tf.*`` parameters)."""

    publish: bool = True
    min_confidence: float = 0.7         # fused confidence needed
    max_rot_std_deg: float = 0.5        # largest standard errors allowed
    max_trans_std_m: float = 0.05
    min_change_deg: float = 0.1         # republish only when it moved more than this ...
    min_change_m: float = 0.01          # ... or more than this, from the last published (or the nominal)
    # An estimate refined by the joint stage (its translation comes from there, not from the fused frames):
    joint_agree_deg: float = 0.5        # the last two joint results agree within these (in place of the fused
    joint_agree_m: float = 0.05         # translation's standard error, which knows nothing of the joint stage)
    joint_min_change_deg: float = 0.2   # and it moved more than this or more than this: the joint stage's accuracy
    joint_min_change_m: float = 0.05    # on real data (docs/calibration_eval.md), so it never republishes its noise


@dataclass
class DriftConfig:
    """The drift alarm (the node's ``drift.*`` parameters)."""

    tolerance_deg: float = 1.0          # current-vs-nominal difference that counts as drift
    tolerance_m: float = 0.05
    hold_s: float = 2.0                 # sensor time it must last before the alarm
    min_confidence: float = 0.5         # judged only with at least this fused confidence


@dataclass
class JointScheduleConfig:
    """When the joint multi-frame stage runs (the node's ``joint.*`` parameters except ``enabled``: the stage
    is on when :class:`OnlineCalibration` is given a refiner)."""

    every_n: int = 5                    # after every n-th fused frame
    buffer: int = 10                    # frames kept (the newest, at least min_spacing_s apart)
    min_frames: int = 4                 # frames needed in the buffer
    min_fused_frames: int = 5           # fused inliers needed first
    min_spacing_s: float = 0.5          # sensor-time spacing of buffered frames


@dataclass
class OnlineConfig:
    """Settings of :class:`OnlineCalibration`; the defaults equal the calibrator node's parameter defaults."""

    init_from: str = 'fused'            # initial guess of the next frame: 'fused' (current estimate) or 'nominal'
    relative_to_nominal: bool = False   # fuse each frame's correction inv(T_nominal) @ T_est instead of T_est, so
                                        # frames whose nominals differ (datasets of several rigs / days) agree;
                                        # the current estimate is then the frame's nominal @ the fused correction
    confidence_floor: float = 0.0       # a successful frame enters the fusion with at least this confidence
    fusion: OnlineFusionConfig = field(default_factory=OnlineFusionConfig)
    tf: TfGateConfig = field(default_factory=TfGateConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    joint: JointScheduleConfig = field(default_factory=JointScheduleConfig)

    def __post_init__(self) -> None:
        if self.init_from not in ('fused', 'nominal'):
            raise ValueError(f"online config: init_from must be 'fused' or 'nominal', got {self.init_from!r}")
        if not self.confidence_floor >= 0.0:
            raise ValueError(f'online config: confidence_floor must be >= 0, got {self.confidence_floor}')


@dataclass(frozen=True)
class DriftStatus:
    """The drift verdict: rot_deg / trans_m: current estimate vs nominal at the last judged frame;
    state: OK, WARN or ERROR; since_ns: sensor time when the tolerance was first exceeded (None while within);
    held_s: how long it has been exceeded (sensor time)."""

    rot_deg: float = 0.0
    trans_m: float = 0.0
    state: str = 'OK'
    since_ns: int | None = None
    held_s: float = 0.0


@dataclass(frozen=True)
class TfDecision:
    """Whether the current estimate goes on ``/tf_static`` now.

    publish: the gate is open; reason: why not ('' when it is); change_rot_deg / change_trans_m: the current
    estimate vs ``reference`` ('published': the last transform marked published, else 'nominal')."""

    publish: bool
    reason: str
    change_rot_deg: float
    change_trans_m: float
    reference: str


@dataclass(frozen=True)
class FrameOutcome:
    """What one frame did.

    accepted: the frame entered the fusion. current: (4, 4) float64 T_cam_lidar, the current estimate
    (joint-refined, else fused, else the frame's nominal). fused: the filter's estimate (None while empty).
    confidence: the fused confidence. drift: the verdict after this frame; drift_alarm: it turned WARN or ERROR
    on this frame (changed to a non-OK state: the caller logs it). tf: the /tf_static gate. joint: the
    refiner's result when the joint stage ran on this frame, else None."""

    accepted: bool
    current: np.ndarray
    fused: FusionResult | None
    confidence: float
    drift: DriftStatus
    drift_alarm: bool
    tf: TfDecision
    joint: Any = None


class OnlineCalibration:
    """Online calibration state (module docstring).

    joint_refiner: anything with ``refine(frames: list[Sample], extrinsics: list[(4, 4)]) -> result`` where
    the result has ``success``, ``correction`` ((4, 4), applied on the left of the fused T_cam_lidar) and
    ``message`` (:class:`ros_ncal.calib.joint.JointEdgeRefiner`); None = no joint stage.

    Thread safety: every method takes the instance's own lock, which is never held while calling out (the
    joint refinement runs outside it), so readers (:meth:`status`, the properties) never wait for a
    refinement. :meth:`process_frame` must be called from one thread at a time.
    """

    def __init__(self, config: OnlineConfig | None = None, joint_refiner=None,
                 fusion: FusionConfig | None = None) -> None:
        self.cfg = config or OnlineConfig()
        if joint_refiner is not None and self.cfg.relative_to_nominal:
            raise ValueError('OnlineCalibration: the scheduled joint stage needs one rig nominal '
                             '(relative_to_nominal off); run a joint refinement after the sequence instead')
        self.joint_refiner = joint_refiner
        self._lock = threading.Lock()
        # fusion: a full FusionConfig (the YAML ``fusion`` section of ``ncal calibrate``) instead of cfg.fusion's
        self._filter = OnlineExtrinsicFilter(fusion if fusion is not None else self.cfg.fusion.filter_config())
        self._frame_conf: deque[float] = deque(maxlen=self.cfg.fusion.window)  # confidences of the filter's frames
        self._joint_frames: deque[Sample] = deque(maxlen=self.cfg.joint.buffer)
        self._generation = 0                         # bumped by reset(): a refinement started before is dropped
        self._nominal: np.ndarray | None = None      # the nominal of the last processed frame
        self._fused: FusionResult | None = None
        self._fused_confidence = 0.0
        self._joint_T: np.ndarray | None = None      # last successful joint refinement of the fused estimate
        self._joint_prev: np.ndarray | None = None   # the one before it (the gate's agreement test)
        self._drift = DriftStatus()
        self._last_result: CalibResult | None = None
        self._last_published: np.ndarray | None = None
        # counters (not cleared by reset)
        self.n_frames = 0
        self.n_fused = 0
        self.n_published = 0
        self.joint_runs = 0
        self.joint_applied = 0
        self.joint_message = ''
        # sensor clock (ns): accumulated LiDAR time of the processed frames
        self._clock_now = 0
        self._clock_last_stamp: int | None = None
        self._clock_last_dt = 0

    # -- read access
    @property
    def nominal(self) -> np.ndarray | None:
        """(4, 4) float64 T_cam_lidar: the nominal of the last processed frame (None before any)."""
        with self._lock:
            return self._nominal

    @property
    def current(self) -> np.ndarray | None:
        """(4, 4) float64 T_cam_lidar: joint-refined, else fused, else the nominal (None before any frame)."""
        with self._lock:
            return self._current()

    @property
    def fused(self) -> FusionResult | None:
        with self._lock:
            return self._fused

    @property
    def fused_confidence(self) -> float:
        with self._lock:
            return self._fused_confidence

    @property
    def drift(self) -> DriftStatus:
        with self._lock:
            return self._drift

    @property
    def last_published(self) -> np.ndarray | None:
        """(4, 4) float64 T_cam_lidar last marked published (None before any)."""
        with self._lock:
            return self._last_published

    @property
    def last_result(self) -> CalibResult | None:
        with self._lock:
            return self._last_result

    @property
    def filter(self) -> OnlineExtrinsicFilter:
        """The fusion filter, to read (``count``); frames enter it through :meth:`process_frame` only."""
        return self._filter

    @property
    def fused_frames(self) -> int:
        """Frames in the fusion window."""
        with self._lock:
            return self._filter.count

    @property
    def joint_buffered(self) -> int:
        with self._lock:
            return len(self._joint_frames)

    @property
    def sensor_time_ns(self) -> int:
        """The sensor clock: LiDAR time accumulated over the processed frames."""
        with self._lock:
            return self._clock_now

    def initial_guess(self, nominal: np.ndarray) -> np.ndarray:
        """(4, 4) T_cam_lidar the backend should start the next frame from: the current estimate with
        ``init_from='fused'`` once something is fused, else ``nominal`` (4, 4)."""
        with self._lock:
            if self.cfg.init_from == 'fused' and self._fused is not None:
                return self._current(np.asarray(nominal, dtype=np.float64))
            return nominal

    # -- one frame
    def process_frame(self, sample: Sample, result: CalibResult, nominal: np.ndarray) -> FrameOutcome:
        """sample: the frame the backend saw (``stamp_ns`` drives the sensor clock and the joint buffer);
        result: the backend's estimate; nominal: (4, 4) float64 T_cam_lidar nominal of this frame."""
        nominal = np.asarray(nominal, dtype=np.float64)
        with self._lock:
            self._nominal = nominal
            self.n_frames += 1
            self._last_result = result
            accepted = False
            if result.success:
                T_push = invert(nominal) @ result.T_cam_lidar if self.cfg.relative_to_nominal else result.T_cam_lidar
                accepted = self._filter.push(T_push, max(float(result.confidence), self.cfg.confidence_floor),
                                             result.estimated)
            if accepted:
                self._frame_conf.append(float(result.confidence))
                self.n_fused += 1
            fused = self._filter.estimate()
            self._fused = fused
            self._fused_confidence = self._compute_fused_confidence(fused)
            joint_frames = self._schedule_joint(sample, fused) if accepted else None
            generation = self._generation
        joint_res = None
        if joint_frames is not None:
            joint_res = self.joint_refiner.refine(joint_frames, [fused.T] * len(joint_frames))
        with self._lock:
            if joint_res is not None:
                self.joint_runs += 1
                self.joint_message = joint_res.message
                if joint_res.success and generation == self._generation:
                    self._joint_prev = self._joint_T
                    self._joint_T = joint_res.correction @ fused.T
                    self.joint_applied += 1
            fused, conf = self._fused, self._fused_confidence
            current = self._current()
            drift_alarm = self._update_drift(current if fused is not None else None, conf, nominal, sample.stamp_ns)
            decision = self._tf_decision(current, fused, conf, nominal)
            return FrameOutcome(accepted, current, fused, conf, self._drift, drift_alarm, decision, joint_res)

    def mark_published(self, T_cam_lidar: np.ndarray) -> None:
        """T_cam_lidar: (4, 4) float64, what the caller actually sent on /tf_static; the next gate decisions
        measure the change from it."""
        with self._lock:
            self._last_published = np.array(T_cam_lidar, dtype=np.float64, copy=True)
            self.n_published += 1

    def reset(self) -> int:
        """Forget the fused estimate, the joint refinement and its buffer, and the drift verdict (e.g. after the
        sensors were remounted); the nominal, the last published transform, the counters and the sensor clock
        stay. Returns the number of fused frames cleared."""
        with self._lock:
            n = self._filter.count
            self._filter.reset()
            self._frame_conf.clear()
            self._fused, self._fused_confidence = None, 0.0
            self._joint_T = None
            self._joint_prev = None
            self._joint_frames.clear()
            self._drift = DriftStatus()
            self._generation += 1
        return n

    def status(self) -> dict[str, Any]:
        """JSON-ready calibration state for the node's ``~/status``."""
        with self._lock:
            fused, res = self._fused, self._last_result
            return {'tf_published': self.n_published, 'confidence': round(self._fused_confidence, 4),
                    'frame_confidence': round(res.confidence, 4) if res is not None else None,
                    'frame_message': res.message if res is not None else '',
                    'fused_frames': self._filter.count,
                    'estimated': None if fused is None else ''.join(
                        n for n, e in zip(('rx', 'ry', 'rz', 'tx', 'ty', 'tz'), fused.estimated) if e) or 'nothing',
                    'rot_std_deg': None if fused is None else to_jsonable(fused.rot_std_deg),
                    'trans_std_m': None if fused is None else to_jsonable(fused.trans_std_m),
                    'drift': {'rot_deg': round(self._drift.rot_deg, 4), 'trans_m': round(self._drift.trans_m, 5),
                              'state': self._drift.state},
                    'joint': {'enabled': self.joint_refiner is not None, 'runs': self.joint_runs,
                              'applied': self.joint_applied, 'buffered': len(self._joint_frames),
                              'message': self.joint_message}}

    # -- internals (called with the lock held)
    def _current(self, nominal: np.ndarray | None = None) -> np.ndarray | None:
        """The current estimate for ``nominal`` (4, 4) (default: the last processed frame's nominal, which only
        ``relative_to_nominal`` and the no-estimate case read)."""
        nominal = self._nominal if nominal is None else nominal
        if self._joint_T is not None:
            return self._joint_T
        if self._fused is None:
            return nominal
        return nominal @ self._fused.T if self.cfg.relative_to_nominal else self._fused.T

    def _compute_fused_confidence(self, fused: FusionResult | None) -> float:
        """Mean per-frame confidence of the inliers x min(1, inliers / fusion.min_frames); 0 without inliers."""
        if fused is None or not len(self._frame_conf):
            return 0.0
        confs = np.asarray(self._frame_conf, dtype=np.float64)
        inl = np.asarray(fused.inliers, dtype=bool)
        if len(inl) != len(confs) or not inl.any():
            return 0.0
        support = min(1.0, fused.n_inliers / float(self.cfg.fusion.min_frames))
        return float(confs[inl].mean() * support)

    def _schedule_joint(self, sample: Sample, fused: FusionResult | None) -> list[Sample] | None:
        """Buffer an accepted frame (at least ``joint.min_spacing_s`` of sensor time after the newest buffered
        one); the frames to refine over when the joint stage is due now, else None."""
        if self.joint_refiner is None:
            return None
        j = self.cfg.joint
        last = self._joint_frames[-1].stamp_ns if self._joint_frames else None
        if last is None or abs(sample.stamp_ns - last) >= j.min_spacing_s * 1e9:
            self._joint_frames.append(sample)
        if fused is None or fused.n_inliers < j.min_fused_frames or len(self._joint_frames) < j.min_frames \
                or self.n_fused % j.every_n:
            return None
        return list(self._joint_frames)

    def _update_drift(self, T: np.ndarray | None, conf: float, nominal: np.ndarray, stamp_ns: int) -> bool:
        """T: (4, 4) the current estimate (None before any fused frame). Advances the sensor clock; returns True
        when the verdict turned WARN or ERROR on this frame."""
        d = self.cfg.drift
        now = self._advance_sensor_clock(stamp_ns)
        if T is None or conf < d.min_confidence:
            return False                    # not judged: keep the last verdict
        rot, trans = pose_error(T, nominal)
        exceed = rot > d.tolerance_deg or trans > d.tolerance_m
        exceed2 = rot > 2 * d.tolerance_deg or trans > 2 * d.tolerance_m
        since = self._drift.since_ns
        if exceed and since is None:
            since = now
        elif not exceed:
            since = None
        held = since is not None and now - since >= d.hold_s * 1e9
        state = ('ERROR' if exceed2 else 'WARN') if held else 'OK'
        alarm = state != self._drift.state and state != 'OK'
        self._drift = DriftStatus(rot, trans, state, since, (now - since) / 1e9 if since is not None else 0.0)
        return alarm

    def _advance_sensor_clock(self, stamp_ns: int) -> int:
        """Sensor time (ns) accumulated over the processed frames: a step back in the stamps (a looped bag) or
        a gap over 60 s counts as the previous frame interval, so the drift hold time means the same in live
        use, bag replays at any rate and looped replays."""
        last = self._clock_last_stamp
        if last is not None:
            dt = stamp_ns - last
            if 0 < dt <= MAX_FRAME_GAP_NS:
                self._clock_last_dt = dt
            else:
                dt = self._clock_last_dt
            self._clock_now += dt
        self._clock_last_stamp = stamp_ns
        return self._clock_now

    def _tf_decision(self, T: np.ndarray, fused: FusionResult | None, conf: float, nominal: np.ndarray) -> TfDecision:
        """T: (4, 4) the current estimate; gated on the fusion's confidence, its standard errors and the change
        from the last published transform (else the nominal). Once the joint stage refined the estimate, the
        translation's evidence is the joint stage's: its last two results must agree (``tf.joint_agree_*``)
        and the change must exceed its accuracy (``tf.joint_min_change_*``)."""
        t = self.cfg.tf
        reference = 'published' if self._last_published is not None else 'nominal'
        rot, trans = pose_error(T, self._last_published if self._last_published is not None else nominal)

        def no(reason: str) -> TfDecision:
            return TfDecision(False, reason, rot, trans, reference)
        if not t.publish:
            return no('tf.publish is off')
        if fused is None:
            return no('nothing fused yet')
        if conf < t.min_confidence:
            return no(f'confidence {conf:.2f} < tf.min_confidence {t.min_confidence:.2f}')
        if self._joint_T is not None:               # the current estimate is the joint stage's (``_current``)
            # refined by the joint stage: the fused rotation's standard error, the last two joint results'
            # agreement instead of the fused translation's, and a change above the joint stage's accuracy
            if not fused.rot_std_deg <= t.max_rot_std_deg:
                return no(f'rotation standard error {fused.rot_std_deg:.3g} deg above tf.max_rot_std_deg '
                          f'{t.max_rot_std_deg:g}')
            if self._joint_prev is None:
                return no('one joint result so far (tf.joint_agree_* needs two)')
            a_rot, a_trans = pose_error(self._joint_T, self._joint_prev)
            if not (a_rot <= t.joint_agree_deg and a_trans <= t.joint_agree_m):
                return no(f'the last two joint results differ by {a_rot:.3f} deg / {a_trans:.4f} m (above '
                          f'tf.joint_agree_deg {t.joint_agree_deg:g} / tf.joint_agree_m {t.joint_agree_m:g})')
            if rot <= max(t.min_change_deg, t.joint_min_change_deg) and \
                    trans <= max(t.min_change_m, t.joint_min_change_m):
                return no(f'moved only {rot:.3f} deg / {trans:.4f} m from the {reference} extrinsic (joint '
                          f'estimate: tf.joint_min_change_*)')
            return TfDecision(True, '', rot, trans, reference)
        if not (fused.rot_std_deg <= t.max_rot_std_deg and fused.trans_std_m <= t.max_trans_std_m):
            return no(f'standard error {fused.rot_std_deg:.3g} deg / {fused.trans_std_m:.3g} m above '
                      f'tf.max_rot_std_deg {t.max_rot_std_deg:g} / tf.max_trans_std_m {t.max_trans_std_m:g}')
        if rot <= t.min_change_deg and trans <= t.min_change_m:
            return no(f'moved only {rot:.3f} deg / {trans:.4f} m from the {reference} extrinsic')
        return TfDecision(True, '', rot, trans, reference)
