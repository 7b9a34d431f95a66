"""NCLR losses: overlap (points and pixels), matching (soft-match cross-entropy + expected-pixel L1),
pose (SmoothL1 on the rotation matrix and translation through the differentiable PnP)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import LossConfig, NetworkConfig
from .network import guess_cells, soft_match
from .pose import estimate_pose

MAX_MATCH_POINTS = 512


def robust_pose_loss(x: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
    """Smoothly saturating (Geman-McClure-like) so a wild early PnP solution cannot dominate."""
    return x / (1.0 + x / scale)


def pixel_overlap_target(uv: torch.Tensor, overlap: torch.Tensor, feat_hw: tuple[int, int], stride: int) -> torch.Tensor:
    """(h, w) float: 1 where at least one in-image point projects (true pose) into the cell."""
    h, w = feat_hw
    tgt = torch.zeros(h * w, device=uv.device)
    if overlap.any():
        cell = ((uv[overlap] + 0.5) / stride).floor().long()
        cx, cy = cell[:, 0].clamp(0, w - 1), cell[:, 1].clamp(0, h - 1)
        tgt[cy * w + cx] = 1.0
    return tgt.view(h, w)


def nclr_losses(out: dict, batch: dict, lcfg: LossConfig, ncfg: NetworkConfig, step: int,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Total loss and a dict of float scalars (losses, RRE deg, RTE m, overlap accuracy).

    batch: 'points' list of (Ni, 4), 'uv_gt' list of (Ni, 2), 'overlap_gt' list of (Ni,) bool,
    'K' (B, 3, 3), 'T_gt' (B, 4, 4) float64.
    """
    B = len(batch['points'])
    stride, feat_hw = out['stride'], out['feat_hw']
    dev = batch['K'].device
    zero = torch.zeros((), device=dev)
    L_ovl, L_match, L_l1, L_pose = zero, zero, zero, zero
    stats = {'rre_deg': [], 'rte_m': [], 'overlap_acc': [], 'pose_valid': 0}
    use_pose = lcfg.pose > 0 and step >= lcfg.pose_start_step
    for b in range(B):
        ov_gt = batch['overlap_gt'][b]
        uv_gt = batch['uv_gt'][b]
        logit_p = out['point_overlap'][b]
        pos = ov_gt.float().mean().clamp(0.05, 0.95)
        L_ovl = L_ovl + F.binary_cross_entropy_with_logits(logit_p, ov_gt.float(), pos_weight=(1 - pos) / pos)
        pix_t = pixel_overlap_target(uv_gt, ov_gt, feat_hw, stride)
        ppos = pix_t.mean().clamp(0.05, 0.95)
        L_ovl = L_ovl + F.binary_cross_entropy_with_logits(out['pixel_overlap'][b], pix_t, pos_weight=(1 - ppos) / ppos)
        stats['overlap_acc'].append(((logit_p > 0) == ov_gt).float().mean().item())
        idx = torch.nonzero(ov_gt).flatten()
        if len(idx) > 0:
            if len(idx) > MAX_MATCH_POINTS:
                perm = torch.randperm(len(idx), generator=generator)[:MAX_MATCH_POINTS].to(idx.device)
                idx = idx[perm]
            h, w = feat_hw
            cell = ((uv_gt[idx] + 0.5) / stride)
            cx = cell[:, 0].floor().long().clamp(0, w - 1)
            cy = cell[:, 1].floor().long().clamp(0, h - 1)
            centers = None
            if ncfg.match_window > 0:  # supervise only points whose true cell lies inside their window
                centers = guess_cells(batch['points'][b][idx, :3], batch['K'][b], stride)
                ok = (torch.stack([cx, cy], -1).to(centers.dtype) - centers).abs().amax(-1) <= ncfg.match_window
                idx, cx, cy, centers = idx[ok], cx[ok], cy[ok], centers[ok]
        if len(idx) > 0:
            m = soft_match(out['point_emb'][b][idx], out['pixel_emb'][b], out, centers, ncfg.match_window)
            L_match = L_match + F.cross_entropy(m['logits'], cy * w + cx)
            L_l1 = L_l1 + (m['uv'] - uv_gt[idx]).abs().sum(-1).div(stride).mean()
        if use_pose:
            est = estimate_pose(out, b, batch['points'][b][:, :3], batch['K'][b], ncfg.num_keypoints,
                                ncfg.pnp_iters, init=ncfg.pnp_init, match_window=ncfg.match_window)
            T_gt = batch['T_gt'][b].to(est.T.dtype)
            if torch.isfinite(est.T).all():
                lp = F.smooth_l1_loss(est.T[:3, :3], T_gt[:3, :3], reduction='sum') + \
                    lcfg.pose_trans_weight * F.smooth_l1_loss(est.T[:3, 3], T_gt[:3, 3], reduction='sum')
                L_pose = L_pose + robust_pose_loss(lp.float())
                stats['pose_valid'] += 1
                with torch.no_grad():
                    Rrel = est.T[:3, :3].t() @ T_gt[:3, :3]
                    c = ((torch.trace(Rrel) - 1) / 2).clamp(-1, 1)
                    stats['rre_deg'].append(math.degrees(math.acos(float(c))))
                    stats['rte_m'].append(float((est.T[:3, 3] - T_gt[:3, 3]).norm()))
    total = (lcfg.overlap * L_ovl + lcfg.matching * L_match + lcfg.matching_l1 * L_l1 + lcfg.pose * L_pose) / B
    total_f = float(total.detach())
    scalars = {'loss': total_f, 'loss_overlap': float(L_ovl.detach()) / B, 'loss_match': float(L_match.detach()) / B,
               'loss_match_l1': float(L_l1.detach()) / B, 'loss_pose': float(L_pose.detach()) / B,
               'overlap_acc': sum(stats['overlap_acc']) / max(1, len(stats['overlap_acc']))}
    if stats['rre_deg']:
        scalars['rre_deg'] = sum(stats['rre_deg']) / len(stats['rre_deg'])
        scalars['rte_m'] = sum(stats['rte_m']) / len(stats['rte_m'])
    return total, scalars
