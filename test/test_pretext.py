"""Pretext sampling keeps the ground truth exact under perturbation, resize and mirroring."""
import numpy as np

from ros_ncal.data.sample import Sample
from ros_ncal.geometry import make_T, project_points, transform_points
from ros_ncal.nclr.config import InputConfig, PerturbationConfig
from ros_ncal.nclr.pretext import make_pretext, mirror_x


def _sample(seed=0):
    rng = np.random.default_rng(seed)
    pts = np.concatenate([rng.uniform([2, -10, -2], [40, 10, 3], (5000, 3)), rng.uniform(0, 1, (5000, 1))], 1)
    T = make_T(np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]]), [0.05, -0.08, -0.3])
    K = np.array([[720.0, 0, 610], [0, 720, 175], [0, 0, 1]])
    return Sample(points=pts, image=rng.integers(0, 255, (375, 1242, 3), dtype=np.uint8), K=K, T_cam_lidar=T)


def _check_truth(item, s):
    # The truth maps the input cloud exactly where the true extrinsic maps the original cloud.
    uv_true, z = project_points(transform_points(item.T_cam_in, item.points[:, :3]), item.K)
    assert np.allclose(uv_true[item.overlap_gt], item.uv_gt[item.overlap_gt], atol=1e-3)
    assert item.overlap_gt.mean() > 0.2


def test_calib_preset_truth_is_consistent():
    s = _sample()
    rng = np.random.default_rng(1)
    for _ in range(5):
        item = make_pretext(s, rng, PerturbationConfig(preset='calib', max_angle_deg=10, max_trans_m=0.5),
                            InputConfig(image_hw=(96, 320), max_points=3000, color_jitter=0))
        _check_truth(item, s)
        # T_cam_in @ T_in_lidar recovers the true extrinsic
        assert np.allclose(item.T_cam_in @ item.T_in_lidar, s.T_cam_lidar, atol=1e-9)
        assert len(item.points) <= 3000


def test_wide_preset_and_mirror_keep_truth():
    s = _sample(2)
    rng = np.random.default_rng(3)
    item = make_pretext(s, rng, PerturbationConfig(preset='wide'), InputConfig(image_hw=(96, 320), max_points=4000,
                                                                               color_jitter=0))
    assert np.allclose(item.T_cam_in @ item.T_in_lidar, s.T_cam_lidar, atol=1e-9)
    m = mirror_x(item)
    uv, z = project_points(transform_points(m.T_cam_in, m.points[:, :3]), m.K)
    assert np.allclose(uv[m.overlap_gt], m.uv_gt[m.overlap_gt], atol=1e-3)
    assert np.linalg.det(m.T_cam_in[:3, :3]) > 0.99
