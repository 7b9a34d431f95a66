"""KITTI raw drive (../shared/data/kitti_raw): the reader in the Sample contract, `ncal prepare kitti-raw`,
`ncal bag write-kitti-raw` (a 10 Hz bag with the nominal on /tf_static, the truth only beside the bag) and
`ncal calibrate` reading that truth."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from ros_ncal.bag import BagTopics, bag_summary, read_messages
from ros_ncal.bag.kitti_raw import parse_frame_range
from ros_ncal.cli import main as ncal
from ros_ncal.data.kitti_files import read_kitti_calib, read_kitti_raw_calib
from ros_ncal.data.readers.kitti_raw import (KittiRawReaderConfig, iter_kitti_raw_samples, open_kitti_raw_drive)
from ros_ncal.data.readers.rosbag import iter_rosbag_samples
from ros_ncal.data.sample import Sample
from ros_ncal.data.shards import ShardDataset, SkipRecord
from ros_ncal.geometry import T_to_xyz_quat, invert, pose_error, project_lidar
from ros_ncal.msgcodec import transform_stamped_to_matrix


@pytest.fixture(scope='module')
def drive_dir(shared_data):
    d = shared_data / 'kitti_raw' / '2011_09_26' / '2011_09_26_drive_sfnd_sync'
    assert d.is_dir(), d
    return d


def _values(path, key):
    for line in path.read_text().splitlines():
        if line.startswith(key + ':'):
            return np.array([float(x) for x in line.split(':', 1)[1].split()])
    raise KeyError(key)


def test_raw_calib_is_the_rectified_camera2_chain(drive_dir, kitti_dir):
    day = drive_dir.parent
    c = read_kitti_raw_calib(day)
    P = _values(day / 'calib_cam_to_cam.txt', 'P_rect_02').reshape(3, 4)
    R0 = np.eye(4)
    R0[:3, :3] = _values(day / 'calib_cam_to_cam.txt', 'R_rect_00').reshape(3, 3)
    Tr = np.eye(4)
    Tr[:3, :3] = _values(day / 'calib_velo_to_cam.txt', 'R').reshape(3, 3)
    Tr[:3, 3] = _values(day / 'calib_velo_to_cam.txt', 'T')
    np.testing.assert_allclose(c['K'], P[:, :3])
    p = np.c_[np.random.default_rng(0).uniform([5, -10, -2], [40, 10, 2], (50, 3)), np.ones(50)]   # ahead, homog.
    a = (c['K'] @ (c['T_cam_lidar'] @ p.T)[:3]).T
    b = (P @ R0 @ Tr @ p.T).T
    np.testing.assert_allclose(a[:, :2] / a[:, 2:], b[:, :2] / b[:, 2:], atol=1e-3)   # same pixels
    assert tuple(c['image_hw']) == (375, 1242)
    # the object benchmark's 2011_09_26 frames carry the same calibration: one convention for both readers
    obj = read_kitti_calib(kitti_dir / 'training' / 'calib' / '000001.txt')
    np.testing.assert_allclose(obj['T_cam_lidar'], c['T_cam_lidar'], atol=1e-6)
    np.testing.assert_allclose(obj['K'], c['K'], atol=1e-6)
    with pytest.raises(ValueError, match='P_rect_05'):
        read_kitti_raw_calib(day, camera=5)


def test_reader_frames_shapes_stamps_and_points_in_view(drive_dir):
    drive = open_kitti_raw_drive(drive_dir)
    assert len(drive.frames) == 77 and drive.frames[0] == '0000000000' and drive.stamps_source.startswith('synth')
    assert np.all(np.diff(drive.stamps_ns) == 100_000_000)
    items = list(iter_kitti_raw_samples(drive_dir, frames=slice(10, 12)))
    assert [s.meta['frame'] for s in items] == ['0000000010', '0000000011']
    for s in items:
        assert isinstance(s, Sample) and s.image.shape == (375, 1242, 3) and s.points.shape[1] == 4
        assert s.num_points > 100_000 and s.frame_ids == ('velodyne', 'camera2_optical')
        assert s.stamp_ns == drive.stamps_ns[s.meta['index']] == s.image_stamp_ns
        uv, depth, mask = project_lidar(s.points, s.T_cam_lidar, s.K, s.image_hw)
        assert mask.sum() > 10_000 and depth[mask].min() > 0       # a real drive fills the image with points
        # the LiDAR sits behind the camera's image plane: points in view lie ahead (+x) of the Velodyne
        assert np.median(s.points[mask, 0]) > 3.0


def test_reader_timestamps_files_and_bad_frames(drive_dir, tmp_path):
    day = tmp_path / '2011_09_26'
    drive = day / '2011_09_26_drive_0001_sync'
    for sub in ('image_02/data', 'velodyne_points/data'):
        (drive / sub).mkdir(parents=True)
    for f in ('calib_cam_to_cam.txt', 'calib_velo_to_cam.txt', 'calib_imu_to_velo.txt'):
        shutil.copy(drive_dir.parent / f, day / f)
    for i in range(3):
        os.symlink(drive_dir / 'image_02' / 'data' / f'{i:010d}.png', drive / 'image_02' / 'data' / f'{i:010d}.png')
        os.symlink(drive_dir / 'velodyne_points' / 'data' / f'{i:010d}.bin',
                   drive / 'velodyne_points' / 'data' / f'{i:010d}.bin')
    (drive / 'velodyne_points' / 'timestamps.txt').write_text(
        '2011-09-26 13:02:25.964389445\n2011-09-26 13:02:26.067360000\n2011-09-26 13:02:26.170\n')
    (drive / 'image_02' / 'timestamps.txt').write_text(
        '2011-09-26 13:02:25.976\n2011-09-26 13:02:26.078\n2011-09-26 13:02:26.181\n')
    d = open_kitti_raw_drive(drive)
    assert d.stamps_source == 'timestamps.txt'
    assert d.stamps_ns[0] == 1317042145_964389445 and d.stamps_ns[2] == 1317042146_170000000
    assert d.image_stamps_ns[1] - d.stamps_ns[1] == 10_640_000
    (drive / 'image_02' / 'data' / '0000000001.png').unlink()          # a frame without image: a counted skip
    items = list(iter_kitti_raw_samples(drive))
    assert [type(x) for x in items] == [Sample, SkipRecord, Sample] and 'missing image' in items[1].reason
    with pytest.raises(FileNotFoundError, match='pass one of its drive folders'):
        open_kitti_raw_drive(day)
    with pytest.raises(ValueError, match='camera'):
        KittiRawReaderConfig(camera=7)


def test_prepare_kitti_raw_cli(drive_dir, tmp_path):
    out = tmp_path / 'shards'
    assert ncal(['prepare', 'kitti-raw', str(drive_dir), '--out', str(out), '--max', '2', '--no-progress']) == 0
    got = list(ShardDataset(out))
    assert len(got) == 2 and got[0].meta['source'] == 'kitti_raw' and got[1].meta['frame'] == '0000000001'
    ref = next(iter_kitti_raw_samples(drive_dir, frames=slice(0, 1)))
    np.testing.assert_allclose(got[0].T_cam_lidar, ref.T_cam_lidar)
    np.testing.assert_array_equal(got[0].points, ref.points)
    assert ncal(['prepare', 'kitti-raw', str(drive_dir.parent), '--out', str(tmp_path / 'x')]) == 2   # the day dir


def test_bag_write_kitti_raw_round_trip_truth_beside_never_in_a_message(drive_dir, tmp_path, capsys):
    out = tmp_path / 'drive'
    rc = ncal(['bag', 'write-kitti-raw', str(drive_dir), str(out), '--error', '10,0.5', '--seed', '3',
               '--frames', '5:8'])
    assert rc == 0, capsys.readouterr()
    truth = json.loads((tmp_path / 'drive.truth.json').read_text())
    T_true, T_nom = np.array(truth['T_cam_lidar']), np.array(truth['T_cam_lidar_nominal'])
    np.testing.assert_allclose(T_true, truth['T_cam_lidar_true'])
    np.testing.assert_allclose(invert(T_true), truth['T_lidar_cam'], atol=1e-12)
    assert pose_error(T_nom, T_true)[0] == pytest.approx(10.0, abs=1e-6)
    assert pose_error(T_nom, T_true)[1] == pytest.approx(0.5, abs=1e-9)
    assert [f['frame'] for f in truth['frames']] == ['0000000005', '0000000006', '0000000007']
    for key in ('bag', 'storage', 'parent_frame', 'child_frame', 'camera', 'topics', 'translation_xyz_m',
                'quaternion_xyzw', 'source'):      # the shared rig bags' truth format
        assert key in truth, key
    # as `ros2 bag record` of drivers: best-effort sensor topics, latched /tf_static, 10 Hz
    s = bag_summary(out)
    tp = BagTopics()
    assert s.counts == {tp.points: 3, tp.image: 3, tp.camera_info: 3, tp.tf_static: 1}
    assert all(q.startswith('best_effort') for t in (tp.points, tp.image, tp.camera_info) for q in s.offered_qos[t])
    assert s.offered_qos[tp.tf_static] == ['reliable/transient_local/depth=1']
    # the project's rosbag reader gets back the drive's frames with the NOMINAL extrinsic
    samples = [x for x in iter_rosbag_samples(out) if isinstance(x, Sample)]
    refs = list(iter_kitti_raw_samples(drive_dir, frames=slice(5, 8)))
    assert len(samples) == 3 and np.all(np.diff([x.stamp_ns for x in samples]) == 100_000_000)
    for got, ref in zip(samples, refs):
        np.testing.assert_array_equal(got.points, ref.points)
        np.testing.assert_array_equal(got.image, ref.image)
        np.testing.assert_allclose(got.K, ref.K)
        np.testing.assert_allclose(got.T_cam_lidar, T_nom, atol=1e-9)
        assert got.stamp_ns == ref.stamp_ns
    # the truth is in no message: no /tf_static transform near it, its translation bytes nowhere in the file
    for m in read_messages(out, topics=[tp.tf_static]):
        for t in m.msg.transforms:
            assert pose_error(invert(transform_stamped_to_matrix(t).T_parent_child), T_true)[0] > 9.9
    raw = (out / 'drive.mcap').read_bytes()
    xyz_true, _ = T_to_xyz_quat(invert(T_true))
    xyz_nom, _ = T_to_xyz_quat(invert(T_nom))
    assert np.float64(xyz_nom[0]).tobytes() in raw             # the search does find what is there
    assert not any(np.float64(v).tobytes() in raw for v in xyz_true)
    # an existing output is refused without --force; bad options are one clear line
    assert ncal(['bag', 'write-kitti-raw', str(drive_dir), str(out), '--frames', '0:1']) == 2
    assert 'exists' in capsys.readouterr().err
    assert ncal(['bag', 'write-kitti-raw', str(drive_dir), str(out), '--error', '10']) == 2
    assert ncal(['bag', 'write-kitti-raw', str(drive_dir), str(tmp_path / 'y'), '--frames', '90:95']) == 2
    assert parse_frame_range('2:', 10) == slice(2, None) and parse_frame_range(None, 3) == slice(None)


def test_calibrate_reports_errors_against_the_truth_beside_the_bag(drive_dir, tmp_path, capsys):
    bag = tmp_path / 'b'
    assert ncal(['bag', 'write-kitti-raw', str(drive_dir), str(bag), '--error', '3,0.2', '--frames', '0:2']) == 0
    capsys.readouterr()
    rc = ncal(['calibrate', str(bag), '--backend', 'none', '--no-joint', '--out', str(tmp_path / 'cal'),
               '--no-progress'])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert 'b.truth.json (beside the bag)' in printed and 'vs ground truth: nominal 3.000 deg / 20.00 cm' in printed
    report = json.loads((tmp_path / 'cal' / 'report.json').read_text())
    assert report['truth']['nominal_error']['rot_deg'] == pytest.approx(3.0, abs=1e-6)
