"""Classical edge-alignment calibrator on real KITTI frames: recovers small errors, never raises."""
import numpy as np
import pytest

from ros_ncal.calib import ClassicalCalibConfig, EdgeAlignmentCalibrator, calibrator_input, make_calibrator
from ros_ncal.calib.classical import discontinuity_weights
from ros_ncal.data.readers.kitti import KittiReaderConfig, read_kitti_frame
from ros_ncal.geometry import pose_error, random_perturbation


@pytest.fixture(scope='module')
def frame(kitti_dir):
    return read_kitti_frame(kitti_dir / 'training', '000000', KittiReaderConfig(require_labels=False))


@pytest.fixture(scope='module')
def calibrator():
    return EdgeAlignmentCalibrator(ClassicalCalibConfig.from_yaml('config/calib_eval.yaml'))


def test_recovers_small_rotation_error_on_real_kitti_frame(frame, calibrator):
    rng = np.random.default_rng(7)
    T_true = frame.T_cam_lidar
    errors = []
    for _ in range(3):
        D = random_perturbation(rng, 1.5, 0.05, 1.5, 0.05)      # exactly 1.5 deg and 5 cm
        T_init = T_true @ D
        res = calibrator.estimate(calibrator_input(frame, T_init), T_init)
        rre, rte = pose_error(res.T_cam_lidar, T_true)
        errors.append(rre)
        assert rre < 1.0, res.message                            # no correction: 1.5 deg
        assert rte < 0.08                                        # rotation-only search keeps the translation
        assert res.extras['n_edge_points'] > 500 and res.extras['objective'] > res.extras['objective_init']
    assert np.median(errors) < 0.6
    # starting at the true extrinsic it stays close and reports a confident, successful estimate
    res = calibrator.estimate(frame, T_true)
    assert pose_error(res.T_cam_lidar, T_true)[0] < 0.5
    assert res.success and res.confidence >= 0.35


@pytest.mark.parametrize('value', [0, 255])
def test_black_or_saturated_image_fails_cleanly(frame, calibrator, value):
    T_init = frame.T_cam_lidar @ random_perturbation(np.random.default_rng(0), 2, 0.1)
    bad = frame.replace(image=np.full_like(frame.image, value))
    res = calibrator.estimate(bad, T_init)
    assert not res.success and res.confidence == 0.0
    assert np.array_equal(res.T_cam_lidar, T_init) and 'edges' in res.message


def test_empty_or_useless_cloud_and_bad_init_fail_cleanly(frame, calibrator):
    T_init = frame.T_cam_lidar
    for pts, why in [(np.zeros((0, 4), np.float32), 'too few'),
                     (frame.points[:50], 'too few'),
                     (frame.points[frame.points[:, 0] < -5], 'too few')]:        # all behind the camera
        res = calibrator.estimate(frame.replace(points=pts), T_init)
        assert not res.success and res.confidence == 0.0 and why in res.message
        assert np.array_equal(res.T_cam_lidar, T_init)
    res = calibrator.estimate(frame, np.full((4, 4), np.nan))
    assert not res.success and 'not finite' in res.message
    res = calibrator.estimate(frame, np.eye(3))
    assert not res.success
    assert not make_calibrator('classical').estimate(frame.replace(points=frame.points[:10]), T_init).success


def test_unordered_cloud_rebuilds_scan_lines(frame):
    cfg = ClassicalCalibConfig()
    w, mode = discontinuity_weights(frame.points, cfg)
    assert mode == 'scan'
    perm = np.random.default_rng(0).permutation(len(frame.points))
    w2, mode2 = discontinuity_weights(frame.points[perm], cfg)
    assert mode2 == 'rebuilt'
    n1, n2 = int((w > 0).sum()), int((w2 > 0).sum())
    assert n1 > 1000 and 0.5 * n1 < n2 < 2.0 * n1
    # the edge points found in both orderings mostly coincide
    both = np.count_nonzero((w[perm] > 0) & (w2 > 0))
    assert both > 0.5 * min(n1, n2)
