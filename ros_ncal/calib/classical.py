"""Classical targetless calibration: LiDAR depth discontinuities aligned with image edges.

After Levinson & Thrun, "Automatic Online Calibration of Cameras and Lasers" (RSS 2013):

* LiDAR side: per-point discontinuity weight ``X_i = min(max(r_{i-1} - r_i, r_{i+1} - r_i, 0), cap) ** gamma``
  from range jumps between azimuth neighbours of one scan line (the near side of an occlusion
  boundary gets the weight), only at clean step edges (the near surface continues on the other
  side), plus intensity jumps.
* Image side: horizontal gradient of the grey image (the counterpart of jumps between azimuth
  neighbours), normalised, then an inverse distance transform
  ``D = alpha E + (1 - alpha) max_{q} E_q decay ** chebyshev(p, q)`` so the objective is smooth
  around edges, then a high-pass (minus a Gaussian local mean) so textured regions earn nothing by
  themselves.
* Objective: ``J(T) = sum_i X_i D(project(T p_i)) / sum_i X_i`` (bilinear look-up; points outside the
  image contribute 0).
* Optimiser: randomised pattern search on a correction ``T = [R(w) | tau] @ T_cur`` applied in the
  camera frame (rotation about the camera centre), coarse to fine over the levels of the config,
  shrinking the steps when no candidate improves, inside a trust region around ``T_init``. The
  default levels search rotation only (translation is weakly observable from one frame).
* Confidence: fraction of random rotation probes (within ``probe_ball_deg``) scoring lower than the
  estimate, times the peak prominence mapped to [0, 1]; Levinson's grid criterion is reported in
  ``extras['levinson_fraction']`` when ``levinson_fraction`` is set (None otherwise).
* Cost (``implementation: fast``, the default): the per-frame work that does not depend on the extrinsic
  (image edges, LiDAR discontinuities, the edge map of each level) is cached for the last frames, so the
  handover's second run on a frame only searches; the square maximum filters of the inverse distance
  transform are built incrementally, the high-pass is an FFT convolution, and the objective projects all
  candidates of an iteration in one float32 batch with a bilinear ``grid_sample``. The estimate equals
  the original code path (``implementation: reference``) within float32 rounding (test_classical_calib).

It is a LOCAL method: on KITTI it converges from rotation errors up to about 2 deg, not from the
wide pretext perturbations (docs/calibration_eval.md). Bad input (no points in the image, a black or
saturated image) gives ``success=False``, confidence 0 and ``T_init`` back; ``estimate`` never raises.
"""
from __future__ import annotations

import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy import fft as _fft
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ros_ncal.config_io import SectionConfig, dataclass_list
from ros_ncal.data.sample import Sample
from ros_ncal.geometry import pose_error, scale_intrinsics

from .result import CalibResult


@dataclass
class SearchLevel:
    """One coarse-to-fine level: edge-map decay and the pattern-search step schedule."""

    decay: float = 0.95             # inverse-distance-transform decay per pixel (closer to 1 = wider basin)
    rot_step_deg: float = 1.0       # initial rotation step
    trans_step_m: float = 0.1       # initial translation step
    min_rot_step_deg: float = 0.05  # level ends when both steps are below these
    min_trans_step_m: float = 0.005
    max_iters: int = 60
    search_rotation: bool = True
    search_translation: bool = True
    grid_range_deg: float = 0.0       # > 0: first an exhaustive rotation grid of +-range, spacing rot_step_deg
    local_mean_sigma_px: float | None = None  # per-level override of the config's high-pass sigma


def _default_levels() -> list[SearchLevel]:
    # Rotation only: on single KITTI frames a free translation search drifts by decimetres to
    # spurious optima (translation is weakly observable from one frame); see docs/calibration_eval.md.
    return [SearchLevel(0.95, 0.5, 0.05, 0.05, 0.005, 60, True, False),
            SearchLevel(0.90, 0.1, 0.02, 0.01, 0.002, 60, True, False)]


@dataclass
class ClassicalCalibConfig(SectionConfig):
    """Parameters of :class:`EdgeAlignmentCalibrator` (YAML section ``classical`` of config/calib_eval.yaml)."""

    SECTION: ClassVar[str] = 'classical'
    CONFIG_NAME: ClassVar[str] = 'classical calibration config'

    # LiDAR discontinuities
    min_range_m: float = 1.0               # ignore returns closer than this (vehicle body, noise)
    min_jump_m: float = 1.0                # a range jump below this is not a discontinuity
    max_jump_m: float = 10.0               # cap, so far background does not dominate
    jump_gamma: float = 0.5                # Levinson's exponent on the jump
    step_edge_min_run: int = 2             # the near surface must continue this many points on the other side
                                           # (rejects the isolated range spikes of foliage); 0 = Levinson's plain jump
    smooth_tol_m: float = 0.15             # 'same surface': |range difference| <= max(tol_m, tol_rel * range)
    smooth_tol_rel: float = 0.02
    intensity_weight: float = 1.0          # weight of |intensity jump| (intensity scaled to [0, 1]) added to X
    min_intensity_jump: float = 0.2
    neighbour_max_az_gap_deg: float = 1.0  # azimuth neighbours farther apart than this are not neighbours
    neighbour_max_el_gap_deg: float = 0.3
    scan_order_min_fraction: float = 0.8   # below: the cloud is not stored in scan order
    unordered: str = 'neighbours'          # clouds not in scan order: 'neighbours' (angular neighbours seen from the
                                           # camera, any cloud) or 'rings' (rebuild rings from elevation bins)
    elevation_bin_deg: float = 0.2         # 'rings': ring bins
    neighbour_count: int = 8               # 'neighbours': nearest angular neighbours looked at per point ...
    neighbour_radius: float = 3.0          # ... within this many times the cloud's median neighbour angle
    occlusion_max_angle_deg: float = 3.0   # 'neighbours': a step counts only when the segment to the far point is
                                           # within this angle of the viewing ray (ground at grazing view is not)
    max_edge_points: int = 2500            # strongest discontinuities kept (speed)
    fov_margin_px: float = 80.0            # keep points projecting this far outside the image (they may move in)
    min_edge_points: int = 100             # fewer in view -> failure
    # image edges
    image_scale: float = 1.0               # edge map resolution relative to the image (speed)
    edge_gradient: str = 'horizontal'      # 'horizontal': |d/du| only, the image counterpart of range jumps
                                           # between azimuth neighbours; 'magnitude': full gradient norm
    grad_sigma_px: float = 1.0             # Gaussian pre-smoothing before the Sobel gradient
    edge_norm_percentile: float = 99.0     # gradient magnitude / this percentile, clipped to 1
    min_edge_contrast: float = 4.0         # that percentile in grey levels (0..255) below this -> failure
    idt_alpha: float = 1.0 / 3.0           # weight of the raw edge in the inverse distance transform
    center_edge_map: bool = True           # subtract the map's mean: a point landing anywhere scores 0 on average,
                                           # so pulling more points into the image is not rewarded by itself
    local_mean_sigma_px: float = 20.0      # > 0: subtract a Gaussian local mean of this sigma instead
    idt_radii: int = 12                    # geometric set of Chebyshev radii approximating the transform
    # search
    levels: list[SearchLevel] = field(default_factory=_default_levels)
    random_directions: int = 48            # random 6-D directions per iteration (plus the 12 axis moves)
    min_improvement: float = 1e-6
    seed: int = 0
    trust_rot_deg: float = 12.0            # the search never moves farther than this from T_init
    trust_trans_m: float = 0.3
    max_correction_deg: float = 30.0       # larger corrections are rejected (diverged)
    max_correction_m: float = 2.0
    # confidence (see EdgeAlignmentCalibrator._estimate)
    probe_rot_deg: float = 0.5             # Levinson grid step, and the inner radius of the probe ball
    probe_trans_m: float = 0.05
    probe_ball_deg: float = 3.0            # random rotation probes up to this angle
    probe_count: int = 256
    prominence_low: float = 1.5            # peak z-score mapped linearly: <= low -> 0, >= high -> 1
    prominence_high: float = 3.0
    min_confidence: float = 0.35           # success needs at least this confidence
    # cost (bench/bench_calibrator.py); none of these changes the estimate
    implementation: str = 'fast'           # 'fast' | 'reference' (the original code path: scipy filters, float64
                                           # einsum objective, no cache; kept for tests and same-run baselines)
    levinson_fraction: bool = False        # also report Levinson's grid criterion (728 more objective evaluations;
                                           # a diagnostic only, the confidence does not use it)
    cache_frames: int = 2                  # per-frame preparations kept (image edges, LiDAR discontinuities, edge
                                           # maps): the nclr/classical handover runs this calibrator twice per frame

    @classmethod
    def _prepare(cls, d: dict) -> dict:
        if 'levels' in d:
            d['levels'] = dataclass_list(SearchLevel, d['levels'], f'{cls.CONFIG_NAME}: levels')
        return d

    def validate(self) -> None:
        if not self.levels:
            raise ValueError('classical calibration config: levels must not be empty')
        for lv in self.levels:
            if not 0.0 < lv.decay < 1.0:
                raise ValueError(f'classical calibration config: decay must be in (0, 1), got {lv.decay}')
        if self.edge_gradient not in ('horizontal', 'magnitude'):
            raise ValueError(f"classical calibration config: edge_gradient must be 'horizontal' or 'magnitude', "
                             f'got {self.edge_gradient!r}')
        if not 0.0 < self.image_scale <= 1.0:
            raise ValueError(f'classical calibration config: image_scale must be in (0, 1], got {self.image_scale}')
        if self.max_edge_points < self.min_edge_points:
            raise ValueError('classical calibration config: max_edge_points < min_edge_points')
        if self.implementation not in ('fast', 'reference'):
            raise ValueError(f"classical calibration config: implementation must be 'fast' or 'reference', "
                             f'got {self.implementation!r}')
        if self.cache_frames < 0:
            raise ValueError('classical calibration config: cache_frames must be >= 0')
        if self.unordered not in ('neighbours', 'rings'):
            raise ValueError(f"classical calibration config: unordered must be 'neighbours' or 'rings', "
                             f'got {self.unordered!r}')
        if self.neighbour_count < 2 or self.neighbour_radius <= 0 or not 0 < self.occlusion_max_angle_deg < 90:
            raise ValueError('classical calibration config: need neighbour_count >= 2, neighbour_radius > 0 and '
                             '0 < occlusion_max_angle_deg < 90')


# ----------------------------------------------------------------------------- LiDAR side

def _wrap_deg(a: np.ndarray) -> np.ndarray:
    return (a + 180.0) % 360.0 - 180.0


def _run_lengths(a: np.ndarray) -> np.ndarray:
    """a: (n,) bool -> (n,) length of the run of True ending at each position (0 where False)."""
    idx = np.arange(len(a))
    last_false = np.maximum.accumulate(np.where(~a, idx, -1)) if len(a) else idx
    return idx - last_false


def discontinuity_weights(points: np.ndarray, cfg: ClassicalCalibConfig,
                          viewpoint: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """points: (N, 4) LiDAR frame -> (weights (N,) float32 >= 0, how neighbours were found: 'scan',
    'rings' or 'neighbours').

    A point weighs when a neighbour lies at least ``min_jump_m`` farther (it is the near side of a depth
    step) and the near surface continues on the other side (``step_edge_min_run``). Neighbours:

    * 'scan': consecutive points of one scan line, when the cloud is stored in scan order (KITTI, most
      spinning-LiDAR drivers), judged from the LiDAR frame's origin;
    * otherwise (``unordered``) either 'rings': rings rebuilt from elevation bins seen from the origin,
      points sorted by azimuth inside each ring (needs a spinning LiDAR whose frame is the sensor); or
      'neighbours': the nearest points in direction seen from ``viewpoint`` (3,) LiDAR frame (the camera
      centre; None = the origin), ranges measured from there. This works for any cloud: merged or
      subsampled clouds, solid-state scan patterns, and a ``lidar`` frame that is a vehicle frame away from
      the sensor, where rings seen from the origin are not the sensor's rings.
    """
    n = len(points)
    if n < 3:
        return np.zeros(n, np.float32), 'scan'
    xyz = points[:, :3].astype(np.float64)
    rng_ = np.linalg.norm(xyz, axis=1)
    az = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0]))
    el = np.degrees(np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1])))

    def pairs(order: np.ndarray) -> np.ndarray:
        return ((np.abs(_wrap_deg(np.diff(az[order]))) < cfg.neighbour_max_az_gap_deg)
                & (np.abs(np.diff(el[order])) < cfg.neighbour_max_el_gap_deg))

    order = np.arange(n)
    valid = pairs(order)
    mode = 'scan'
    if valid.mean() < cfg.scan_order_min_fraction:
        if cfg.unordered == 'neighbours':
            return _view_discontinuity_weights(points, cfg, viewpoint), 'neighbours'
        order = np.lexsort((az, np.floor(el / cfg.elevation_bin_deg)))
        valid = pairs(order)
        mode = 'rings'
    valid &= (rng_[order][:-1] >= cfg.min_range_m) & (rng_[order][1:] >= cfg.min_range_m)
    r = rng_[order]
    # jump to the next / previous neighbour (NaN when not a neighbour), per point in scan order
    nxt = np.full(n, np.nan)
    prv = np.full(n, np.nan)
    nxt[:-1] = np.where(valid, r[1:] - r[:-1], np.nan)
    prv[1:] = np.where(valid, r[:-1] - r[1:], np.nan)
    # a clean step edge: a jump away on one side, a continuous surface on the other (rejects the
    # isolated range spikes of foliage and noise, which have a jump on both sides)
    tol = np.maximum(cfg.smooth_tol_m, cfg.smooth_tol_rel * r)
    smooth = valid & (np.abs(r[1:] - r[:-1]) <= tol[:-1])          # pair (i, i+1) on one surface
    run_left = np.zeros(n, np.int64)
    run_right = np.zeros(n, np.int64)
    run_left[1:] = _run_lengths(smooth)                              # smooth pairs ending at i, going left
    run_right[:-1] = _run_lengths(smooth[::-1])[::-1]                # ... starting at i, going right
    if cfg.step_edge_min_run > 0:
        step_next = np.where(run_left >= cfg.step_edge_min_run, nxt, 0.0)
        step_prev = np.where(run_right >= cfg.step_edge_min_run, prv, 0.0)
    else:
        step_next, step_prev = nxt, prv
    jump = np.maximum(np.nan_to_num(step_next, nan=0.0), np.nan_to_num(step_prev, nan=0.0))
    jump = np.maximum(jump, 0.0)
    w = np.where(jump >= cfg.min_jump_m, np.minimum(jump, cfg.max_jump_m) ** cfg.jump_gamma, 0.0)
    if cfg.intensity_weight > 0:
        inten = points[order, 3].astype(np.float64)
        scale = max(float(np.percentile(inten, 99)), 1e-6) if n else 1.0
        inten = np.clip(inten / scale, 0.0, 1.0)
        di = np.where(valid, np.abs(np.diff(inten)), 0.0)
        ij = np.zeros(n)
        ij[:-1] = np.maximum(ij[:-1], di)
        ij[1:] = np.maximum(ij[1:], di)
        w = w + cfg.intensity_weight * np.where(ij >= cfg.min_intensity_jump, ij, 0.0)
    w[rng_[order] < cfg.min_range_m] = 0.0
    out = np.zeros(n, np.float32)
    out[order] = w
    return out, mode


def _view_discontinuity_weights(points: np.ndarray, cfg: ClassicalCalibConfig,
                                viewpoint: np.ndarray | None) -> np.ndarray:
    """The 'neighbours' mode of :func:`discontinuity_weights`: points (N, 4) LiDAR frame -> weights (N,).

    Directions from the viewpoint go into a k-d tree; each point looks at its ``neighbour_count`` nearest
    directions within ``neighbour_radius`` x the cloud's median nearest-neighbour angle (so the scale
    follows the sensor's resolution). A range step to a neighbour is an occlusion only when the segment
    from the point to the far neighbour lies within ``occlusion_max_angle_deg`` of the viewing ray, i.e.
    the step exceeds r * angle / tan(occlusion_max_angle_deg): ground seen at a grazing angle also shows
    large steps between elevations, but its segments lie along the ground, not along the ray (the angle
    criterion of range-image segmentation, Bogoslavskyi and Stachniss). Then the same rules as along a scan
    line: the largest such step is the jump, at least ``step_edge_min_run`` neighbours on the same surface make it a
    clean step (a lone foliage return has none), and an intensity step adds ``intensity_weight``."""
    from scipy.spatial import cKDTree
    n = len(points)
    o = np.zeros(3) if viewpoint is None else np.asarray(viewpoint, dtype=np.float64).reshape(3)
    d = points[:, :3].astype(np.float64) - o
    r = np.linalg.norm(d, axis=1)
    near = r >= cfg.min_range_m
    w = np.zeros(n, np.float32)
    idx = np.flatnonzero(near)
    k = min(cfg.neighbour_count, len(idx) - 1)
    if k < 1:
        return w
    u = d[idx] / r[idx, None]
    tree = cKDTree(u)
    dist, nb = tree.query(u, k=k + 1)                      # column 0: the point itself
    dist, nb = dist[:, 1:], nb[:, 1:]
    radius = cfg.neighbour_radius * float(np.median(dist[:, 0]))
    ok = dist <= radius
    ri = r[idx]
    rj = ri[nb]
    diff = np.where(ok, rj - ri[:, None], np.nan)           # > 0: the neighbour is behind
    tol = np.maximum(cfg.smooth_tol_m, cfg.smooth_tol_rel * ri)
    same = np.abs(diff) <= tol[:, None]
    # chord ~ angle between the directions; the lateral offset at the near range vs the range step
    occl = ok & (diff * np.tan(np.radians(cfg.occlusion_max_angle_deg)) >= ri[:, None] * dist)
    jump = np.where(occl, diff, 0.0).max(axis=1)
    if cfg.step_edge_min_run > 0:
        jump = np.where(same.sum(axis=1) >= cfg.step_edge_min_run, jump, 0.0)
    wi = np.where(jump >= cfg.min_jump_m, np.minimum(jump, cfg.max_jump_m) ** cfg.jump_gamma, 0.0)
    if cfg.intensity_weight > 0:
        inten = points[idx, 3].astype(np.float64)
        inten = np.clip(inten / max(float(np.percentile(inten, 99)), 1e-6), 0.0, 1.0)
        di = np.where(ok, np.abs(inten[nb] - inten[:, None]), 0.0).max(axis=1)
        wi = wi + cfg.intensity_weight * np.where(di >= cfg.min_intensity_jump, di, 0.0)
    w[idx] = wi
    return w


# ----------------------------------------------------------------------------- image side

def grey_image(image: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """image: (H, W, 3) uint8 RGB -> (H', W') float32 luminance 0..255, resized by ``scale``."""
    g = image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if scale != 1.0:
        from PIL import Image
        H, W = g.shape
        size = (max(1, int(round(W * scale))), max(1, int(round(H * scale))))
        g = np.asarray(Image.fromarray(g, mode='F').resize(size, Image.BILINEAR), dtype=np.float32)
    return g


def edge_strength(grey: np.ndarray, cfg: ClassicalCalibConfig) -> tuple[np.ndarray, float]:
    """grey: (H, W) float32 -> (E (H, W) float32 in [0, 1], contrast = gradient percentile in grey levels)."""
    g = ndimage.gaussian_filter(grey, cfg.grad_sigma_px) if cfg.grad_sigma_px > 0 else grey
    gx = ndimage.sobel(g, axis=1)
    if cfg.edge_gradient == 'horizontal':
        mag = np.abs(gx) / 8.0                                  # ~grey levels per pixel
    else:
        mag = np.hypot(gx, ndimage.sobel(g, axis=0)) / 8.0
    contrast = float(np.percentile(mag, cfg.edge_norm_percentile))
    E = np.clip(mag / max(contrast, 1e-6), 0.0, 1.0).astype(np.float32)
    return E, contrast


def _idt_radii(decay: float, shape: tuple[int, int], n_radii: int) -> np.ndarray:
    k_max = int(np.ceil(np.log(0.02) / np.log(decay)))        # beyond: decay^k < 2 %
    k_max = max(1, min(k_max, max(shape)))
    return np.unique(np.round(np.geomspace(1, k_max, max(2, n_radii))).astype(int))


def inverse_distance_transform_reference(E: np.ndarray, decay: float, alpha: float, n_radii: int = 12) -> np.ndarray:
    """The original :func:`inverse_distance_transform` (one scipy maximum filter per radius); same values."""
    spread = E.copy()
    for k in _idt_radii(decay, E.shape, n_radii):
        spread = np.maximum(spread, (decay ** k) * ndimage.maximum_filter(E, size=2 * k + 1, mode='constant'))
    return (alpha * E + (1.0 - alpha) * spread).astype(np.float32)


def _dilate1d(a: np.ndarray, d: int, axis: int) -> np.ndarray:
    """a: (H, W) float32 >= 0 -> max over the window [i - d, i + d] along ``axis``, zeros outside (exactly
    scipy's maximum_filter1d(a, 2d + 1, mode='constant')), by doubling: O(log d) array maxima."""
    if d <= 0:
        return a
    n, L = a.shape[axis], 2 * d + 1

    def sl(lo: int, hi: int) -> tuple:
        return (slice(lo, hi), slice(None)) if axis == 0 else (slice(None), slice(lo, hi))
    shape = list(a.shape)
    shape[axis] = n + 2 * d
    f = np.zeros(shape, np.float32)
    f[sl(d, d + n)] = a
    span, m = 1, n + 2 * d                                       # f[i] = max over [i, i + span)
    while 2 * span <= L:
        np.maximum(f[sl(0, m - span)], f[sl(span, m)], out=f[sl(0, m - span)])   # ascending i: reads ahead only
        span, m = 2 * span, m - span
    return np.maximum(f[sl(0, n)], f[sl(L - span, L - span + n)])


def inverse_distance_transforms(E: np.ndarray, decays: list[float], alpha: float, n_radii: int = 12) -> list[np.ndarray]:
    """:func:`inverse_distance_transform` for several decays at once, sharing the square maximum filters."""
    E = np.ascontiguousarray(E, dtype=np.float32)
    radii = [set(int(k) for k in _idt_radii(d, E.shape, n_radii)) for d in decays]
    spreads = [E.copy() for _ in decays]
    M, prev = E, 0
    for k in sorted(set().union(*radii)):
        M = _dilate1d(_dilate1d(M, k - prev, 0), k - prev, 1)
        prev = k
        for d, rs, spread in zip(decays, radii, spreads):
            if k in rs:
                np.maximum(spread, np.float32(d ** k) * M, out=spread)
    return [(alpha * E + (1.0 - alpha) * spread).astype(np.float32) for spread in spreads]


def inverse_distance_transform(E: np.ndarray, decay: float, alpha: float, n_radii: int = 12) -> np.ndarray:
    """D = alpha E + (1 - alpha) max_q E_q decay^cheb(p, q), approximated on a geometric set of radii.

    E: (H, W) in [0, 1] -> D (H, W) float32 in [0, 1]. The max over radius k of decay^k times a
    (2k+1)-square maximum filter is exact at the sampled radii and a lower bound in between. The square
    filters are built incrementally (a square of radius k is the one of the previous radius dilated by the
    difference; exact for E >= 0), each dilation by doubling along rows and columns.
    """
    return inverse_distance_transforms(E, [decay], alpha, n_radii)[0]


def gaussian_local_mean(D: np.ndarray, sigma: float) -> np.ndarray:
    """scipy's ``gaussian_filter(D, sigma, mode='nearest')`` (truncate 4) as two single-precision FFT
    convolutions: D (H, W) float32 -> (H, W) float32, within ~1e-6 of scipy's, the same cost for any sigma."""
    fft = _fft
    r = int(4.0 * float(sigma) + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 / (float(sigma) ** 2) * x ** 2)
    k = (k / k.sum()).astype(np.float32)
    out = np.ascontiguousarray(D, dtype=np.float32)
    for axis in (1, 0):
        n = out.shape[axis]
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        xp = np.pad(out, pad, mode='edge')                      # 'nearest'
        nf = fft.next_fast_len(xp.shape[axis] + 2 * r, real=True)
        kf = fft.rfft(k, nf).reshape([-1 if a == axis else 1 for a in range(2)])
        full = fft.irfft(fft.rfft(xp, nf, axis=axis) * kf, nf, axis=axis)
        out = full[:, 2 * r:2 * r + n] if axis == 1 else full[2 * r:2 * r + n]
    return np.ascontiguousarray(out, dtype=np.float32)


def bilinear_lookup(D: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """D: (H, W); u, v: same-shape float pixel coordinates (NaN allowed) -> float32 values, 0 outside the image."""
    H, W = D.shape
    with np.errstate(invalid='ignore'):
        ok = (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    uu = np.where(ok, u, 0.0).astype(np.float32)
    vv = np.where(ok, v, 0.0).astype(np.float32)
    u0 = np.minimum(uu.astype(np.int32), max(W - 2, 0))
    v0 = np.minimum(vv.astype(np.int32), max(H - 2, 0))
    du = uu - u0
    dv = vv - v0
    flat = np.ascontiguousarray(D, dtype=np.float32).ravel()
    i00 = v0 * W + u0
    dx = 1 if W > 1 else 0
    dy = W if H > 1 else 0
    top = flat[i00] + du * (flat[i00 + dx] - flat[i00])
    bot = flat[i00 + dy] + du * (flat[i00 + dy + dx] - flat[i00 + dy])
    val = top + dv * (bot - top)
    val[~ok] = 0.0
    return val


# ----------------------------------------------------------------------------- objective and search

def _rotvec_matrices(rv: np.ndarray) -> np.ndarray:
    """rv: (B, 3) rotation vectors (rad) -> (B, 3, 3) float64 (Rodrigues; scipy's from_rotvec within 1e-15)."""
    rv = np.asarray(rv, dtype=np.float64)
    th = np.linalg.norm(rv, axis=1)
    small = th < 1e-6
    ths = np.where(small, 1.0, th)
    a = np.where(small, 1.0 - th ** 2 / 6.0, np.sin(ths) / ths)            # sin(th) / th
    b = np.where(small, 0.5 - th ** 2 / 24.0, (1.0 - np.cos(ths)) / ths ** 2)  # (1 - cos th) / th^2
    x, y, z = rv[:, 0], rv[:, 1], rv[:, 2]
    W = np.zeros((len(rv), 3, 3))
    W[:, 0, 1], W[:, 0, 2], W[:, 1, 0] = -z, y, z
    W[:, 1, 2], W[:, 2, 0], W[:, 2, 1] = -x, -y, x
    return np.eye(3) + a[:, None, None] * W + b[:, None, None] * (W @ W)


def _delta_transforms(deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """deltas: (B, 6) [rotvec rad, translation m] -> R (B, 3, 3), t (B, 3)."""
    return _rotvec_matrices(deltas[:, :3]), deltas[:, 3:]


class EdgeFrameError(ValueError):
    """A frame the edge alignment cannot use; ``extras`` go into the failed CalibResult."""

    def __init__(self, message: str, **extras: Any) -> None:
        super().__init__(message)
        self.extras = extras


@dataclass
class EdgeFrame:
    """One frame prepared for edge alignment: E (H, W) float32 image edge strength (before the inverse
    distance transform), K (3, 3) at the edge map's scale, points (M, 3) float64 LiDAR discontinuity points
    (LiDAR frame), weights (M,) their discontinuity weights, contrast (grey levels), ordering (scan order
    used for the neighbours)."""

    E: np.ndarray
    K: np.ndarray
    points: np.ndarray
    weights: np.ndarray
    contrast: float
    ordering: str


class _ReferenceObjective:
    """The original objective (float64 einsum projection, numpy bilinear look-up); same values as _Objective."""

    def __init__(self, D: np.ndarray, K: np.ndarray, weights: np.ndarray, chunk: int = 2_000_000) -> None:
        self.D = D
        self.K = K
        self.w = weights.astype(np.float64)
        self.wsum = float(self.w.sum())
        self.w32 = self.w.astype(np.float32)
        self.chunk = chunk

    def __call__(self, P_cam: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        """P_cam: (M, 3) at the current estimate; deltas: (B, 6) -> J (B,)."""
        R, t = Rotation.from_rotvec(deltas[:, :3]).as_matrix(), deltas[:, 3:]
        M = len(P_cam)
        step = max(1, self.chunk // max(M, 1))
        out = np.empty(len(deltas))
        K = self.K
        for s in range(0, len(deltas), step):
            Q = np.einsum('bij,mj->bmi', R[s:s + step], P_cam) + t[s:s + step, None, :]
            z = Q[..., 2]
            front = z > 0.1
            zs = np.where(front, z, 1.0)
            u = np.where(front, K[0, 0] * Q[..., 0] / zs + K[0, 1] * Q[..., 1] / zs + K[0, 2], np.nan)
            v = np.where(front, K[1, 1] * Q[..., 1] / zs + K[1, 2], np.nan)
            out[s:s + step] = bilinear_lookup(self.D, u, v) @ self.w32 / self.wsum
        return out


class _Objective:
    """J over a batch of corrections applied in the camera frame to points already in the camera frame.

    D: (H, W) edge map; K: (3, 3) at the map's scale; weights: (M,) of the points passed to ``__call__``.
    One batched float32 projection per chunk of candidates (the intrinsics and grid_sample's normalised
    coordinates folded into one 3x3 per candidate) and torch's bilinear ``grid_sample``; points behind the
    camera (z <= 0.1) or outside [0, W-1] x [0, H-1] score 0, exactly as :func:`bilinear_lookup`. The points
    are visited in image-row order (fixed at the first call) so the look-ups stay cache-local.
    """

    def __init__(self, D: np.ndarray, K: np.ndarray, weights: np.ndarray, chunk: int = 1 << 18) -> None:
        import torch
        self._torch = torch
        H, W = D.shape
        self.D = torch.from_numpy(np.ascontiguousarray(D, dtype=np.float32))[None, None]
        # pixel (u, v, 1) -> grid_sample's normalised coordinates (align_corners=True)
        S = np.array([[2.0 / max(W - 1, 1), 0.0, -1.0], [0.0, 2.0 / max(H - 1, 1), -1.0], [0.0, 0.0, 1.0]])
        self.SK = S @ np.asarray(K, dtype=np.float64)
        self._w = np.asarray(weights, dtype=np.float64)
        self.wsum = float(self._w.sum())
        self.chunk = chunk
        self._perm: np.ndarray | None = None
        self._wt: Any = None
        self._P_src: np.ndarray | None = None     # the caller's array (held: identity is the cache key)
        self._P: Any = None

    def _points(self, P_cam: np.ndarray):
        if P_cam is not self._P_src:
            P_cam = np.asarray(P_cam, dtype=np.float64)
            if self._perm is None:                # image-row order of the first projection
                q = P_cam @ self.SK.T
                with np.errstate(divide='ignore', invalid='ignore'):
                    gx, gy = q[:, 0] / q[:, 2], q[:, 1] / q[:, 2]
                self._perm = np.lexsort((np.nan_to_num(gx), np.floor(np.nan_to_num(gy) * 64.0)))
                self._wt = self._torch.from_numpy(self._w[self._perm])
            self._P = self._torch.from_numpy(np.ascontiguousarray(P_cam[self._perm].T, dtype=np.float32))  # (3, M)
            self._P_src = P_cam
        return self._P

    def __call__(self, P_cam: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        """P_cam: (M, 3) at the current estimate; deltas: (B, 6) -> J (B,)."""
        torch = self._torch
        deltas = np.asarray(deltas, dtype=np.float64).reshape(-1, 6)
        P = self._points(P_cam)
        M = P.shape[1]
        A = (self.SK @ _rotvec_matrices(deltas[:, :3])).astype(np.float32)             # (B, 3, 3)
        b = (deltas[:, 3:] @ self.SK.T).astype(np.float32)                              # (B, 3)
        out = np.empty(len(deltas))
        step = max(1, self.chunk // max(M, 1))
        for s in range(0, len(deltas), step):
            Q = torch.baddbmm(torch.from_numpy(b[s:s + step, :, None]), torch.from_numpy(A[s:s + step]),
                              P.expand(len(A[s:s + step]), 3, M))                       # (b, 3, M)
            z = Q[:, 2]
            xy = Q[:, :2] / z[:, None]                                                  # (b, 2, M)
            bad = (z <= 0.1) | ~(xy.abs().amax(1) <= 1.0)                               # NaN: bad too
            xy.masked_fill_(bad[:, None], -4.0)                                         # far outside: 0
            val = torch.nn.functional.grid_sample(self.D, xy.transpose(1, 2).contiguous()[None], mode='bilinear',
                                                  padding_mode='zeros', align_corners=True)[0, 0]   # (b, M)
            out[s:s + step] = (val.double() @ self._wt).numpy() / self.wsum
        return out


def _apply(delta: np.ndarray, T: np.ndarray) -> np.ndarray:
    R, t = _delta_transforms(delta[None])
    L = np.eye(4)
    L[:3, :3] = R[0]
    L[:3, 3] = t[0]
    return L @ T


def _grid_directions() -> np.ndarray:
    g = np.stack(np.meshgrid(*[[-1.0, 0.0, 1.0]] * 6, indexing='ij'), axis=-1).reshape(-1, 6)
    return g[np.any(g != 0, axis=1)]


_GRID = _grid_directions()  # (728, 6)


def _rotation_grid(range_deg: float, step_deg: float) -> np.ndarray:
    """(B, 6) pure-rotation corrections on a cubic grid of rotation vectors within +-range_deg."""
    n = int(np.floor(range_deg / step_deg))
    a = np.radians(np.arange(-n, n + 1) * step_deg)
    g = np.stack(np.meshgrid(a, a, a, indexing='ij'), axis=-1).reshape(-1, 3)
    return np.concatenate([g, np.zeros_like(g)], axis=1)


class EdgeAlignmentCalibrator:
    """Targetless calibrator (and refinement stage): maximises LiDAR-discontinuity / image-edge alignment."""

    name = 'classical'

    def __init__(self, config: ClassicalCalibConfig | None = None) -> None:
        self.cfg = config or ClassicalCalibConfig()
        self.cfg.validate()
        self._cache: OrderedDict[tuple, dict] = OrderedDict()   # frame content key -> prepared frame

    @property
    def _fast(self) -> bool:
        return self.cfg.implementation != 'reference'

    def _prepared(self, sample: Sample) -> dict:
        """Per-frame work that does not depend on the extrinsic, kept for the last ``cache_frames`` frames
        (keyed by the content of image, cloud and K, so a changed frame is never served stale): the image
        edge strength E and contrast, K at the edge map's scale, the LiDAR discontinuity weights, and the
        edge maps per (decay, sigma) filled by :meth:`_level_map`. Entries are computed on first use."""
        if not self._fast or self.cfg.cache_frames <= 0:
            return {'maps': {}}
        img, pts = np.ascontiguousarray(sample.image), np.ascontiguousarray(sample.points)
        K = np.ascontiguousarray(sample.K, dtype=np.float64)
        key = (img.shape, str(img.dtype), zlib.crc32(img), pts.shape, str(pts.dtype), zlib.crc32(pts), K.tobytes())
        prep = self._cache.get(key)
        if prep is None:
            prep = {'maps': {}}
            self._cache[key] = prep
            while len(self._cache) > self.cfg.cache_frames:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return prep

    def _level_map(self, prep: dict, E: np.ndarray, decay: float, sigma: float | None) -> np.ndarray:
        """The edge map of one search level, from the frame cache; a miss computes every level's map at once."""
        def key(d: float, s: float | None) -> tuple:
            return float(d), None if s is None else float(s)
        if key(decay, sigma) not in prep['maps']:
            levels = [(lv.decay, self.cfg.local_mean_sigma_px if lv.local_mean_sigma_px is None
                       else lv.local_mean_sigma_px) for lv in self.cfg.levels]
            specs = [(decay, sigma)] + [ds for ds in levels if key(*ds) not in prep['maps']]
            specs = list(dict.fromkeys(key(d, s) for d, s in specs))
            for k, D in zip(specs, self._edge_maps(E, specs)):
                prep['maps'][k] = D
        return prep['maps'][key(decay, sigma)]

    def estimate(self, sample: Sample, T_init: np.ndarray) -> CalibResult:
        try:
            T0 = np.asarray(T_init, dtype=np.float64).reshape(4, 4)
            if not np.all(np.isfinite(T0)):
                return CalibResult.failure(np.eye(4), 'T_init is not finite')
        except Exception as exc:  # noqa: BLE001 - a calibrator never raises on bad input
            return CalibResult.failure(np.eye(4), f'T_init unusable: {exc}')
        try:
            return self._estimate(sample, T0)
        except Exception as exc:  # noqa: BLE001
            return CalibResult.failure(T0, f'classical calibration failed: {type(exc).__name__}: {exc}')

    def _inside_trust(self, cands: np.ndarray, T: np.ndarray, T0: np.ndarray) -> np.ndarray:
        """cands: (B, 6) corrections of T -> (B,) bool, the result stays within the trust region around T0."""
        R, t = _delta_transforms(cands)
        R_new = R @ T[:3, :3]                                    # (B, 3, 3)
        t_new = np.einsum('bij,j->bi', R, T[:3, 3]) + t          # (B, 3)
        cos = (np.einsum('bij,ij->b', R_new, T0[:3, :3]) - 1.0) / 2.0   # trace(R_new^T R0)
        ang = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
        return (ang <= self.cfg.trust_rot_deg) & (np.linalg.norm(t_new - T0[:3, 3], axis=1) <= self.cfg.trust_trans_m)

    def _edge_maps(self, E: np.ndarray, specs: list[tuple[float, float | None]]) -> list[np.ndarray]:
        """:meth:`_edge_map` for several (decay, local_mean_sigma_px) at once (shared maximum filters)."""
        if not self._fast:
            return [self._edge_map(E, d, s) for d, s in specs]
        decays = sorted({float(d) for d, _ in specs})
        idts = dict(zip(decays, inverse_distance_transforms(E, decays, self.cfg.idt_alpha, self.cfg.idt_radii)))
        return [self._edge_map(E, d, s, idt=idts[float(d)]) for d, s in specs]

    def _edge_map(self, E: np.ndarray, decay: float, local_mean_sigma_px: float | None = None,
                  idt: np.ndarray | None = None) -> np.ndarray:
        """E (H, W) -> the (H, W) float32 edge map of one level (inverse distance transform, high-pass);
        ``idt``: its inverse distance transform when already computed."""
        if idt is not None:
            D = idt
        else:
            transform = inverse_distance_transform if self._fast else inverse_distance_transform_reference
            D = transform(E, decay, self.cfg.idt_alpha, self.cfg.idt_radii)
        sigma = self.cfg.local_mean_sigma_px if local_mean_sigma_px is None else local_mean_sigma_px
        if sigma > 0:
            # high-pass: subtract the local mean, so drifting into textured regions earns nothing by itself
            if self._fast:
                D = D - gaussian_local_mean(D, sigma * self.cfg.image_scale)
            else:
                D = D - ndimage.gaussian_filter(D, sigma * self.cfg.image_scale, mode='nearest')
        elif self.cfg.center_edge_map:
            D = D - np.float32(D.mean())
        return D

    def edge_frame(self, sample: Sample, T0: np.ndarray) -> 'EdgeFrame':
        """The image edge strength and the LiDAR discontinuity points of one frame that can project into the
        image with ``T0`` (at most ``max_edge_points``, strongest first). Raises EdgeFrameError (with the
        CalibResult extras) when the frame has too few points, no usable edges or too few edge points."""
        return self._edge_frame(sample, T0, self._prepared(sample))

    def _edge_frame(self, sample: Sample, T0: np.ndarray, prep: dict) -> 'EdgeFrame':
        cfg = self.cfg
        pts = np.asarray(sample.points)
        if pts.ndim != 2 or pts.shape[0] < cfg.min_edge_points:
            raise EdgeFrameError(f'too few LiDAR points ({len(pts)})', n_points=int(len(pts)))
        # image edge maps
        if 'E' not in prep:
            grey = grey_image(sample.image, cfg.image_scale)
            Hs, Ws = grey.shape
            prep['K'] = sample.K if cfg.image_scale == 1.0 else scale_intrinsics(
                sample.K, Ws / sample.image.shape[1], Hs / sample.image.shape[0])
            prep['E'], prep['contrast'] = edge_strength(grey, cfg)
        E, contrast, K = prep['E'], prep['contrast'], prep['K']
        Hs, Ws = E.shape
        if contrast < cfg.min_edge_contrast:
            raise EdgeFrameError(f'image has no usable edges (gradient p{cfg.edge_norm_percentile:g} = '
                                 f'{contrast:.2f} grey levels < {cfg.min_edge_contrast})', edge_contrast=contrast)
        # LiDAR discontinuities, kept where they can project into the image
        if 'w' not in prep:             # seen from the camera centre at the first guess (the 'neighbours' mode)
            centre = -T0[:3, :3].T @ T0[:3, 3]
            prep['w'], prep['ordering'] = discontinuity_weights(pts, cfg, viewpoint=centre)
        w, order_mode = prep['w'], prep['ordering']
        idx = np.flatnonzero(w > 0)
        P_l = pts[idx, :3].astype(np.float64)
        P_c = P_l @ T0[:3, :3].T + T0[:3, 3]
        z = P_c[:, 2]
        zs = np.where(z > 0.1, z, 1.0)
        u = K[0, 0] * P_c[:, 0] / zs + K[0, 1] * P_c[:, 1] / zs + K[0, 2]
        v = K[1, 1] * P_c[:, 1] / zs + K[1, 2]
        m = cfg.fov_margin_px * cfg.image_scale
        keep = (z > 0.1) & (u > -m) & (u < Ws - 1 + m) & (v > -m) & (v < Hs - 1 + m)
        idx = idx[keep]
        if len(idx) > cfg.max_edge_points:
            top = np.argpartition(-w[idx], cfg.max_edge_points - 1)[:cfg.max_edge_points]
            idx = idx[top]
        n_edge = int(len(idx))
        if n_edge < cfg.min_edge_points:
            raise EdgeFrameError(f'too few LiDAR discontinuity points near the image ({n_edge} < '
                                 f'{cfg.min_edge_points})', n_edge_points=n_edge, edge_contrast=contrast)
        return EdgeFrame(E=E, K=K, points=pts[idx, :3].astype(np.float64), weights=w[idx], contrast=contrast,
                         ordering=order_mode)

    def _estimate(self, sample: Sample, T0: np.ndarray) -> CalibResult:
        cfg = self.cfg
        t_start = time.perf_counter()
        prep = self._prepared(sample)
        try:
            frame = self._edge_frame(sample, T0, prep)
        except EdgeFrameError as exc:
            return CalibResult.failure(T0, str(exc), **exc.extras)
        fast = self._fast
        Objective = _Objective if fast else _ReferenceObjective
        E, K, P_l, weights = frame.E, frame.K, frame.points, frame.weights
        contrast, order_mode, n_edge = frame.contrast, frame.ordering, len(frame.points)

        rng = np.random.default_rng(cfg.seed)
        T = T0.copy()
        J_init = None
        history = []
        for lv in cfg.levels:
            sigma = cfg.local_mean_sigma_px if lv.local_mean_sigma_px is None else lv.local_mean_sigma_px
            obj = Objective(self._level_map(prep, E, lv.decay, sigma), K, weights)
            P_cur = P_l @ T[:3, :3].T + T[:3, 3]
            J = float(obj(P_cur, np.zeros((1, 6)))[0])
            if J_init is None:
                J_init = J
            if lv.grid_range_deg > 0 and lv.search_rotation:
                cands = _rotation_grid(lv.grid_range_deg, lv.rot_step_deg)
                cands = cands[self._inside_trust(cands, T, T0)]
                scores = obj(P_cur, cands)
                b = int(np.argmax(scores))
                if scores[b] > J + cfg.min_improvement:
                    T = _apply(cands[b], T)
                    P_cur = P_l @ T[:3, :3].T + T[:3, 3]
                    J = float(scores[b])
            mask = np.array([lv.search_rotation] * 3 + [lv.search_translation] * 3, dtype=float)
            steps = np.array([np.radians(lv.rot_step_deg)] * 3 + [lv.trans_step_m] * 3)
            min_steps = np.array([np.radians(lv.min_rot_step_deg)] * 3 + [lv.min_trans_step_m] * 3)
            it = 0
            while it < lv.max_iters and np.any((steps > min_steps) & (mask > 0)):
                it += 1
                rand = rng.normal(size=(cfg.random_directions, 6))
                rand /= np.linalg.norm(rand, axis=1, keepdims=True)
                dirs = np.concatenate([np.eye(6), -np.eye(6), rand]) * mask
                if fast:                       # the axis moves of a masked component are no move: never better
                    dirs = dirs[np.any(dirs != 0, axis=1)]
                cands = dirs * steps
                scores = obj(P_cur, cands)
                scores[~self._inside_trust(cands, T, T0)] = -np.inf
                b = int(np.argmax(scores))
                if scores[b] > J + cfg.min_improvement:
                    T = _apply(cands[b], T)
                    P_cur = P_l @ T[:3, :3].T + T[:3, 3]
                    J = float(scores[b])
                else:
                    steps = steps * 0.5
            history.append({'decay': lv.decay, 'iters': it, 'objective': J})
        # confidence. Levinson's criterion (the fraction of the 3^6 - 1 grid neighbours at the probe step
        # scoring lower) is ~1 at any local maximum the search ends in, so it cannot flag a wrong one;
        # it is kept in extras. The confidence compares the estimate with random rotations within
        # probe_ball_deg: the fraction scoring lower times the peak's prominence (z-score) mapped to [0, 1].
        probe = np.array([np.radians(cfg.probe_rot_deg)] * 3 + [cfg.probe_trans_m] * 3)
        levinson = float(np.mean(obj(P_cur, _GRID * probe) < J)) if (cfg.levinson_fraction or not fast) else None
        prng = np.random.default_rng(cfg.seed + 1)
        axes = prng.normal(size=(cfg.probe_count, 3))
        axes /= np.linalg.norm(axes, axis=1, keepdims=True)
        ball = axes * np.radians(prng.uniform(cfg.probe_rot_deg, cfg.probe_ball_deg, size=(cfg.probe_count, 1)))
        sb = obj(P_cur, np.concatenate([ball, np.zeros_like(ball)], axis=1))
        frac_lower = float(np.mean(sb < J))
        prominence = float((J - np.median(sb)) / (np.std(sb) + 1e-12))
        ramp = np.clip((prominence - cfg.prominence_low) / (cfg.prominence_high - cfg.prominence_low), 0.0, 1.0)
        confidence = float(frac_lower * ramp)
        rre, rte = pose_error(T, T0)
        extras = {'objective_init': J_init, 'objective': J, 'n_edge_points': n_edge, 'edge_contrast': contrast,
                  'ordering': order_mode, 'correction_deg': rre, 'correction_m': rte, 'levels': history,
                  'levinson_fraction': levinson, 'ball_fraction_lower': frac_lower,
                  'prominence': prominence, 'runtime_s': time.perf_counter() - t_start}
        if rre > cfg.max_correction_deg or rte > cfg.max_correction_m:
            return CalibResult.failure(T0, f'diverged: correction {rre:.1f} deg / {rte:.2f} m exceeds the limit',
                                       **extras)
        ok = confidence >= cfg.min_confidence
        estimated = tuple([any(lv.search_rotation for lv in cfg.levels)] * 3
                          + [any(lv.search_translation for lv in cfg.levels)] * 3)
        msg = (f'edge alignment: objective {J_init:.4f} -> {J:.4f}, correction {rre:.2f} deg / {100 * rte:.1f} cm, '
               f'{n_edge} edge points, confidence {confidence:.2f}' + ('' if ok else ' (below min_confidence)'))
        return CalibResult(T, confidence, ok, msg, extras, estimated)
