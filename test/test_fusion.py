"""Multi-frame extrinsic fusion: robustness to gross outliers, uncertainty that shrinks with data."""
import numpy as np
import pytest

from ros_ncal.calib import FusionConfig, OnlineExtrinsicFilter, fuse_extrinsics
from ros_ncal.geometry import make_T, pose_error, random_perturbation, rotvec_to_matrix

T_TRUE = make_T(rotvec_to_matrix([1.2, -1.2, 1.2]), [0.27, -0.08, -0.06])


def noisy(rng, n, outlier_frac=0.2):
    Ts, is_out = [], []
    for _ in range(n):
        out = rng.random() < outlier_frac
        D = random_perturbation(rng, 30, 1.0, 5, 0.3) if out else random_perturbation(rng, 0.5, 0.03)
        Ts.append(T_TRUE @ D)
        is_out.append(out)
    return np.stack(Ts), np.array(is_out)


def test_recovers_truth_with_20_percent_gross_outliers():
    rng = np.random.default_rng(0)
    Ts, is_out = noisy(rng, 60)
    assert 6 <= is_out.sum() <= 20
    res = fuse_extrinsics(Ts)
    rre, rte = pose_error(res.T, T_TRUE)
    assert rre < 0.15 and rte < 0.01
    assert not np.any(res.inliers & is_out)                   # every gross outlier rejected
    assert res.inliers[~is_out].mean() > 0.9
    # a plain mean would be pulled away by the outliers: the robust one must be much better
    naive_t = Ts[:, :3, 3].mean(0)
    assert np.linalg.norm(naive_t - T_TRUE[:3, 3]) > 3 * rte
    assert np.isfinite(res.rot_std_deg) and res.rot_std_deg < res.rot_spread_deg


def test_uncertainty_shrinks_with_more_frames():
    rng = np.random.default_rng(1)
    small = fuse_extrinsics(noisy(rng, 10)[0])
    large = fuse_extrinsics(noisy(rng, 160)[0])
    assert large.rot_std_deg < 0.5 * small.rot_std_deg
    assert large.trans_std_m < 0.5 * small.trans_std_m
    assert pose_error(large.T, T_TRUE)[0] < 0.1
    one = fuse_extrinsics(T_TRUE[None])
    assert one.rot_std_deg == float('inf') and np.allclose(one.T, T_TRUE)


def test_weights_and_bad_input():
    rng = np.random.default_rng(2)
    Ts, _ = noisy(rng, 20, 0.0)
    wrong = T_TRUE @ make_T(rotvec_to_matrix([0, 0, 0.02]), [0, 0, 0])
    Ts2 = np.concatenate([Ts, np.repeat(wrong[None], 20, 0)])
    w = np.r_[np.ones(20), np.full(20, 1e-3)]
    assert pose_error(fuse_extrinsics(Ts2, w).T, T_TRUE)[0] < 0.3
    with pytest.raises(ValueError, match='not rigid'):
        fuse_extrinsics(np.stack([T_TRUE, np.diag([1.0, 1.0, -1.0, 1.0])]))
    with pytest.raises(ValueError):
        fuse_extrinsics(np.zeros((0, 4, 4)))
    with pytest.raises(ValueError, match='weights'):
        fuse_extrinsics(Ts, np.zeros(20))


def test_online_filter_bounded_and_gated():
    f = OnlineExtrinsicFilter(FusionConfig(window=25, min_confidence=0.3))
    assert f.estimate() is None and f.count == 0
    rng = np.random.default_rng(3)
    Ts, _ = noisy(rng, 60)
    for T in Ts:
        assert f.push(T, 0.8)
    assert not f.push(Ts[0], 0.1)                      # below min_confidence
    assert not f.push(np.full((4, 4), np.nan), 1.0)    # not a transform
    assert f.count == 25 and f.n_rejected == 2 and f.n_pushed == 62
    est = f.estimate()
    assert est.n_total == 25 and pose_error(est.T, T_TRUE)[0] < 0.3
    f.reset()
    assert f.count == 0 and f.estimate() is None
