"""Gross rotation errors with the learned calibrator: many rotated starts, agreement picks
(ros_ncal/nclr/multistart.py), on a held-out frame of the real KITTI drive with the shipped network."""
import numpy as np
import pytest

from ros_ncal.assets import NCLR_CALIB
from ros_ncal.calib import make_calibrator
from ros_ncal.geometry import make_T, pose_error, rotation_angle_deg, rotvec_to_matrix
from ros_ncal.nclr.multistart import MultiStartConfig, cluster_by_rotation, start_rotations

DRIVE = 'kitti_raw/2011_09_26/2011_09_26_drive_sfnd_sync'
CHECKPOINT = NCLR_CALIB


def test_starts_cover_the_gross_range():
    starts = start_rotations(12.0, corners=True)
    assert len(starts) == 15
    angles = sorted(rotation_angle_deg(R) for R in starts)
    assert angles[0] == pytest.approx(0.0, abs=1e-9) and all(a == pytest.approx(12.0) for a in angles[1:])
    assert len(start_rotations(12.0, corners=False)) == 7
    # any rotation up to 20 deg has a start within 12 deg (the network's trained range is 10 deg)
    rng = np.random.default_rng(0)
    for _ in range(200):
        ax = rng.normal(size=3)
        R = rotvec_to_matrix(ax / np.linalg.norm(ax) * np.deg2rad(rng.uniform(0, 20)))
        assert min(rotation_angle_deg(R @ S.T) for S in starts) < 12.0


def test_agreement_prefers_the_cluster_over_one_confident_outlier():
    truth = np.eye(4)
    near = [make_T(rotvec_to_matrix(np.deg2rad([0.3 * k, 0, 0])), np.zeros(3)) for k in range(3)]
    outlier = make_T(rotvec_to_matrix(np.deg2rad([0, 15, 0])), np.zeros(3))
    members, score = cluster_by_rotation(near + [outlier], [0.5, 0.5, 0.5, 0.9], agree_deg=2.0)
    assert sorted(members) == [0, 1, 2] and score == pytest.approx(1.5)
    assert rotation_angle_deg(near[0][:3, :3] @ truth[:3, :3].T) < 1


def test_config_rejects_nonsense():
    with pytest.raises(ValueError):
        MultiStartConfig(offset_deg=0.0).validate()
    with pytest.raises(ValueError):
        MultiStartConfig.from_dict({'top_k': 0})


@pytest.mark.slow
def test_recovers_a_17_degree_rotation_error_on_a_held_out_drive_frame(shared_data):
    from ros_ncal.data.readers.kitti_raw import open_kitti_raw_drive, read_kitti_raw_frame
    sample = read_kitti_raw_frame(open_kitti_raw_drive(shared_data / DRIVE), 61)   # held out (57-76)
    T_true = sample.T_cam_lidar
    D = make_T(rotvec_to_matrix(np.deg2rad(17.0) * np.array([0.6, -0.64, 0.48])), np.array([0.02, -0.02, 0.01]))
    T_init = D @ T_true
    wide = make_calibrator('nclr_wide', checkpoint=str(CHECKPOINT))
    res = wide.estimate(sample, T_init)
    rre, _ = pose_error(res.T_cam_lidar, T_true)
    assert res.success, res.message
    assert res.extras['starts'] == 15 and res.extras['cluster_size'] >= 2
    assert rre < 3.0, (rre, res.extras)
