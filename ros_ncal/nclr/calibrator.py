"""NCLR at inference: robust extrinsic estimation from the network's soft correspondences.

For one frame: map the cloud with the current guess, run the network, take the most likely
in-image points as keypoints with their soft-matched pixels and weights, then RANSAC over
weighted EPnP hypotheses (all hypotheses solved in one batched call) plus the "no change"
hypothesis, and a weighted Levenberg-Marquardt refinement on the inliers. Optionally repeat with
the refined guess (iterative refinement). Bad input (too few points in the image, a textureless
image, degenerate correspondences, an implausibly large correction) gives success=False, a low
confidence and the initial guess back, never an exception or NaN.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ros_ncal.calib.result import ESTIMATED_ALL, ESTIMATED_NONE, ESTIMATED_ROTATION, CalibResult
from ros_ncal.config_io import SectionConfig
from ros_ncal.data.sample import Sample
from ros_ncal.geometry import is_rigid, rotation_angle_deg

from .batching import items_to_batch
from .pnp import pose_to_matrix, refine_pose_lm, reprojection_residuals, weighted_epnp
from .pose import soft_correspondences
from .pretext import make_item


@dataclass
class NCLRInferenceConfig(SectionConfig):
    """Inference settings of the learned calibrator (YAML section ``nclr``, e.g. config/calib_eval.yaml)."""

    SECTION: ClassVar[str] = 'nclr'
    CONFIG_NAME: ClassVar[str] = 'nclr inference config'

    # network passes, each starting from the previous estimate. Held-out drive frames (+-10 deg / 0.5 m,
    # docs/results.md): 1 pass 1.44 deg median at 0.20 s/frame, 2 passes 1.57, 3 passes 1.45 at 1.1 s
    iterations: int = 1
    ransac_hypotheses: int = 256
    ransac_sample_size: int = 6
    inlier_px: float = 6.0         # reprojection inlier threshold in network-image pixels
    min_inliers: int = 12
    min_inlier_spread: float = 0.03  # inlier pixels must spread over this fraction of the image width
    min_points_in_view: int = 200
    min_image_std: float = 3.0     # grey-level std below which the image is treated as textureless
    max_correction_deg: float = 25.0
    max_correction_m: float = 2.0
    min_confidence: float = 0.15
    lm_iters: int = 10
    # 'fixed' (rotation only; the translation is left to a classical 6-DoF stage or kept), 'prior' (Gaussian
    # prior on the translation change), 'full' (6-DoF). Measured (docs/calibration_eval.md): single-frame
    # network translation is biased and noisy (synthetic: 'full' 55 cm, 'prior' 33 cm from 34 cm; KITTI 'prior'
    # 33 -> 40 cm), while 'fixed' keeps it and gives the classical stage the rotation it needs.
    translation: str = 'fixed'
    trans_prior_sigma_m: float = 0.2
    reproj_sigma_px: float = 2.0
    seed: int = 0

    def validate(self) -> None:
        if self.translation not in ('full', 'prior', 'fixed'):
            raise ValueError(f"nclr inference config: translation must be 'full', 'prior' or 'fixed', "
                             f"got {self.translation!r}")
        if self.iterations < 1 or self.ransac_hypotheses < 1 or self.ransac_sample_size < 4:
            raise ValueError('nclr inference config: iterations and ransac_hypotheses >= 1, '
                             'ransac_sample_size >= 4')
        if self.trans_prior_sigma_m <= 0 or self.reproj_sigma_px <= 0 or self.inlier_px <= 0:
            raise ValueError('nclr inference config: trans_prior_sigma_m, reproj_sigma_px, inlier_px must be > 0')


def _residual_inliers(R, t, X, uv, K, thr):
    r, Xc = reprojection_residuals(R, t, X[None], uv[None], K[None])
    return (r[0].norm(dim=-1) < thr) & (Xc[0, :, 2] > 0)


def _refine(R, t, X, uv, w, K, inlier, cfg: 'NCLRInferenceConfig'):
    """LM on the inliers with the configured translation model; returns R, t, cost."""
    wi = (w * inlier)[None]
    kw = {}
    if cfg.translation == 'prior':
        pw = wi.sum(-1) * (cfg.reproj_sigma_px / cfg.trans_prior_sigma_m) ** 2
        kw = {'t_prior': torch.zeros_like(t), 'prior_weight': pw}
    elif cfg.translation == 'fixed':
        kw = {'fix_translation': True}
    elif cfg.translation != 'full':
        raise ValueError(f"translation must be 'full', 'prior' or 'fixed', got {cfg.translation!r}")
    R, t = refine_pose_lm(R, t, X[None], uv[None], wi, K[None], iters=cfg.lm_iters, **kw)
    r, _ = reprojection_residuals(R, t, X[None], uv[None], K[None])
    cost = float((wi * r.pow(2).sum(-1).clamp_max(cfg.inlier_px ** 2 * 4)).sum())
    if 'prior_weight' in kw:
        cost += float(kw['prior_weight'] * t.pow(2).sum())
    return R, t, cost


def ransac_pose(X: torch.Tensor, uv: torch.Tensor, w: torch.Tensor, K: torch.Tensor, cfg: NCLRInferenceConfig,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """X (N, 3) keypoints in the guessed camera frame, uv (N, 2), w (N,), K (3, 3) float64 -> correction T (4, 4)
    and inlier mask (N,).

    Candidates: (a) RANSAC over weighted-sampled 6-point EPnP hypotheses plus "no change", then LM on
    its inliers; (b) iteratively reweighted LM from "no change" with a shrinking inlier threshold
    (3x, 2x, 1x). Both use the configured translation model; the lower robust cost wins.
    """
    N = X.shape[0]
    H, s = cfg.ransac_hypotheses, cfg.ransac_sample_size
    p = (w / w.sum()).clamp_min(1e-12)
    idx = torch.multinomial(p.expand(H, N).contiguous(), s, replacement=False, generator=gen)
    R, t = weighted_epnp(X[idx], uv[idx], torch.ones(H, s, dtype=X.dtype), K.expand(H, 3, 3))
    R = torch.cat([torch.eye(3, dtype=X.dtype)[None], R])  # hypothesis 0: no change
    t = torch.cat([torch.zeros(1, 3, dtype=X.dtype), t])
    if cfg.translation == 'fixed':  # rotation-only hypotheses
        t = torch.zeros_like(t)
    r, Xc = reprojection_residuals(R, t, X.expand(H + 1, N, 3), uv.expand(H + 1, N, 2), K.expand(H + 1, 3, 3))
    inl = (r.norm(dim=-1) < cfg.inlier_px) & (Xc[..., 2] > 0)
    score = torch.nan_to_num((inl * w).sum(-1), nan=-1.0)
    best = int(score.argmax())
    candidates = []
    if int(inl[best].sum()) >= cfg.min_inliers:
        candidates.append(_refine(R[best:best + 1], t[best:best + 1], X, uv, w, K, inl[best], cfg))
    Ri, ti = torch.eye(3, dtype=X.dtype)[None], torch.zeros(1, 3, dtype=X.dtype)
    inlier = torch.ones(N, dtype=torch.bool)
    for k in (3.0, 2.0, 1.0):
        Ri, ti, cost = _refine(Ri, ti, X, uv, w, K, inlier, cfg)
        inlier = _residual_inliers(Ri, ti, X, uv, K, k * cfg.inlier_px)
    candidates.append((Ri, ti, cost))
    R1, t1, _ = min(candidates, key=lambda c: c[2] if np.isfinite(c[2]) else float('inf'))
    inlier = _residual_inliers(R1, t1, X, uv, K, cfg.inlier_px)
    return pose_to_matrix(R1, t1)[0], inlier


class NCLRCalibrator:
    """``estimate(sample, T_init) -> CalibResult`` with a trained NCLR network (see module docstring)."""

    name = 'nclr'

    def __init__(self, model, cfg, infer: NCLRInferenceConfig | None = None, device: str = 'cpu'):
        self.model = model.to(device).eval()
        self.cfg = cfg
        self.infer = infer or NCLRInferenceConfig()
        self.device = torch.device(device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = 'cpu', infer: NCLRInferenceConfig | None = None):
        from .checkpoint import load_nclr
        if not Path(path).is_file():
            raise FileNotFoundError(str(path))
        model, cfg, _ = load_nclr(path, map_location=device)
        return cls(model, cfg, infer, device)

    def one_pass(self, sample: Sample, T_cur: np.ndarray, rng: np.random.Generator,
                 gen: torch.Generator) -> tuple[np.ndarray | None, dict]:
        """One network pass and robust pose fit from ``T_cur``: (the new (4, 4) T_cam_lidar, or None with
        ``info['reason']``; ``info`` also carries ``confidence``). :meth:`estimate` chains ``iterations`` of
        them; the multi-start stage (ros_ncal/nclr/multistart.py) runs them from many starts."""
        item = make_item(sample, T_cur, self.cfg.input, rng, T_true=None, use_frustum=True)
        n_view = int(item.overlap_gt.sum())
        if n_view < self.infer.min_points_in_view:
            return None, {'reason': f'only {n_view} points project into the image with the current guess'}
        batch = items_to_batch([item], self.device)
        with torch.no_grad():
            out = self.model(batch['points'], batch['images'])
            logits = out['point_overlap'][0]
            idx, m, w = soft_correspondences(out, 0, batch['points'][0][:, :3], batch['K'][0],
                                             self.cfg.network.num_keypoints, self.cfg.network.match_window)
            w = w.double().cpu()
            X = batch['points'][0][idx, :3].double().cpu()
            uv = m['uv'].double().cpu()
            K = batch['K'][0].double().cpu()
        if not (torch.isfinite(w).all() and torch.isfinite(uv).all()) or float(w.sum()) <= 0:
            return None, {'reason': 'non-finite or zero correspondence weights'}
        T_corr, inlier = ransac_pose(X, uv, w, K, self.infer, gen)
        n_in = int(inlier.sum())
        info = {'keypoints': int(len(idx)), 'inliers': n_in,
                'mean_overlap': float(torch.sigmoid(logits[idx]).mean())}
        info['confidence'] = float((w * inlier).sum() / w.sum()) * info['mean_overlap']
        T_corr = T_corr.numpy()
        if n_in < self.infer.min_inliers:
            info['reason'] = f'{n_in} inlier correspondences (< {self.infer.min_inliers})'
            return None, info
        spread_px = float(uv[inlier].std(0).norm()) if n_in > 1 else 0.0
        info['inlier_spread_px'] = spread_px
        if spread_px < self.infer.min_inlier_spread * item.image.shape[1]:
            info['reason'] = f'degenerate correspondences (inlier pixels spread {spread_px:.1f} px)'
            return None, info
        if not np.isfinite(T_corr).all() or not is_rigid(T_corr, atol=1e-4):
            info['reason'] = 'degenerate pose (non-finite or non-rigid)'
            return None, info
        ang, dist = rotation_angle_deg(T_corr[:3, :3]), float(np.linalg.norm(T_corr[:3, 3]))
        info.update(correction_deg=ang, correction_m=dist)
        if ang > self.infer.max_correction_deg or dist > self.infer.max_correction_m:
            info['reason'] = f'implausible correction {ang:.1f} deg / {dist:.2f} m'
            return None, info
        return T_corr @ T_cur, info

    def estimate(self, sample: Sample, T_init: np.ndarray) -> CalibResult:
        t0 = time.perf_counter()
        T_init = np.asarray(T_init, dtype=np.float64)
        try:
            gray_std = float(sample.image.astype(np.float32).mean(-1).std())
            if gray_std < self.infer.min_image_std:
                return CalibResult.failure(T_init, f'image is textureless (grey std {gray_std:.1f})',
                                           latency_s=time.perf_counter() - t0)
            rng = np.random.default_rng(self.infer.seed)
            gen = torch.Generator().manual_seed(self.infer.seed)
            T_cur, passes, last = T_init, [], {}
            for _ in range(self.infer.iterations):
                T_new, info = self.one_pass(sample, T_cur, rng, gen)
                passes.append(info)
                last = info
                if T_new is None:
                    break
                T_cur = T_new
            if len(passes) == 0 or (T_cur is T_init):
                return CalibResult.failure(T_init, f"nclr: {last.get('reason', 'no estimate')}", passes=passes,
                                           latency_s=time.perf_counter() - t0)
            conf = float(np.clip(last.get('confidence', 0.0), 0, 1)) if 'reason' not in last else \
                float(np.clip(passes[-2].get('confidence', 0.0) if len(passes) > 1 else 0.0, 0, 1))
            extras = {'passes': passes, 'latency_s': time.perf_counter() - t0}
            if conf < self.infer.min_confidence:  # no pose update on a low-confidence estimate
                extras['T_estimate'] = T_cur.tolist()
                return CalibResult(T_init.copy(), conf, False, f'nclr: low confidence {conf:.2f}', extras,
                                   ESTIMATED_NONE)
            estimated = ESTIMATED_ROTATION if self.infer.translation == 'fixed' else ESTIMATED_ALL
            return CalibResult(T_cur, conf, True, 'nclr: ok', extras, estimated)
        except Exception as exc:  # never let one frame stop a batch or a node
            return CalibResult.failure(T_init, f'nclr: {type(exc).__name__}: {exc}',
                                       latency_s=time.perf_counter() - t0)
