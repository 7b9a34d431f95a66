"""Differentiable weighted PnP: exactness, robustness to weights, gradient checks in float64."""
import torch

from ros_ncal.nclr.pnp import refine_pose_lm, so3_exp, weighted_epnp, weighted_pnp


def _problem(B=2, N=40, seed=0, noise=0.0):
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[700.0, 0, 600], [0, 700, 180], [0, 0, 1]], dtype=torch.float64).expand(B, 3, 3)
    Xc = torch.rand(B, N, 3, dtype=torch.float64, generator=g) * torch.tensor([20, 4, 30.0]) + torch.tensor([-10, -2, 5.0])
    R = so3_exp(0.5 * torch.randn(B, 3, dtype=torch.float64, generator=g))
    t = torch.randn(B, 3, dtype=torch.float64, generator=g)
    X = (Xc - t[:, None]) @ R
    uv = Xc[..., :2] / Xc[..., 2:3] * 700 + torch.tensor([600.0, 180])
    uv = uv + noise * torch.randn(uv.shape, dtype=torch.float64, generator=g)
    w = torch.rand(B, N, dtype=torch.float64, generator=g) + 0.2
    return X, uv, w, K, R, t


def test_epnp_is_exact_on_noise_free_data():
    X, uv, w, K, R, t = _problem()
    R0, t0 = weighted_epnp(X, uv, w, K)
    assert torch.allclose(R0, R, atol=1e-8) and torch.allclose(t0, t, atol=1e-7)


def test_zero_weights_ignore_outliers():
    X, uv, w, K, R, t = _problem(N=60, noise=0.5)
    uv_bad = uv.clone()
    uv_bad[:, :15] += 200.0  # gross outliers
    w_out = w.clone()
    w_out[:, :15] = 0.0
    R1, t1 = weighted_pnp(X, uv_bad, w_out, K)
    R2, t2 = weighted_pnp(X, uv_bad, w, K)
    err_weighted = (t1 - t).norm(dim=-1).max()
    err_unweighted = (t2 - t).norm(dim=-1).max()
    assert err_weighted < 0.1
    assert err_unweighted > 5 * err_weighted


def test_lm_refines_a_perturbed_start():
    X, uv, w, K, R, t = _problem(noise=0.0)
    R0 = so3_exp(torch.full((2, 3), 0.05, dtype=torch.float64)) @ R
    t0 = t + 0.3
    R1, t1 = refine_pose_lm(R0, t0, X, uv, w, K, iters=8)
    assert torch.allclose(R1, R, atol=1e-8) and torch.allclose(t1, t, atol=1e-6)


def test_gradcheck_epnp_and_full_solver():
    X, uv, w, K, _, _ = _problem(B=1, N=8, noise=1.0)

    def epnp(uv_, w_):
        R, t = weighted_epnp(X, uv_, w_, K)
        return torch.cat([R.reshape(1, -1), t], -1)

    def full(uv_, w_):
        R, t = weighted_pnp(X, uv_, w_, K, iters=4)
        return torch.cat([R.reshape(1, -1), t], -1)

    uv_ = uv.clone().requires_grad_(True)
    w_ = w.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(epnp, (uv_, w_), eps=1e-6, atol=1e-5, rtol=1e-3)
    assert torch.autograd.gradcheck(full, (uv_, w_), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_gradients_point_towards_the_truth():
    """A gradient step on the 2D targets of a biased problem reduces the pose error."""
    X, uv, w, K, R, t = _problem(B=1, N=30)
    uv_b = (uv + torch.tensor([15.0, 0.0])).requires_grad_(True)
    R1, t1 = weighted_pnp(X, uv_b, w, K)
    loss = (t1 - t).pow(2).sum() + (R1 - R).pow(2).sum()
    loss.backward()
    with torch.no_grad():
        R2, t2 = weighted_pnp(X, uv_b - 5.0 * uv_b.grad / uv_b.grad.norm(), w, K)
        loss2 = (t2 - t).pow(2).sum() + (R2 - R).pow(2).sum()
    assert loss2 < loss
