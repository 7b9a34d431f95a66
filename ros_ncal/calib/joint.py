"""Joint multi-frame edge alignment: one 6-DoF correction that aligns LiDAR depth edges with image edges
in many frames at once.

On one frame the edge objective barely constrains the translation (a few centimetres of translation
look like a fraction of a degree of rotation), which is why the single-frame classical calibrator
searches rotation only on real data. Summed over frames with different scene depths the coupling
breaks: measured on the 4 held-out KITTI frames (docs/calibration_eval.md), a start 0.4-1 deg /
10-38 cm off the truth converges to about 0.16 deg / 2.7 cm. The levels are a LOCAL refinement: they need
the rotation within about a degree, which the online fusion of the ``nclr/classical`` handover provides.

For gross errors (a nominal metres off) an optional coarse stage runs first (``coarse.enabled``): a
multi-start 6-DoF pattern search from a grid of translation offsets (+-1.6 m every 0.4 m: 729 starts) at
the start's rotation, all starts at once on the strongest points of every frame and a blurred edge map,
then the best ``top_k`` continued on all points and ranked on a sharper map. On the held-out drive frames
(docs/calibration_eval.md) the translation's basin is a few decimetres wide and the objective over all
points ranks the truth's basin above every wrong one found, while few points or one start do not: hence
many starts for finding basins and all points for choosing one. Then the levels refine from the winner, and
again from the winner turned by +-``hop_deg`` about each axis (6 hops): the coarse winner can sit next to the
truth with its rotation a degree or so off, where the local levels stop in a nearby optimum scoring 10-20 %
lower; a hop that ends ``hop_min_gain`` higher replaces the result.

Objective: ``J(L) = mean_i J_i(L @ T_i)`` with ``J_i`` the classical calibrator's objective of frame i
(its edge map and discontinuity points, ros_ncal.calib.classical) and ``L`` a correction applied in the
camera frame to every frame's extrinsic ``T_i``. Frames of one recording share one nominal, so ``L``
is one correction of that extrinsic; for frames whose nominals differ slightly (KITTI calibration
days) it is the usual small-angle approximation. Optimiser: the same randomised pattern search as the
classical calibrator, coarse to fine over edge-map decays, inside a trust region.
"""
from __future__ import annotations

import dataclasses
import functools
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


@dataclass
class CoarseStage:
    """The optional global stage (module docstring); off by default: a local start needs none of it."""

    enabled: bool = False
    grid_range_m: float = 1.6          # starts: translation offsets on a grid of +-range per camera axis
    grid_step_m: float = 0.4           # (the start itself is one of them)
    box_rot_deg: float = 8.0           # no candidate leaves this box around the start, per rotation-vector axis
    box_trans_m: float = 2.0           # and per translation axis
    fov_margin_px: float = 400.0       # discontinuity points kept this far outside the image at the start
    points_per_frame: int = 800        # phase 1 (every start): the strongest points of each frame
    decay: float = 0.98                # phase 1 edge-map decay (wide basins)
    iters: int = 25
    rot_step_deg: float = 1.0          # initial steps of every start's pattern search
    trans_step_m: float = 0.1
    min_trans_step_m: float = 0.01     # a start stops when its translation steps fell below this
    top_k: int = 64                    # phase 2: the best starts, continued on all points
    rank_decay: float = 0.95           # phase 2 edge-map decay (the ranking)
    rank_iters: int = 40
    random_directions: int = 12        # per start and iteration, besides the 12 axis moves
    hop_deg: float = 1.0               # then the local levels again from the result turned by +-this about each
                                       # camera axis (0 = no hops);
    hop_min_gain: float = 0.02         # a hop replaces it when it ends this much higher (relative): a nearby
                                       # local optimum scored 10-20 % lower on the drive, the truth's basin's
                                       # own results differ by < 1 % (docs/calibration_eval.md)

    def validate(self, where: str) -> None:
        if (self.grid_range_m < 0 or self.grid_step_m <= 0 or self.box_rot_deg <= 0 or self.box_trans_m <= 0
                or self.min_trans_step_m <= 0
                or self.points_per_frame < 10 or self.top_k < 1 or self.iters < 1 or self.rank_iters < 1
                or self.hop_deg < 0 or self.hop_min_gain < 0
                or not 0.0 < self.decay < 1.0 or not 0.0 < self.rank_decay < 1.0):
            raise ValueError(f'{where}: bad coarse stage {self}')


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
    coarse: CoarseStage = field(default_factory=CoarseStage)
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
        self.coarse.validate('joint edge alignment config')


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
        if cfg.coarse.enabled:
            frames, skipped = self._frames(samples, Ts, use, self.coarse_edges)
            if len(frames) < cfg.min_frames:
                return self._too_few(frames, skipped, Ts, t0)
            L0, coarse_msg = self._coarse(frames)
            hops = self._hops()
        else:
            L0, coarse_msg, hops = np.eye(4), '', np.zeros((0, 6))

        def local_from(start: np.ndarray):
            """The local levels from ``start`` (4, 4): (L, objective at the start, at the end, frames, skipped), or
            None when too few frames are in view there."""
            local_frames, skipped = self._frames(samples, [start @ T for T in Ts], use, self.edges)
            if len(local_frames) < cfg.min_frames:
                return None, (local_frames, skipped)
            delta, J_init, cur = self._local(local_frames)
            return (_left(delta) @ start, J_init, cur, len(local_frames), skipped), None
        best, too_few = local_from(L0)
        if best is None:
            return self._too_few(*too_few, Ts, t0)
        L, J_init, cur, n_used, skipped = best
        n_hops = 0
        for jump in hops:                       # escape a local optimum next to the coarse stage's winner
            hop, _ = local_from(_left(jump) @ L)
            if hop is not None and hop[2] > cur * (1.0 + cfg.coarse.hop_min_gain):
                L, cur, n_hops = hop[0], hop[2], n_hops + 1
        if len(hops):
            coarse_msg += f'{len(hops)} hops ({n_hops} kept), '
        improved = cur > J_init + cfg.min_improvement or not np.allclose(L0, np.eye(4))
        rot, trans = pose_error(L, np.eye(4))
        msg = (f'joint edge alignment over {n_used} frames: {coarse_msg}objective {J_init:.4f} -> {cur:.4f}, '
               f'correction {rot:.2f} deg / {100 * trans:.1f} cm')
        return JointResult(L, [L @ T for T in Ts], float(J_init), float(cur), n_used, skipped, bool(improved),
                           msg if improved else msg + ' (no improvement)', time.perf_counter() - t0)

    def _hops(self) -> np.ndarray:
        """(6, 6) the coarse stage's hops, deltas turning by +-``hop_deg`` about each axis; (0, 6) when off."""
        if self.cfg.coarse.hop_deg <= 0:
            return np.zeros((0, 6))
        turns = np.radians(self.cfg.coarse.hop_deg) * np.concatenate([np.eye(3), -np.eye(3)])
        return np.concatenate([turns, np.zeros((6, 3))], axis=1)

    @functools.cached_property
    def coarse_edges(self) -> EdgeAlignmentCalibrator:
        """The edge extraction of the coarse stage: the classical settings with a wider field-of-view margin
        (points far outside the image at a gross start may belong inside it)."""
        margin = max(self.edges.cfg.fov_margin_px, self.cfg.coarse.fov_margin_px)
        return EdgeAlignmentCalibrator(dataclasses.replace(self.edges.cfg, fov_margin_px=margin))

    def _frames(self, samples: list[Sample], Ts: list[np.ndarray], use: list[int],
                edges: EdgeAlignmentCalibrator) -> tuple[list, dict[int, str]]:
        """[(EdgeFrame, P (M, 3) camera frame at Ts[i], weights (M,)), strongest first], {skipped: reason}."""
        frames, skipped = [], {}
        for i in use:
            try:
                fr = edges.edge_frame(samples[i], Ts[i])
            except EdgeFrameError as exc:
                skipped[i] = str(exc)
                continue
            P = fr.points @ Ts[i][:3, :3].T + Ts[i][:3, 3]            # camera frame at the start
            order = np.argsort(-fr.weights)[:self.cfg.max_points_per_frame]
            frames.append((fr, P[order], fr.weights[order]))
        return frames, skipped

    def _too_few(self, frames: list, skipped: dict[int, str], Ts: list[np.ndarray], t0: float) -> JointResult:
        return JointResult(np.eye(4), Ts, float('nan'), float('nan'), len(frames), skipped, False,
                           f'joint: {len(frames)} usable frames (< {self.cfg.min_frames})', time.perf_counter() - t0)

    def _objective(self, frames: list, decay: float, points: int | None = None):
        """J(deltas (B, 6)) -> (B,): the mean over frames of the edge objective at one decay, on each
        frame's ``points`` strongest discontinuity points (all when None)."""
        objs = [(_Objective(self.edges._edge_map(fr.E, decay), fr.K, w[:points]), P[:points]) for fr, P, w in frames]

        def J(cands: np.ndarray) -> np.ndarray:
            return np.mean([o(P, cands) for o, P in objs], axis=0)
        return J

    def _local(self, frames: list) -> tuple[np.ndarray, float, float]:
        """The coarse-to-fine levels from the start: (delta (6,), objective at the start, at the end)."""
        cfg = self.cfg
        rng = np.random.default_rng(cfg.seed)
        mask = np.array([float(cfg.search_rotation)] * 3 + [1.0] * 3)
        delta = np.zeros(6)
        J_init = None
        for lv in cfg.levels:
            J = self._objective(frames, lv.decay)
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
        return delta, float(J_init), cur

    def _coarse(self, frames: list) -> tuple[np.ndarray, str]:
        """The coarse stage (module docstring): (correction L0 (4, 4), message). Phase 1 runs every start on the
        strongest ``points_per_frame`` points at ``decay``; phase 2 continues the best ``top_k`` on all points at
        ``rank_decay`` and takes the best; L0 is the identity unless it beats the start there."""
        c = self.cfg.coarse
        rng = np.random.default_rng(self.cfg.seed)
        g = np.arange(-c.grid_range_m, c.grid_range_m + 1e-9, c.grid_step_m)
        g = np.unique(np.round(np.concatenate([g, -g, [0.0]]), 9))    # symmetric, with the start itself
        offsets = np.stack(np.meshgrid(g, g, g, indexing='ij'), -1).reshape(-1, 3)
        X = np.concatenate([np.zeros((len(offsets), 3)), offsets], 1)
        n_starts = len(X)
        steps0 = np.array([np.radians(c.rot_step_deg)] * 3 + [c.trans_step_m] * 3)
        J1 = self._objective(frames, c.decay, c.points_per_frame)
        X, v = self._multistart(J1, X, steps0, c.iters, rng)
        top = np.argsort(-v)[:c.top_k]
        J2 = self._objective(frames, c.rank_decay)
        X, v = self._multistart(J2, X[top], steps0 * 0.5, c.rank_iters, rng)
        b = int(np.argmax(v))
        J_start = float(J2(np.zeros((1, 6)))[0])
        if v[b] <= J_start + self.cfg.min_improvement:
            return np.eye(4), f'coarse search ({n_starts} starts) kept the start, '
        L0 = _left(X[b])
        rot, trans = pose_error(L0, np.eye(4))
        return L0, (f'coarse search ({n_starts} starts) moved {rot:.2f} deg / {100 * trans:.1f} cm '
                    f'(objective {J_start:.4f} -> {v[b]:.4f}), then ')

    def _multistart(self, J, X: np.ndarray, steps0: np.ndarray, iters: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Pattern search of every row of X (S, 6) at once, each with its own steps (halved on failure), inside
        the coarse box around the start: (X, J(X)) at the end."""
        c = self.cfg.coarse
        S = len(X)
        X = X.copy()
        cur = J(X)
        steps = np.tile(steps0, (S, 1))
        axes = np.concatenate([np.eye(6), -np.eye(6)])
        box = np.array([np.radians(c.box_rot_deg)] * 3 + [c.box_trans_m] * 3)
        for _ in range(iters):
            rnd = rng.normal(size=(S, c.random_directions, 6))
            rnd /= np.linalg.norm(rnd, axis=2, keepdims=True)
            D = np.concatenate([np.broadcast_to(axes, (S, 12, 6)), rnd], 1)           # (S, n, 6)
            C = np.clip(X[:, None] + D * steps[:, None], -box, box)
            vals = J(C.reshape(-1, 6)).reshape(S, -1)
            b = vals.argmax(1)
            vb = vals[np.arange(S), b]
            up = vb > cur + self.cfg.min_improvement
            X[up], cur[up] = C[up, b[up]], vb[up]
            steps[~up] *= 0.5
            if np.all(steps[:, 3:] < c.min_trans_step_m):
                break
        return X, cur

    def _inside_trust(self, delta: np.ndarray) -> bool:
        rot, trans = pose_error(_left(delta), np.eye(4))
        return rot <= self.cfg.trust_rot_deg and trans <= self.cfg.trust_trans_m

    def _inside_trust_batch(self, deltas: np.ndarray) -> np.ndarray:
        """deltas: (B, 6) -> (B,) bool, :meth:`_inside_trust` of each (the angle of exp([w]) is |w| for
        |w| <= pi, the search's steps are degrees), without a Python loop."""
        rot = np.degrees(np.linalg.norm(deltas[:, :3], axis=1))
        return (rot <= self.cfg.trust_rot_deg) & (np.linalg.norm(deltas[:, 3:], axis=1) <= self.cfg.trust_trans_m)
