"""Robust fusion of per-frame extrinsic estimates on SE(3), batch and streaming.

Rotation: weighted geodesic L1 median (Weiszfeld iterations on SO(3), robust start), then the
weighted chordal L2 mean (SVD projection of the weighted sum of matrices) over the inliers.
Translation: weighted geometric median (Weiszfeld), then the weighted mean over the inliers.
Outliers: a frame is an inlier when its normalised residual
``sqrt((angle / s_R)^2 + (dist / s_t)^2) <= gate``, with robust scales ``s = 1.4826 * median(residual)``
(floored by ``min_rot_scale_deg`` / ``min_trans_scale_m``); mean and mask are iterated to a fixed point.
Uncertainty: the weighted spread of the inlier residuals, divided by sqrt(effective n) for the
standard error of the fused estimate, so it shrinks as frames accumulate. A component no inlier frame
estimated (``estimated`` masks; e.g. the translation of a rotation-only calibrator, kept at the nominal)
has no spread that measures it: the configured prior variance (``prior_rot_std_deg`` / ``prior_trans_std_m``)
is added to it.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ros_ncal.config_io import SectionConfig

from scipy.spatial.transform import Rotation

from ros_ncal.geometry import make_T, orthonormalize, rotvec_to_matrix
from ros_ncal.geometry.se3 import is_rigid


@dataclass
class FusionConfig(SectionConfig):
    """Parameters of :func:`fuse_extrinsics` and :class:`OnlineExtrinsicFilter` (YAML section ``fusion``)."""

    SECTION: ClassVar[str] = 'fusion'
    CONFIG_NAME: ClassVar[str] = 'fusion config'

    gate: float = 3.0                 # inlier when normalised residual <= gate
    min_rot_scale_deg: float = 0.05   # floors of the robust scales (identical inputs give zero MAD)
    min_trans_scale_m: float = 0.005
    max_iters: int = 20               # inlier-mask / mean fixed-point iterations
    weiszfeld_iters: int = 50
    window: int = 100                 # OnlineExtrinsicFilter: frames kept (bounded memory)
    min_confidence: float = 0.0       # OnlineExtrinsicFilter: frames below are ignored
    # standard error given to components no frame estimated (how well the nominal is known), as the root of
    # the trace of their 3x3 block, the same measure as FusionResult.rot_std_deg / trans_std_m
    prior_rot_std_deg: float = 1.0
    prior_trans_std_m: float = 0.02

    def validate(self) -> None:
        if self.gate <= 0 or self.window < 1:
            raise ValueError(f'fusion config: gate must be > 0 and window >= 1, got {self.gate}, {self.window}')
        if not (self.prior_rot_std_deg > 0 and self.prior_trans_std_m > 0):
            raise ValueError('fusion config: prior_rot_std_deg and prior_trans_std_m must be > 0, got '
                             f'{self.prior_rot_std_deg}, {self.prior_trans_std_m}')


@dataclass
class FusionResult:
    """Fused extrinsic with its uncertainty.

    T: (4, 4) fused transform. inliers: (n,) bool. n_inliers / n_total: counts.
    rot_std_deg / trans_std_m: standard error of the fused estimate (inf with one inlier).
    rot_spread_deg / trans_spread_m: per-frame RMS residual of the inliers (how much frames disagree).
    covariance: (6, 6) of the estimate in the tangent space [rotvec rad (applied on the left), translation m].
    estimated: (6,) bool, the components some inlier frame estimated; the others carry the prior.
    """

    T: np.ndarray
    inliers: np.ndarray
    n_inliers: int
    n_total: int
    rot_std_deg: float
    trans_std_m: float
    rot_spread_deg: float
    trans_spread_m: float
    covariance: np.ndarray
    estimated: np.ndarray = field(default_factory=lambda: np.ones(6, dtype=bool))

    def to_dict(self) -> dict[str, Any]:
        return {'T': self.T.tolist(), 'inliers': self.inliers.tolist(), 'n_inliers': self.n_inliers,
                'n_total': self.n_total, 'rot_std_deg': self.rot_std_deg, 'trans_std_m': self.trans_std_m,
                'rot_spread_deg': self.rot_spread_deg, 'trans_spread_m': self.trans_spread_m,
                'estimated': [bool(x) for x in self.estimated]}


def _chordal_mean(R: np.ndarray, w: np.ndarray) -> np.ndarray:
    return orthonormalize(np.einsum('n,nij->ij', w, R))


def _rot_residuals(R: np.ndarray, R_ref: np.ndarray) -> np.ndarray:
    """(n, 3) rotvecs of R_i R_ref^T (left residual, radians)."""
    if not len(R):
        return np.zeros((0, 3))
    return Rotation.from_matrix(np.einsum('nij,kj->nik', R, R_ref)).as_rotvec()


def _geodesic_median(R: np.ndarray, w: np.ndarray, iters: int) -> np.ndarray:
    """Weighted L1 (geodesic) median on SO(3) by Weiszfeld iterations from the chordal mean."""
    M = _chordal_mean(R, w)
    for _ in range(iters):
        v = _rot_residuals(R, M)
        d = np.maximum(np.linalg.norm(v, axis=1), 1e-9)
        step = (w[:, None] * v / d[:, None]).sum(0) / (w / d).sum()
        M = rotvec_to_matrix(step) @ M
        if np.linalg.norm(step) < 1e-10:
            break
    return M


def _geometric_median(t: np.ndarray, w: np.ndarray, iters: int) -> np.ndarray:
    m = np.average(t, axis=0, weights=w)
    for _ in range(iters):
        d = np.maximum(np.linalg.norm(t - m, axis=1), 1e-9)
        m_new = (w[:, None] * t / d[:, None]).sum(0) / (w / d).sum()
        if np.linalg.norm(m_new - m) < 1e-12:
            return m_new
        m = m_new
    return m


def fuse_extrinsics(Ts: np.ndarray | list, weights: np.ndarray | list | None = None,
                    config: FusionConfig | None = None, estimated: np.ndarray | list | None = None) -> FusionResult:
    """Ts: (n, 4, 4) rigid transforms of one extrinsic; weights: (n,) >= 0 (e.g. confidences) -> FusionResult.

    estimated: (n, 6) or (6,) bool, which components [rx ry rz tx ty tz] each frame estimated
    (``CalibResult.estimated``); None = all. Components no inlier estimated get the prior variance.
    Raises ValueError for an empty input, a non-rigid transform, or weights that are all zero.
    """
    cfg = config or FusionConfig()
    Ts = np.asarray(Ts, dtype=np.float64)
    if Ts.ndim != 3 or Ts.shape[1:] != (4, 4) or len(Ts) == 0:
        raise ValueError(f'fuse_extrinsics: expected (n >= 1, 4, 4) transforms, got shape {Ts.shape}')
    for i, T in enumerate(Ts):
        if not is_rigid(T, atol=1e-4):
            raise ValueError(f'fuse_extrinsics: transform {i} is not rigid')
    n = len(Ts)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f'fuse_extrinsics: weights must be {n} finite non-negative values, not all zero')
    R, t = Ts[:, :3, :3], Ts[:, :3, 3]
    R_ref = _geodesic_median(R, w, cfg.weiszfeld_iters)
    t_ref = _geometric_median(t, w, cfg.weiszfeld_iters)
    inl = w > 0
    for _ in range(cfg.max_iters):
        ang = np.degrees(np.linalg.norm(_rot_residuals(R, R_ref), axis=1))
        dist = np.linalg.norm(t - t_ref, axis=1)
        pos = w > 0
        s_r = max(1.4826 * float(np.median(ang[pos])), cfg.min_rot_scale_deg)
        s_t = max(1.4826 * float(np.median(dist[pos])), cfg.min_trans_scale_m)
        new = pos & (np.hypot(ang / s_r, dist / s_t) <= cfg.gate)
        if not new.any():
            new = pos
        wi = np.where(new, w, 0.0)
        R_ref = _chordal_mean(R, wi / wi.sum())
        t_ref = np.average(t, axis=0, weights=wi)
        if np.array_equal(new, inl):
            break
        inl = new
    wi = np.where(inl, w, 0.0)
    wn = wi / wi.sum()
    xi = np.concatenate([_rot_residuals(R, R_ref), t - t_ref], axis=1)       # (n, 6)
    spread_cov = np.einsum('n,ni,nj->ij', wn, xi, xi)                       # per-frame covariance
    n_eff = 1.0 / float(np.sum(wn ** 2))
    if int(inl.sum()) > 1:
        cov = spread_cov / max(n_eff - 1.0, 1e-9)                           # std error of the mean (unbiased)
    else:
        cov = np.full((6, 6), np.inf)
    est = np.ones((n, 6), dtype=bool) if estimated is None else \
        np.broadcast_to(np.asarray(estimated, dtype=bool), (n, 6))
    est_any = est[inl].any(axis=0)
    if not est_any.all():
        # a component nobody estimated moved only as a consequence of the others (a left rotation turns the
        # translation too): its spread measures nothing about it, so its variance gets the prior added
        prior = np.array([np.radians(cfg.prior_rot_std_deg) ** 2 / 3.0] * 3 + [cfg.prior_trans_std_m ** 2 / 3.0] * 3)
        fixed = ~est_any
        if int(inl.sum()) > 1:
            cov = cov.copy()
        else:                                   # one inlier: the estimated part is unknown, the prior is not
            cov = np.where(fixed[:, None] | fixed[None, :], 0.0, cov)
        cov[fixed, fixed] += prior[fixed]
    rot_spread = float(np.degrees(np.sqrt(np.sum(wn * np.sum(xi[:, :3] ** 2, axis=1)))))
    trans_spread = float(np.sqrt(np.sum(wn * np.sum(xi[:, 3:] ** 2, axis=1))))
    rot_std = float(np.degrees(np.sqrt(np.trace(cov[:3, :3])))) if np.isfinite(cov[:3, :3]).all() else float('inf')
    trans_std = float(np.sqrt(np.trace(cov[3:, 3:]))) if np.isfinite(cov[3:, 3:]).all() else float('inf')
    return FusionResult(make_T(R_ref, t_ref), inl, int(inl.sum()), n, rot_std, trans_std, rot_spread,
                        trans_spread, cov, est_any)


class OnlineExtrinsicFilter:
    """Streaming fusion for the calibrator node: push per-frame estimates, read the fused one.

    Keeps the last ``config.window`` accepted frames (bounded memory) and re-fuses them on demand
    (at most ``window`` 4x4 matrices: cheap). Frames with confidence below ``config.min_confidence``
    or a non-rigid transform are ignored (``push`` returns False).
    """

    def __init__(self, config: FusionConfig | None = None) -> None:
        self.cfg = config or FusionConfig()
        self._T: deque[np.ndarray] = deque(maxlen=self.cfg.window)
        self._w: deque[float] = deque(maxlen=self.cfg.window)
        self._est: deque[np.ndarray] = deque(maxlen=self.cfg.window)
        self._cache: FusionResult | None = None
        self.n_pushed = 0
        self.n_rejected = 0

    def push(self, T: np.ndarray, confidence: float = 1.0, estimated=None) -> bool:
        """Add one estimate; returns True when it was accepted. estimated: (6,) bool components
        [rx ry rz tx ty tz] the frame's calibrator estimated (``CalibResult.estimated``; None = all)."""
        self.n_pushed += 1
        T = np.asarray(T, dtype=np.float64)
        c = float(confidence)
        if T.shape != (4, 4) or not is_rigid(T, atol=1e-4) or not np.isfinite(c) or c < self.cfg.min_confidence \
                or c <= 0.0:
            self.n_rejected += 1
            return False
        self._T.append(T.copy())
        self._w.append(min(c, 1.0))
        self._est.append(np.ones(6, dtype=bool) if estimated is None else np.asarray(estimated, dtype=bool).reshape(6))
        self._cache = None
        return True

    @property
    def count(self) -> int:
        """Frames currently in the window."""
        return len(self._T)

    def estimate(self) -> FusionResult | None:
        """The fused estimate of the window, or None when it is empty."""
        if not self._T:
            return None
        if self._cache is None:
            self._cache = fuse_extrinsics(np.stack(self._T), np.array(self._w), self.cfg, np.stack(self._est))
        return self._cache

    def reset(self) -> None:
        self._T.clear()
        self._w.clear()
        self._est.clear()
        self._cache = None
