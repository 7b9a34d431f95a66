"""From network outputs to a pose: keypoint selection, soft correspondences, weighted PnP, confidence."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .network import guess_cells, soft_match
from .pnp import pose_to_matrix, reprojection_residuals, weighted_epnp, weighted_pnp


@dataclass
class PoseEstimate:
    """T: (4, 4) float64 T_cam_in; confidence in [0, 1]; correspondences for RANSAC / plots.

    idx: (K,) indices of the keypoints in the input cloud; uv: (K, 2) expected pixels;
    weights: (K,) PnP weights; inlier: (K,) bool reprojection inliers of the final pose.
    """
    T: torch.Tensor
    confidence: torch.Tensor
    idx: torch.Tensor
    uv: torch.Tensor
    weights: torch.Tensor
    inlier: torch.Tensor
    spread: torch.Tensor


def select_keypoints(overlap_logits: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k points most likely inside the image (all when fewer)."""
    k = min(k, overlap_logits.shape[0])
    return overlap_logits.detach().topk(k).indices


def correspondence_weights(overlap_logits: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """Weight = P(point in image) x sharpness of its soft match (1 / (1 + spread in cells))."""
    return torch.sigmoid(overlap_logits) / (1.0 + spread)


def soft_correspondences(out: dict, b: int, points_xyz: torch.Tensor, K: torch.Tensor, num_keypoints: int,
                         match_window: float = 0.0) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """Keypoints of sample ``b`` with their soft-matched pixels and PnP weights (training and inference).

    points_xyz (N, 3) input frame, K (3, 3) network image -> idx (K,), the soft_match dict, weights (K,).
    """
    logits = out['point_overlap'][b]
    idx = select_keypoints(logits, num_keypoints)
    centers = guess_cells(points_xyz[idx], K, out['stride']) if match_window > 0 else None
    m = soft_match(out['point_emb'][b][idx], out['pixel_emb'][b], out, centers, match_window)
    return idx, m, correspondence_weights(logits[idx], m['spread'])


def solve_weighted(X: torch.Tensor, uv: torch.Tensor, w: torch.Tensor, K: torch.Tensor, iters: int,
                   init: str = 'auto') -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted PnP in float64 for one problem. X (K, 3), uv (K, 2), w (K,), K (3, 3).

    init 'identity': start at the input guess (calibration: the cloud is already in the guessed
    camera frame); 'epnp': weighted EPnP; 'auto': both, keep the lower weighted reprojection cost.
    """
    X64, uv64, w64, K64 = X.double()[None], uv.double()[None], w.double()[None], K.double()[None]
    candidates = []
    if init in ('identity', 'auto'):
        candidates.append((torch.eye(3, dtype=torch.float64, device=X.device)[None],
                           torch.zeros(1, 3, dtype=torch.float64, device=X.device)))
    if init in ('epnp', 'auto'):
        try:
            candidates.append(weighted_epnp(X64, uv64, w64, K64))
        except RuntimeError:  # singular system (degenerate points): keep the other candidate
            pass
    if not candidates:
        raise ValueError(f"init must be 'identity', 'epnp' or 'auto', got {init!r}")
    with torch.no_grad():
        costs = []
        for R0, t0 in candidates:
            r, Xc = reprojection_residuals(R0, t0, X64, uv64, K64)
            c = (w64 * r.pow(2).sum(-1).clamp_max(1e6)).sum()
            c = c + 1e6 * (Xc[..., 2] <= 0).double().mean()  # prefer solutions in front of the camera
            costs.append(torch.nan_to_num(c, nan=float('inf')))
    R0, t0 = candidates[int(torch.stack(costs).argmin())]
    R, t = weighted_pnp(X64, uv64, w64, K64, iters=iters, R_init=R0.detach(), t_init=t0.detach())
    return R[0], t[0]


def estimate_pose(out: dict, b: int, points_xyz: torch.Tensor, K: torch.Tensor, num_keypoints: int,
                  pnp_iters: int, init: str = 'auto', inlier_px: float | None = None,
                  match_window: float = 0.0) -> PoseEstimate:
    """Pose of sample ``b`` of a forward pass. points_xyz (N, 3) input frame; K (3, 3) network image."""
    logits = out['point_overlap'][b]
    idx, m, w = soft_correspondences(out, b, points_xyz, K, num_keypoints, match_window)
    X = points_xyz[idx]
    R, t = solve_weighted(X, m['uv'], w, K, pnp_iters, init)
    T = pose_to_matrix(R[None], t[None])[0]
    inlier_px = inlier_px if inlier_px is not None else 2.0 * out['stride']
    with torch.no_grad():
        r, Xc = reprojection_residuals(R[None], t[None], X.double()[None], m['uv'].double()[None], K.double()[None])
        inlier = (r[0].norm(dim=-1) < inlier_px) & (Xc[0, :, 2] > 0)
        wd = w.detach().double()
        conf = (wd * inlier).sum() / wd.sum().clamp_min(1e-9) * torch.sigmoid(logits[idx].detach()).double().mean()
        conf = torch.nan_to_num(conf, nan=0.0).clamp(0, 1)
        if not torch.isfinite(T).all():
            conf = conf * 0
    return PoseEstimate(T=T, confidence=conf, idx=idx, uv=m['uv'], weights=w, inlier=inlier, spread=m['spread'])
