"""The NCLR calibrator never raises or returns NaN on bad input, and keeps the initial guess then."""
import numpy as np
import pytest
import torch

from ros_ncal.calib import make_calibrator
from ros_ncal.data.readers.kitti import read_kitti_frame
from ros_ncal.geometry import is_rigid
from ros_ncal.nclr.calibrator import NCLRCalibrator
from ros_ncal.nclr.config import NCLRConfig
from ros_ncal.nclr.network import NCLRNet
from ros_ncal.train.pretrain import save_nclr

from support import TINY


@pytest.fixture(scope='module')
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = NCLRConfig.from_yaml(TINY)
    path = tmp_path_factory.mktemp('nclr') / 'nclr.pt'
    save_nclr(NCLRNet(cfg.network), cfg, path)
    return path


@pytest.fixture(scope='module')
def frame(kitti_dir):
    return read_kitti_frame(kitti_dir / 'training', '000002')


def _bad_inputs(s):
    rng = np.random.default_rng(0)
    far_plane = np.concatenate([rng.uniform([200, -50, -1], [200.001, 50, 1], (4000, 3)),
                                rng.uniform(0, 1, (4000, 1))], 1)
    return {
        'black image': s.replace(image=np.zeros_like(s.image)),
        'saturated image': s.replace(image=np.full_like(s.image, 255)),
        'too few points': s.replace(points=s.points[:40]),
        'points behind the camera': s.replace(points=s.points * np.array([-1, 1, 1, 1], np.float32)),
        'all points on one far plane': s.replace(points=far_plane),
    }


def test_bad_input_gives_failure_not_exception(tiny_ckpt, frame):
    cal = NCLRCalibrator.from_checkpoint(tiny_ckpt)
    for name, s in _bad_inputs(frame).items():
        res = cal.estimate(s, frame.T_cam_lidar)
        assert not res.success, name
        assert res.confidence < 0.2, name
        assert np.array_equal(res.T_cam_lidar, frame.T_cam_lidar), name
        assert res.message, name


def test_estimate_is_finite_and_rigid_on_a_real_frame(tiny_ckpt, frame):
    cal = make_calibrator('nclr', checkpoint=str(tiny_ckpt))
    res = cal.estimate(frame, frame.T_cam_lidar)
    assert np.isfinite(res.T_cam_lidar).all() and is_rigid(res.T_cam_lidar, atol=1e-4)
    assert 0.0 <= res.confidence <= 1.0
    assert 'latency_s' in res.extras


def test_shipped_calibrator_reduces_rotation_error_on_held_out_synthetic_frames():
    """The shipped checkpoint (trained on synthetic seeds 11/12) on frames of the default seed."""

    from ros_ncal.calib import evaluate_calibrators
    from ros_ncal.calib.result import NoCorrection
    from ros_ncal.data.synthetic import SyntheticWorld
    from ros_ncal.assets import NCLR_CALIB as ckpt
    world = SyntheticWorld()
    samples = [world.sample(i) for i in (100, 101, 102)]
    rep = evaluate_calibrators(samples, {'none': NoCorrection(), 'nclr': NCLRCalibrator.from_checkpoint(ckpt)},
                               preset='calib', trials=2)
    assert rep.summary['nclr']['rre_mean_deg'] < 0.7 * rep.summary['none']['rre_mean_deg']
