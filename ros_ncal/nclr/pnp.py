"""Differentiable weighted PnP: weighted EPnP initialisation + Levenberg-Marquardt refinement.

All functions are batched over B problems and differentiable (autograd) with respect to the
2D targets and the per-correspondence weights. Poses map the 3D points' frame into the camera
optical frame: ``x_cam = R @ X + t``; pixels ``u = K x_cam / z``.

Shapes: X (B, N, 3) 3D points, uv (B, N, 2) pixel targets, w (B, N) non-negative weights,
K (B, 3, 3). Returns R (B, 3, 3), t (B, 3).
"""
from __future__ import annotations

import torch


def _weighted_mean(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x (B, N, D), w (B, N) -> (B, D)."""
    return (x * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1e-12)


def _control_points(X: torch.Tensor) -> torch.Tensor:
    """EPnP control points: centroid plus the principal axes scaled by their spread. (B, 4, 3).

    They depend on the 3D points only (not on the weights), so the solution's gradient with
    respect to the weights flows only through the weighted system.
    """
    c0 = X.mean(1)
    D = X - c0[:, None]
    cov = D.transpose(1, 2) @ D / X.shape[1]
    evals, evecs = torch.linalg.eigh(cov + 1e-9 * torch.eye(3, dtype=X.dtype, device=X.device))
    scale = evals.clamp_min(1e-12).sqrt()
    axes = evecs.transpose(1, 2) * scale[..., None]  # rows = scaled axes
    return torch.cat([c0[:, None], c0[:, None] + axes], dim=1)


def _barycentric(X: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """alphas (B, N, 4) with X = sum_j alpha_j C_j and sum_j alpha_j = 1."""
    A = torch.cat([C.transpose(1, 2), torch.ones_like(C[:, :, :1]).transpose(1, 2)], dim=1)  # (B, 4, 4)
    Xh = torch.cat([X, torch.ones_like(X[..., :1])], dim=-1)  # (B, N, 4)
    return torch.linalg.solve(A, Xh.transpose(1, 2)).transpose(1, 2)


def _procrustes(P_src: torch.Tensor, P_dst: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted rigid fit (Kabsch): R, t minimising sum w |R P_src + t - P_dst|^2."""
    ms, md = _weighted_mean(P_src, w), _weighted_mean(P_dst, w)
    H = ((P_src - ms[:, None]) * w[..., None]).transpose(1, 2) @ (P_dst - md[:, None])
    U, _, Vh = torch.linalg.svd(H)
    d = torch.sign(torch.linalg.det(Vh.transpose(1, 2) @ U.transpose(1, 2)))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=-1))
    R = Vh.transpose(1, 2) @ D @ U.transpose(1, 2)
    t = md - (R @ ms[..., None])[..., 0]
    return R, t


def weighted_epnp(X: torch.Tensor, uv: torch.Tensor, w: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted EPnP (single null-space vector case) followed by a weighted Procrustes fit.

    The 2N x 12 EPnP system rows of each correspondence are scaled by sqrt(w); the camera-frame
    control points come from the eigenvector of M^T W M with the smallest eigenvalue, scaled so
    that control-point distances match the 3D ones and depths are positive.
    """
    C = _control_points(X)
    alpha = _barycentric(X, C)  # (B, N, 4)
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]
    u, v = uv[..., 0], uv[..., 1]
    zero = torch.zeros_like(u)
    rows_u, rows_v = [], []
    for j in range(4):
        a = alpha[..., j]
        rows_u += [a * fx, zero, a * (cx - u)]
        rows_v += [zero, a * fy, a * (cy - v)]
    M = torch.stack([torch.stack(rows_u, -1), torch.stack(rows_v, -1)], dim=2).reshape(X.shape[0], -1, 12)
    sw = w.clamp_min(0).repeat_interleave(2, dim=1).sqrt()
    Mw = M * sw[..., None]
    MtM = Mw.transpose(1, 2) @ Mw
    _, evecs = torch.linalg.eigh(MtM)
    Cc = evecs[..., 0].reshape(-1, 4, 3)
    # scale: match pairwise control-point distances (least squares on beta)
    idx_a, idx_b = torch.triu_indices(4, 4, 1)
    dc = (Cc[:, idx_a] - Cc[:, idx_b]).norm(dim=-1)
    dw = (C[:, idx_a] - C[:, idx_b]).norm(dim=-1)
    beta = (dc * dw).sum(-1) / (dc * dc).sum(-1).clamp_min(1e-12)
    Xc = alpha @ (Cc * beta[:, None, None])
    sign = torch.sign(_weighted_mean(Xc[..., 2:3], w)[..., 0])
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    Xc = Xc * sign[:, None, None]
    return _procrustes(X, Xc, w)


def so3_exp(phi: torch.Tensor) -> torch.Tensor:
    """Rodrigues: (B, 3) axis-angle -> (B, 3, 3), smooth at zero."""
    theta2 = (phi * phi).sum(-1, keepdim=True)
    theta = (theta2 + 1e-24).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / (theta2 + 1e-24))
    Kx = skew(phi)
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device).expand_as(Kx)
    return eye + a[..., None] * Kx + b[..., None] * (Kx @ Kx)


def skew(v: torch.Tensor) -> torch.Tensor:
    """(B, 3) -> (B, 3, 3) cross-product matrices."""
    z = torch.zeros_like(v[..., 0])
    return torch.stack([torch.stack([z, -v[..., 2], v[..., 1]], -1),
                        torch.stack([v[..., 2], z, -v[..., 0]], -1),
                        torch.stack([-v[..., 1], v[..., 0], z], -1)], -2)


def reprojection_residuals(R, t, X, uv, K, min_depth: float = 1e-3):
    """Pixel residuals (B, N, 2) and camera points (B, N, 3) for pose (R, t)."""
    Xc = X @ R.transpose(1, 2) + t[:, None]
    z = Xc[..., 2:3].clamp_min(min_depth)
    p = Xc[..., :2] / z
    proj = p * torch.stack([K[:, 0, 0], K[:, 1, 1]], -1)[:, None] + torch.stack([K[:, 0, 2], K[:, 1, 2]], -1)[:, None]
    return proj - uv, Xc


def _weighted_cost(R, t, X, uv, w, K, min_depth, t_prior=None, prior_weight=None):
    r, Xc = reprojection_residuals(R, t, X, uv, K, min_depth)
    cost = (w * r.pow(2).sum(-1)).sum(-1)
    if t_prior is not None:
        cost = cost + prior_weight * (t - t_prior).pow(2).sum(-1)
    return cost


MAX_STEP_ROT = 0.5    # rad per LM step
MAX_STEP_TRANS = 5.0  # m per LM step


def _bounded_step(delta: torch.Tensor) -> torch.Tensor:
    """Scale each (rotation, translation) half of an se(3) step into its trust bound, so that a
    near-singular system cannot produce inf/NaN poses (whose gradients would poison the batch)."""
    rn = delta[:, :3].norm(dim=-1, keepdim=True)
    tn = delta[:, 3:].norm(dim=-1, keepdim=True)
    rs = torch.where(rn > MAX_STEP_ROT, MAX_STEP_ROT / rn.clamp_min(1e-12), torch.ones_like(rn))
    ts = torch.where(tn > MAX_STEP_TRANS, MAX_STEP_TRANS / tn.clamp_min(1e-12), torch.ones_like(tn))
    return torch.cat([delta[:, :3] * rs, delta[:, 3:] * ts], -1)


def refine_pose_lm(R, t, X, uv, w, K, iters: int = 10, damping: float = 1e-3, min_depth: float = 1e-3,
                   t_prior: torch.Tensor | None = None, prior_weight: torch.Tensor | None = None,
                   fix_translation: bool = False):
    """Weighted Levenberg-Marquardt on the reprojection error, left-multiplicative se(3) updates.

    A step is accepted per problem only when it lowers the weighted cost (else the damping grows
    tenfold), so a bad start or bad correspondences can never make the pose worse than the start.
    Every operation is differentiable tensor algebra, so gradients flow to uv and w through the
    accepted steps.

    t_prior (B, 3) / prior_weight (B,): adds prior_weight * |t - t_prior|^2 to the cost (a Gaussian
    prior on the translation, for weakly constrained translations; the rotation coupling of the
    prior's Jacobian is neglected in the normal equations, the acceptance test uses the exact cost).
    fix_translation: rotation-only refinement (translation steps are zeroed).
    """
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    B = X.shape[0]
    lam = torch.full((B,), damping, dtype=X.dtype, device=X.device)
    cost = _weighted_cost(R, t, X, uv, w, K, min_depth, t_prior, prior_weight)
    for _ in range(iters):
        r, Xc = reprojection_residuals(R, t, X, uv, K, min_depth)
        x, y = Xc[..., 0], Xc[..., 1]
        z = Xc[..., 2].clamp_min(min_depth)
        iz, iz2 = 1 / z, 1 / (z * z)
        zero = torch.zeros_like(x)
        # d(u)/d(x_cam) for the left-perturbation x_cam' = x_cam + dphi x x_cam + drho
        J_u = torch.stack([fx * iz, zero, -fx * x * iz2], -1)  # (B, N, 3)
        J_v = torch.stack([zero, fy * iz, -fy * y * iz2], -1)
        Xs = skew(Xc.reshape(-1, 3)).reshape(*Xc.shape[:2], 3, 3)
        Ju = torch.cat([-(J_u[..., None, :] @ Xs)[..., 0, :], J_u], -1)  # (B, N, 6): [dphi, drho]
        Jv = torch.cat([-(J_v[..., None, :] @ Xs)[..., 0, :], J_v], -1)
        J = torch.stack([Ju, Jv], 2).reshape(B, -1, 6)
        res = r.reshape(B, -1)
        ww = w.repeat_interleave(2, dim=1)
        H = (J * ww[..., None]).transpose(1, 2) @ J
        g = ((J * ww[..., None]) * res[..., None]).sum(1)
        if t_prior is not None:
            H = H + torch.diag_embed(torch.cat([torch.zeros_like(t), prior_weight[:, None].expand_as(t)], -1))
            g = g + torch.cat([torch.zeros_like(t), prior_weight[:, None] * (t - t_prior)], -1)
        Hd = H + lam[:, None, None] * torch.diag_embed(H.diagonal(dim1=1, dim2=2) + 1e-6)
        delta, _ = torch.linalg.solve_ex(Hd, -g[..., None])
        if fix_translation:  # solve the rotation block only
            delta, _ = torch.linalg.solve_ex(Hd[:, :3, :3], -g[:, :3, None])
            delta = torch.cat([delta, torch.zeros_like(delta)], 1)
        delta = _bounded_step(torch.nan_to_num(delta[..., 0], nan=0.0, posinf=0.0, neginf=0.0))
        dR = so3_exp(delta[:, :3])
        R_new = dR @ R
        t_new = (dR @ t[..., None])[..., 0] + delta[:, 3:]
        if fix_translation:
            t_new = t
        cost_new = _weighted_cost(R_new, t_new, X, uv, w, K, min_depth, t_prior, prior_weight)
        accept = (cost_new <= cost) & torch.isfinite(cost_new)
        a = accept[:, None]
        R = torch.where(a[..., None], R_new, R)
        t = torch.where(a, t_new, t)
        cost = torch.where(accept, cost_new, cost)
        lam = torch.where(accept, lam * 0.3, lam * 10).clamp(1e-9, 1e9)
    return R, t


def weighted_pnp(X, uv, w, K, iters: int = 10, R_init=None, t_init=None, detach_init: bool = False):
    """Weighted PnP: EPnP initial pose (unless R_init/t_init are given), then LM refinement.

    Returns R (B, 3, 3), t (B, 3).
    """
    if R_init is None:
        R_init, t_init = weighted_epnp(X, uv, w, K)
    if detach_init:
        R_init, t_init = R_init.detach(), t_init.detach()
    return refine_pose_lm(R_init, t_init, X, uv, w, K, iters=iters)


def pose_to_matrix(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3), (B, 3) -> (B, 4, 4)."""
    T = torch.zeros(R.shape[0], 4, 4, dtype=R.dtype, device=R.device)
    T[:, :3, :3] = R
    T[:, :3, 3] = t
    T[:, 3, 3] = 1
    return T
