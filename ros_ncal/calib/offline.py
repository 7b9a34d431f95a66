"""Offline calibration of a recording: one extrinsic from many frames, as the calibrator node does online.

``calibrate_sequence(samples, calibrator)`` visits the frames in order (``passes`` times) and drives the
same online core as the calibrator node (:class:`ros_ncal.calib.online.OnlineCalibration`) in its offline
form: each frame's calibrator starts from the current fused estimate (or from the nominal with
``init_from='nominal'``); every successful per-frame estimate enters the robust SE(3) fusion as
the correction ``C_i = inv(T_nominal_i) @ T_est_i`` in the LiDAR frame, so frames whose nominal
extrinsics differ still agree on one correction. The result is the fused correction, the calibrated
extrinsic ``T_nominal_ref @ C`` of the first frame's nominal, its standard errors and the record of
every frame. With a :class:`ros_ncal.calib.joint.JointEdgeRefiner` the fused estimate is then refined
by joint multi-frame edge alignment (one 6-DoF correction over up to ``max_frames`` frames: the stage
that recovers the translation on real data). Used by ``ncal calibrate`` and by the evaluation's online
sequence protocol.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from ros_ncal.config_io import to_jsonable
from ros_ncal.data.sample import Sample
from ros_ncal.geometry import invert, matrix_to_quat, pose_error

from .fusion import FusionConfig, FusionResult
from .online import OnlineCalibration, OnlineConfig
from .result import CalibResult


@dataclass
class FrameRecord:
    """One frame of a sequence: what the calibrator said and the fused correction after it."""

    index: int
    frame_id: str
    success: bool
    accepted: bool              # entered the fusion
    confidence: float
    message: str
    runtime_s: float
    correction_after: np.ndarray  # (4, 4) fused correction after this frame (identity while none)

    def to_dict(self) -> dict[str, Any]:
        rot, trans = pose_error(self.correction_after, np.eye(4))
        return {'index': self.index, 'frame_id': self.frame_id, 'success': self.success, 'accepted': self.accepted,
                'confidence': self.confidence, 'message': self.message, 'runtime_s': self.runtime_s,
                'fused_correction_deg': rot, 'fused_correction_cm': 100.0 * trans}


@dataclass
class SequenceCalibration:
    """Result of :func:`calibrate_sequence`.

    correction: (4, 4) fused correction (LiDAR frame, right-multiplied onto a nominal); identity when no
    frame was accepted. T_nominal: (4, 4) the first frame's nominal; T_cam_lidar: (4, 4) its calibrated
    extrinsic ``T_nominal @ correction``. fusion: the last FusionResult (standard errors, inliers) or None.
    """

    correction: np.ndarray
    T_nominal: np.ndarray
    T_cam_lidar: np.ndarray
    fusion: FusionResult | None
    frames: list[FrameRecord] = field(default_factory=list)
    passes: int = 1
    nominals_differ: bool = False   # the frames' nominal extrinsics were not all the same
    fused_correction: np.ndarray | None = None   # the fusion's correction before the joint refinement
    joint: Any = None               # JointResult of the joint refinement, when one ran

    @property
    def accepted(self) -> int:
        return sum(f.accepted for f in self.frames)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the calibrated extrinsic (matrix, xyz + quaternion), change from the nominal, uncertainty."""
        rot, trans = pose_error(self.T_cam_lidar, self.T_nominal)
        f = self.fusion
        return {'T_cam_lidar': self.T_cam_lidar.tolist(), 'xyz': self.T_cam_lidar[:3, 3].tolist(),
                'quat_xyzw': matrix_to_quat(self.T_cam_lidar[:3, :3]).tolist(),
                'T_cam_lidar_nominal': self.T_nominal.tolist(),
                'change_from_nominal': {'rot_deg': rot, 'trans_cm': 100.0 * trans},
                'frames': len(self.frames), 'frames_accepted': self.accepted, 'passes': self.passes,
                'fused_inliers': f.n_inliers if f is not None else 0,
                'rot_std_deg': to_jsonable(f.rot_std_deg) if f is not None else None,
                'trans_std_cm': to_jsonable(100.0 * f.trans_std_m) if f is not None else None,
                'rot_spread_deg': f.rot_spread_deg if f is not None else None,
                'trans_spread_cm': 100.0 * f.trans_spread_m if f is not None else None,
                'covariance': f.covariance.tolist() if f is not None and np.isfinite(f.covariance).all() else None,
                'nominals_differ': self.nominals_differ,
                'joint': self.joint.to_dict() if self.joint is not None else None}


def apply_joint(C: np.ndarray, T_ref: np.ndarray, joint_res) -> np.ndarray:
    """C (4, 4) a fused LiDAR-frame correction of the reference nominal T_ref (4, 4); joint_res a JointResult
    from extrinsics ``nominal_i @ C``: the correction with the joint stage's applied when it succeeded (its L
    acts in the camera frame of T_ref, hence the change of frame), else C."""
    return invert(T_ref) @ joint_res.correction @ T_ref @ C if joint_res.success else C


def calibrate_sequence(samples: Iterable[Sample], calibrator, passes: int = 1, fusion: FusionConfig | None = None,
                       init_from: str = 'fused', frame_ids: Iterable[str] | None = None,
                       on_frame: Callable[[FrameRecord], None] | None = None, joint=None) -> SequenceCalibration:
    """Calibrate one extrinsic from ``samples`` (module docstring).

    samples: Samples whose ``T_cam_lidar`` is the nominal extrinsic (an iterable; materialised when
    ``passes`` > 1). calibrator: any ``estimate(sample, T_init) -> CalibResult``; one that raises counts
    as a failed frame. on_frame: called after every frame (progress bars, logs). joint: a JointEdgeRefiner
    run after the fusion from the fused estimate; its correction is kept only when it improved the joint
    objective (``result.joint`` says what it did).
    """
    if passes < 1:
        raise ValueError(f'calibrate_sequence: passes must be >= 1, got {passes}')
    if init_from not in ('fused', 'nominal'):
        raise ValueError(f"calibrate_sequence: init_from must be 'fused' or 'nominal', got {init_from!r}")
    seq = list(samples) if passes > 1 or joint is not None else samples
    ids = list(frame_ids) if frame_ids is not None else None
    # the online core in its offline form: corrections relative to each frame's nominal, every successful
    # frame fused (confidence floored, never dropped), no scheduled joint stage (one run at the end, below)
    online = OnlineCalibration(OnlineConfig(init_from=init_from, relative_to_nominal=True, confidence_floor=1e-3),
                               fusion=fusion or FusionConfig())
    C, frames = np.eye(4), []
    T_ref, differ, k = None, False, 0
    for _ in range(passes):
        for i, s in enumerate(seq):
            T_nominal = np.asarray(s.T_cam_lidar, dtype=np.float64)
            if T_ref is None:
                T_ref = T_nominal.copy()
            elif not differ and not np.allclose(T_nominal, T_ref, atol=1e-9):
                differ = True
            T_start = online.initial_guess(T_nominal)
            t0 = time.perf_counter()
            try:
                res = calibrator.estimate(s, np.array(T_start, dtype=np.float64, copy=True))
            except Exception as exc:  # noqa: BLE001 - a raising calibrator is one failed frame
                res = CalibResult.failure(T_start, f'raised {type(exc).__name__}: {exc}')
            dt = time.perf_counter() - t0
            out = online.process_frame(s, res, T_nominal)
            if out.fused is not None:
                C = out.fused.T
            rec = FrameRecord(k, ids[i] if ids is not None and i < len(ids) else str(i), bool(res.success),
                              out.accepted, float(res.confidence), res.message, dt, C.copy())
            frames.append(rec)
            k += 1
            if on_frame is not None:
                on_frame(rec)
    fused = online.fused
    if T_ref is None:
        raise ValueError('calibrate_sequence: no samples')
    C_fused, joint_res = C.copy(), None
    if joint is not None:
        joint_res = joint.refine(seq, [np.asarray(s.T_cam_lidar, dtype=np.float64) @ C for s in seq])
        C = apply_joint(C, T_ref, joint_res)
    return SequenceCalibration(C, T_ref, T_ref @ C, fused, frames, passes, differ, C_fused, joint_res)
