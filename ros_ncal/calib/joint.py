"""Joint multi-frame edge alignment: one 6-DoF correction that aligns LiDAR depth edges with image edges
in many frames at once.

On one frame the edge objective barely constrains the translation (a few centimetres of translation
look like a fraction of a degree of rotation), which is why the single-frame classical calibrator
searches rotation only on real data. Summed over frames with different scene depths the coupling
breaks: measured on the 4 held-out KITTI frames (docs/calibration_eval.md), a start 0.4-1 deg /
10-38 cm off the truth converges to about 0.16 deg / 2.7 cm. It is a LOCAL refinement: it needs the
rotation within about a degree, which the online fusion of the ``nclr/classical`` handover provides.

Objective: ``J(L) = mean_i J_i(L @ T_i)`` with ``J_i`` the classical calibrator's objective of frame i
(its edge map and discontinuity points, ros_ncal.calib.classical) and ``L`` a correction applied in the
camera frame to every frame's extrinsic ``T_i``. Frames of one recording share one nominal, so ``L``
is one correction of that extrinsic; for frames whose nominals differ slightly (KITTI calibration
days) it is the usual small-angle approximation. Optimiser: the same randomised pattern search as the
classical calibrator, coarse to fine over edge-map decays, inside a trust region.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ros_ncal.config_io import SectionConfig, dataclass_list
from ros_ncal.data.sample import Sample
from ros_ncal.geometry import pose_error

from .classical import (ClassicalCalibConfig, EdgeAlignmentCalibrator, EdgeFrameError, _delta_transforms,
                        _Objective)


@dataclass
class JointLevel:
    """One coarse-to-fine level: edge-map decay and initial / final pattern-search steps."""

    decay: float = 0.95
    rot_step_deg: float = 0.1
    trans_step_m: float = 0.05
    min_rot_step_deg: float = 0.005
    min_trans_step_m: float = 0.002
    max_iters: int = 120


def _default_levels() -> list[JointLevel]:
    return [JointLevel(0.95, 0.1, 0.05, 0.005, 0.002, 120), JointLevel(0.90, 0.05, 0.02, 0.005, 0.001, 80)]


@dataclass
class JointEdgeConfig(SectionConfig):
    """YAML section ``joint`` (config/calib_eval.yaml); edge extraction follows the ``classical`` section."""

    SECTION: ClassVar[str] = 'joint'
    CONFIG_NAME: ClassVar[str] = 'joint edge alignment config'

    max_frames: int = 20               # frames used (evenly spaced over the recording)
    min_frames: int = 4                # fewer usable frames: no joint refinement (3 frames were not enough once)
    max_points_per_frame: int = 3000   # strongest discontinuity points per frame
    search_rotation: bool = True
    levels: list[JointLevel] = field(default_factory=_default_levels)
    random_directions: int = 24
    trust_rot_deg: float = 3.0         # the result stays within these of the start
    trust_trans_m: float = 0.6
    min_improvement: float = 1.0e-7
    seed: int = 0

    @classmethod
    def _prepare(cls, d: dict) -> dict:
        if 'levels' in d:
            d['levels'] = dataclass_list(JointLevel, d['levels'], f'{cls.CONFIG_NAME}: levels')
        return d

    def validate(self) -> None:
        if not self.levels:
            raise ValueError('joint edge alignment config: levels must not be empty')
        if self.min_frames < 1 or self.max_frames < self.min_frames or self.max_points_per_frame < 10:
            raise ValueError('joint edge alignment config: need 1 <= min_frames <= max_frames and '
                             'max_points_per_frame >= 10')
        for lv in self.levels:
            if not 0.0 < lv.decay < 1.0 or lv.rot_step_deg <= 0 or lv.trans_step_m <= 0 or lv.max_iters < 1:
                raise ValueError(f'joint edge alignment config: bad level {lv}')


@dataclass
class JointResult:
    """correction: (4, 4) applied on the left (camera frame) of every frame's extrinsic; extrinsics: the
    refined (4, 4) per frame; objective_init / objective: mean edge objective before / after; frames_used;
    skipped: {frame index: reason}; success: enough frames and the objective improved."""

    correction: np.ndarray
    extrinsics: list[np.ndarray]
    objective_init: float
    objective: float
    frames_used: int
    skipped: dict[int, str]
    success: bool
    message: str
    runtime_s: float

    def to_dict(self) -> dict[str, Any]:
        rot, trans = pose_error(self.correction, np.eye(4))
        return {'correction_deg': rot, 'correction_cm': 100.0 * trans, 'objective_init': self.objective_init,
                'objective': self.objective, 'frames_used': self.frames_used,
                'skipped': {str(k): v for k, v in self.skipped.items()}, 'success': self.success,
                'message': self.message, 'runtime_s': self.runtime_s}


def _left(delta: np.ndarray) -> np.ndarray:
    R, t = _delta_transforms(delta[None])
    L = np.eye(4)
    L[:3, :3], L[:3, 3] = R[0], t[0]
    return L


class JointEdgeRefiner:
    """``refine(samples, extrinsics) -> JointResult`` (module docstring)."""

    def __init__(self, config: JointEdgeConfig | None = None, classical: ClassicalCalibConfig | None = None) -> None:
        self.cfg = config or JointEdgeConfig()
        self.edges = EdgeAlignmentCalibrator(classical or ClassicalCalibConfig())

    @classmethod
    def from_yaml(cls, path: str | None) -> 'JointEdgeRefiner':
        """Settings from the ``joint`` section and edge extraction from the ``classical`` section of a
        calibration YAML (config/calib_eval.yaml); None = the library defaults."""
        if not path:
            return cls()
        return cls(JointEdgeConfig.from_yaml(path), ClassicalCalibConfig.from_yaml(path))

    @staticmethod
    def pick(n: int, max_frames: int) -> list[int]:
        """Indices of at most ``max_frames`` frames evenly spaced over ``n``."""
        if n <= max_frames:
            return list(range(n))
        return sorted({int(round(x)) for x in np.linspace(0, n - 1, max_frames)})

    def refine(self, samples: list[Sample], extrinsics: list[np.ndarray]) -> JointResult:
        """samples: frames of one rig; extrinsics: (4, 4) T_cam_lidar per frame to start from (e.g. the fused
        estimate applied to each frame's nominal). Never raises for bad frames: they are skipped and named."""
        cfg = self.cfg
        t0 = time.perf_counter()
        if len(samples) != len(extrinsics):
            raise ValueError(f'refine: {len(samples)} samples but {len(extrinsics)} extrinsics')
        Ts = [np.asarray(T, dtype=np.float64) for T in extrinsics]
        use = self.pick(len(samples), cfg.max_frames)
        frames, skipped = [], {}
        for i in use:
            try:
                fr = self.edges.edge_frame(samples[i], Ts[i])
            except EdgeFrameError as exc:
                skipped[i] = str(exc)
                continue
            P = fr.points @ Ts[i][:3, :3].T + Ts[i][:3, 3]            # camera frame at the start
            order = np.argsort(-fr.weights)[:cfg.max_points_per_frame]
            frames.append((fr, P[order], fr.weights[order]))
        if len(frames) < cfg.min_frames:
            return JointResult(np.eye(4), Ts, float('nan'), float('nan'), len(frames), skipped, False,
                               f'joint: {len(frames)} usable frames (< {cfg.min_frames})', time.perf_counter() - t0)
        rng = np.random.default_rng(cfg.seed)
        mask = np.array([float(cfg.search_rotation)] * 3 + [1.0] * 3)
        delta = np.zeros(6)
        J_init = None
        for lv in cfg.levels:
            objs = [(_Objective(self.edges._edge_map(fr.E, lv.decay), fr.K, w), P) for fr, P, w in frames]

            def J(cands: np.ndarray) -> np.ndarray:
                return np.mean([o(P, cands) for o, P in objs], axis=0)
            cur = float(J(delta[None])[0])
            if J_init is None:
                J_init = cur
            steps = np.array([np.radians(lv.rot_step_deg)] * 3 + [lv.trans_step_m] * 3)
            min_steps = np.array([np.radians(lv.min_rot_step_deg)] * 3 + [lv.min_trans_step_m] * 3)
            for _ in range(lv.max_iters):
                if not np.any((steps > min_steps) & (mask > 0)):
                    break
                rand = rng.normal(size=(cfg.random_directions, 6))
                rand /= np.linalg.norm(rand, axis=1, keepdims=True)
                cands = delta + np.concatenate([np.eye(6), -np.eye(6), rand]) * mask * steps
                ok = self._inside_trust_batch(cands)
                scores = np.where(ok, J(cands), -np.inf)
                b = int(np.argmax(scores))
                if scores[b] > cur + cfg.min_improvement:
                    delta, cur = cands[b], float(scores[b])
                else:
                    steps = steps * 0.5
        L = _left(delta)
        improved = cur > J_init + cfg.min_improvement
        rot, trans = pose_error(L, np.eye(4))
        msg = (f'joint edge alignment over {len(frames)} frames: objective {J_init:.4f} -> {cur:.4f}, correction '
               f'{rot:.2f} deg / {100 * trans:.1f} cm')
        return JointResult(L, [L @ T for T in Ts], float(J_init), float(cur), len(frames), skipped, bool(improved),
                           msg if improved else msg + ' (no improvement)', time.perf_counter() - t0)

    def _inside_trust(self, delta: np.ndarray) -> bool:
        rot, trans = pose_error(_left(delta), np.eye(4))
        return rot <= self.cfg.trust_rot_deg and trans <= self.cfg.trust_trans_m

    def _inside_trust_batch(self, deltas: np.ndarray) -> np.ndarray:
        """deltas: (B, 6) -> (B,) bool, :meth:`_inside_trust` of each (the angle of exp([w]) is |w| for
        |w| <= pi, the search's steps are degrees), without a Python loop."""
        rot = np.degrees(np.linalg.norm(deltas[:, :3], axis=1))
        return (rot <= self.cfg.trust_rot_deg) & (np.linalg.norm(deltas[:, 3:], axis=1) <= self.cfg.trust_trans_m)
