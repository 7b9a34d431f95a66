"""Readers on the real shared data (KITTI, SemanticKITTI, nuScenes, rosbag2 of KITTI frames) and bad input."""
from __future__ import annotations

import io
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from ros_ncal.cli import main as ncal
from ros_ncal.data.boxes3d import kitti_camera_boxes_to_lidar, points_in_boxes
from ros_ncal.data.kitti_files import read_kitti_calib, read_velodyne
from ros_ncal.data.labels import SEMANTICKITTI_LEARNING_MAP, remap_semantickitti
from ros_ncal.data.readers.kitti import KittiReaderConfig, iter_kitti_samples, read_kitti_frame
from ros_ncal.data.readers.nuscenes import iter_nuscenes_samples
from ros_ncal.geometry.distortion import UndistortMap
from ros_ncal.data.readers.rosbag import (BagInputError, RosbagReaderConfig, decode_image,
                                          iter_rosbag_samples, resolve_static_transform)
from ros_ncal.data.readers.semantickitti import (MissingCameraDataError, SemanticKittiReaderConfig,
                                                 iter_semantickitti_samples, iter_semantickitti_scans,
                                                 read_semantickitti_scan)
from ros_ncal.data.sample import Sample
from ros_ncal.data.shards import ShardDataset, SkipRecord
from ros_ncal.geometry import invert, make_T, rotvec_to_matrix


def _split(items):
    samples = [x for x in items if isinstance(x, Sample)]
    skips = [x for x in items if isinstance(x, SkipRecord)]
    return samples, skips


# ------------------------------------------------------------------------------------------------------------ KITTI

def test_kitti_training_frames_boxes_sit_on_the_points(kitti_dir):
    samples, skips = _split(list(iter_kitti_samples(kitti_dir / 'training')))
    assert skips == [] and [s.meta['frame'] for s in samples] == ['000000', '000001', '000002', '000003', '000006',
                                                                  '000007', '000008', '000009', '000010', '000142',
                                                                  '000217']
    s1 = samples[1]  # label file: Truck, Car, Cyclist, 2 x DontCare -> Car, Cyclist kept
    assert s1.box_labels.tolist() == [0, 2] and s1.meta['kitti_box_attrs']['type'] == ['Car', 'Cyclist']
    calib = read_kitti_calib(kitti_dir / 'training' / 'calib' / '000001.txt')
    np.testing.assert_allclose(s1.K, calib['P2'][:, :3])
    assert s1.image_hw == (375, 1242) and samples[0].image_hw == (370, 1224)
    inside, inside_sunk = 0, 0
    for s in samples:
        for box, label, occ in zip(s.boxes, s.box_labels, s.meta['kitti_box_attrs']['occluded']):
            n = points_in_boxes(s.points, box[None])[0].sum()
            turned = box.copy()
            turned[6] += np.pi / 2
            sunk = box.copy()
            sunk[2] -= box[5] / 2  # treating the stored z as the bottom would put it half a box lower
            assert n >= 8 or np.hypot(box[0], box[1]) > 50, (s.meta['frame'], box, n)   # far boxes are sparse
            if label == 0 and occ == 0:  # an unoccluded car: the heading must matter
                assert n > 1.3 * points_in_boxes(s.points, turned[None])[0].sum()
            if n >= 50:   # summed over boxes: a single box on a slope or under foliage may tie
                inside += n
                inside_sunk += points_in_boxes(s.points, sunk[None])[0].sum()
    assert inside > 1.2 * inside_sunk, (inside, inside_sunk)


def test_kitti_box_conversion_matches_mmdet3d_point_counts(shared_data):
    """Independent reference: mmdetection3d's info for frame 000008 stores per-box LiDAR point counts."""
    root = shared_data / 'kitti_object_reduced' / 'training'
    with open(root / 'mmdet3d_info' / '000008.pkl', 'rb') as f:
        info = pickle.load(f)
    inst = [i for i in info['data_list'][0]['instances'] if i['num_lidar_pts'] > 0]
    calib = read_kitti_calib(root / 'calib' / '000008.txt')
    T_rect_lidar = make_T(calib['R0_rect'], np.zeros(3)) @ np.vstack([calib['Tr_velo_to_cam'], [0, 0, 0, 1]])
    b = np.array([i['bbox_3d'] for i in inst])  # camera frame: x y z (bottom centre), l h w, ry
    boxes = kitti_camera_boxes_to_lidar(b[:, :3], b[:, [4, 5, 3]], b[:, 6], T_rect_lidar)
    pts = read_velodyne(root / 'velodyne_reduced' / '000008.bin')
    counts = points_in_boxes(pts, boxes).sum(1)
    ref = np.array([i['num_lidar_pts'] for i in inst])
    assert len(ref) >= 5
    np.testing.assert_allclose(counts, ref, rtol=0.1, atol=5)
    # and the reader handles the FOV-reduced cloud folder (no label_2 there)
    s = read_kitti_frame(root, '000008', KittiReaderConfig(velodyne_dir='velodyne_reduced'))
    assert s.num_points == 17238 and s.boxes is None


def test_kitti_testing_split_has_no_boxes(kitti_dir):
    samples, skips = _split(list(iter_kitti_samples(kitti_dir / 'testing')))
    assert len(samples) == 4 and not skips and all(s.boxes is None for s in samples)


def _broken_split(kitti_dir: Path, tmp: Path) -> Path:
    """A split with frame 000000 good and 000001..000004 each broken in one way."""
    src = kitti_dir / 'training'
    d = tmp / 'training'
    for sub in ('velodyne', 'image_2', 'calib', 'label_2'):
        (d / sub).mkdir(parents=True)
    ext = {'velodyne': 'bin', 'image_2': 'png', 'calib': 'txt', 'label_2': 'txt'}
    for fid_src, fid in (('000000', '000000'), ('000001', '000001'), ('000002', '000002'), ('000003', '000003'),
                         ('000001', '000004')):
        for sub, e in ext.items():
            shutil.copy(src / sub / f'{fid_src}.{e}', d / sub / f'{fid}.{e}')
    png = (d / 'image_2' / '000001.png').read_bytes()
    (d / 'image_2' / '000001.png').write_bytes(png[:200] + b'\x00' * 500)  # corrupt PNG
    vel = (d / 'velodyne' / '000002.bin').read_bytes()
    (d / 'velodyne' / '000002.bin').write_bytes(vel[:-6])  # truncated .bin
    (d / 'calib' / '000003.txt').unlink()  # missing calib
    (d / 'label_2' / '000004.txt').unlink()  # missing label in a labelled split
    return d


def test_kitti_bad_frames_are_reported_skips_not_crashes(kitti_dir, tmp_path):
    d = _broken_split(kitti_dir, tmp_path)
    samples, skips = _split(list(iter_kitti_samples(d)))
    assert [s.meta['frame'] for s in samples] == ['000000']
    reasons = {r.what: r.reason for r in skips}
    assert set(reasons) == {'000001', '000002', '000003', '000004'}
    assert 'cannot decode image' in reasons['000001']
    assert 'multiple of 16' in reasons['000002']
    assert 'missing calib' in reasons['000003']
    assert 'missing label' in reasons['000004']
    # through the CLI: the good frame is written, the report lists the rest, exit code 0
    out = tmp_path / 'ds'
    assert ncal(['prepare', 'kitti', str(d), '--out', str(out), '--no-progress']) == 0
    assert len(ShardDataset(out)) == 1
    report = next(out.glob('prepare-report-*.json')).read_text()
    assert 'missing calib' in report and 'cannot decode image' in report


# ---------------------------------------------------------------------------------------------------- SemanticKITTI

def test_semantickitti_scan_labels_and_bad_files(shared_data, tmp_path):
    seq = shared_data / 'semantickitti' / 'sequences' / '00'
    pts, labels, inst = read_semantickitti_scan(seq / 'velodyne' / '000000.bin', seq / 'labels' / '000000.label')
    assert pts.shape == (124668, 4) and labels.shape == inst.shape == (124668,)
    raw = np.fromfile(seq / 'labels' / '000000.label', dtype='<u4')
    sem = raw & 0xFFFF
    assert labels.min() >= 0 and labels.max() <= 19
    assert (labels == 1).sum() == np.isin(sem, [10, 252]).sum() > 1000  # car (+ moving car)
    assert (labels == 9).sum() == np.isin(sem, [40, 60]).sum()  # road (+ lane marking)
    assert (labels == 0).sum() == np.isin(sem, [0, 1, 52, 99]).sum()
    np.testing.assert_array_equal(inst, raw >> 16)
    assert remap_semantickitti(np.array(sorted(SEMANTICKITTI_LEARNING_MAP))).max() == 19
    # count mismatch and truncation
    short = tmp_path / 'short.label'
    short.write_bytes(raw[:-10].tobytes())
    with pytest.raises(ValueError, match='labels for'):
        read_semantickitti_scan(seq / 'velodyne' / '000000.bin', short)
    short.write_bytes(raw.tobytes()[:-2])
    with pytest.raises(ValueError, match='multiple of 4'):
        read_semantickitti_scan(seq / 'velodyne' / '000000.bin', short)
    scans = list(iter_semantickitti_scans(seq))
    assert [x[0] for x in scans] == ['000000', '000001'] and all(len(x[1]) == len(x[2]) for x in scans)
    # the shared sample has no images: no camera Samples, and a clear error
    with pytest.raises(MissingCameraDataError, match='no images'):
        next(iter_semantickitti_samples(seq))


def test_semantickitti_camera_samples_when_images_and_calib_exist(shared_data, kitti_dir, tmp_path):
    """Layout test: real scans + labels, with a KITTI image and an odometry-style calib.txt (P2, Tr) supplied."""
    src = shared_data / 'semantickitti' / 'sequences' / '00'
    seq = tmp_path / 'sequences' / '00'
    shutil.copytree(src / 'velodyne', seq / 'velodyne')
    shutil.copytree(src / 'labels', seq / 'labels')
    (seq / 'image_2').mkdir()
    shutil.copy(kitti_dir / 'training' / 'image_2' / '000001.png', seq / 'image_2' / '000000.png')
    c = read_kitti_calib(kitti_dir / 'training' / 'calib' / '000001.txt')
    Tr = (make_T(c['R0_rect'], np.zeros(3)) @ np.vstack([c['Tr_velo_to_cam'], [0, 0, 0, 1]]))[:3]
    (seq / 'calib.txt').write_text(f"P2: {' '.join(map(str, c['P2'].ravel()))}\nTr: {' '.join(map(str, Tr.ravel()))}\n")
    (seq / 'times.txt').write_text('0.0\n0.103\n')
    samples, skips = _split(list(iter_semantickitti_samples(seq, SemanticKittiReaderConfig())))
    assert len(samples) == 1 and skips[0].what == '000001' and 'missing image' in skips[0].reason
    s = samples[0]
    np.testing.assert_allclose(s.T_cam_lidar, c['T_cam_lidar'], atol=1e-6)
    assert s.point_labels.shape == (s.num_points,) and s.instance_ids is not None
    (seq / 'calib.txt').write_text('P0: 1 0 0 0 0 1 0 0 0 0 1 0\n')
    with pytest.raises(ValueError, match='P2 and Tr'):
        next(iter_semantickitti_samples(seq))


# --------------------------------------------------------------------------------------------------------- nuScenes

def test_nuscenes_one_sample_per_camera_with_boxes(shared_data, tmp_path):
    pkl = shared_data / 'nuscenes' / 'n015-2018-07-24-11-22-45+0800.pkl'
    samples, skips = _split(list(iter_nuscenes_samples(pkl)))
    assert not skips and len(samples) == 6
    assert {s.frame_ids[1] for s in samples} == {'CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK',
                                                 'CAM_BACK_LEFT', 'CAM_BACK_RIGHT'}
    s = samples[0]
    assert s.num_points == 34688 and 0 <= s.points[:, 3].min() and s.points[:, 3].max() <= 1.0
    assert s.image_hw == (900, 1600) and s.stamp_ns == 1532402927647951000
    assert len(s.boxes) == len(s.meta['num_lidar_pts']) > 50
    counts = points_in_boxes(s.points, s.boxes).sum(1)
    ref = np.array(s.meta['num_lidar_pts'])
    assert np.abs(counts - ref).sum() <= 0.1 * ref.sum()  # z is the box centre, yaw as stored
    sunk = s.boxes.copy()
    sunk[:, 2] -= sunk[:, 5] / 2
    assert np.abs(points_in_boxes(s.points, sunk).sum(1) - ref).sum() > 3 * np.abs(counts - ref).sum()
    # truncated LiDAR file -> the keyframe is a reported skip
    root = tmp_path / 'nus'
    shutil.copytree(shared_data / 'nuscenes' / 'samples', root / 'samples')
    lid = next((root / 'samples' / 'LIDAR_TOP').glob('*.bin'))
    lid.write_bytes(lid.read_bytes()[:-8])
    samples, skips = _split(list(iter_nuscenes_samples(pkl, root)))
    assert not samples and len(skips) == 1 and 'multiple of 20' in skips[0].reason


# ----------------------------------------------------------------------------------------------------------- rosbag

def _tiny_frames(n=4):
    rng = np.random.default_rng(0)
    T = make_T(rotvec_to_matrix(np.array([1.2, -1.2, 1.2])), np.array([0.1, -0.2, 0.05]))
    K = np.array([[60.0, 0, 40], [0, 60, 30], [0, 0, 1]])
    return [(rng.normal(size=(300, 4)).astype(np.float32) + [10, 0, 0, 0],
             rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), K, T) for _ in range(n)]


def _write_bag(path: Path, frames, caminfo=True, tf='direct', image_offsets_ms=None, D=None):
    from ros_ncal.bag import rosbags_msgs as rm
    from ros_ncal.bag.writer import SensorBagWriter
    from ros_ncal.msgcodec import CameraIntrinsics
    start = 1_700_000_000_000_000_000
    with SensorBagWriter(path, 'mcap') as w:
        tp = w.topics
        T = frames[0][3]
        if tf == 'direct':
            w.write_extrinsic(T, start)
        elif tf == 'chain':  # base_link -> lidar and base_link -> camera
            T_base_lidar = make_T(rotvec_to_matrix(np.array([0, 0, 0.3])), np.array([1.0, 0, 1.7]))
            T_base_cam = T_base_lidar @ invert(T)
            w.write(tp.tf_static, rm.tf_message([rm.transform_stamped(T_base_lidar, 'base_link', tp.lidar_frame, start),
                                                 rm.transform_stamped(T_base_cam, 'base_link', tp.camera_frame, start)]),
                    start)
        for k, (pts, rgb, K, _) in enumerate(frames):
            t = start + k * 100_000_000
            ti = t + int(1e6 * (image_offsets_ms[k] if image_offsets_ms else 0))
            w.write(tp.points, rm.pointcloud2(pts, tp.lidar_frame, t), t)
            w.write(tp.image, rm.image(rgb, tp.camera_frame, ti), ti)
            if caminfo:
                intr = CameraIntrinsics(K=K, D=np.zeros(5) if D is None else D, width=rgb.shape[1], height=rgb.shape[0])
                w.write(tp.camera_info, rm.camera_info(intr, tp.camera_frame, ti), ti)
    return path


def test_rosbag_of_kitti_frames_matches_the_kitti_reader(kitti_dir, tmp_path):
    from ros_ncal.bag.kitti import write_kitti_bag
    bag, _ = write_kitti_bag(kitti_dir, tmp_path / 'kitti.mcap')
    got, skips = _split(list(iter_rosbag_samples(bag)))
    ref, _ = _split(list(iter_kitti_samples(kitti_dir / 'training')))
    assert not skips and len(got) == len(ref) == 11     # the shared training split: 11 labelled frames
    for g, r in zip(got, ref):  # frame 000000 has its own calibration: per-stamp CameraInfo and TF
        np.testing.assert_array_equal(g.points, r.points)
        np.testing.assert_array_equal(g.image, r.image)
        np.testing.assert_allclose(g.K, r.K, atol=1e-9)
        np.testing.assert_allclose(g.T_cam_lidar, r.T_cam_lidar, atol=1e-9)
        assert g.frame_ids == ('velo_link', 'camera_color_left_optical_frame')
    out = tmp_path / 'ds'
    assert ncal(['prepare', 'rosbag', str(bag), '--out', str(out), '--no-progress']) == 0
    assert len(ShardDataset(out)) == len(ref)


def test_rosbag_missing_camera_info_or_tf_is_a_clear_error_unless_overridden(tmp_path):
    frames = _tiny_frames(2)
    no_ci = _write_bag(tmp_path / 'no_ci', frames, caminfo=False)
    with pytest.raises(BagInputError, match='CameraInfo'):
        next(iter_rosbag_samples(no_ci))
    no_tf = _write_bag(tmp_path / 'no_tf', frames, tf=None)
    with pytest.raises(BagInputError, match='/tf_static'):
        next(iter_rosbag_samples(no_tf))
    assert ncal(['prepare', 'rosbag', str(no_tf), '--out', str(tmp_path / 'x'), '--no-progress']) == 2
    K, T = frames[0][2], frames[0][3]
    ov = tmp_path / 'override.yaml'
    ov.write_text(f'K: {K.tolist()}\nT_lidar_cam: {invert(T).tolist()}\n')
    for bag in (no_ci, no_tf):
        got, skips = _split(list(iter_rosbag_samples(bag, RosbagReaderConfig(override=str(ov)))))
        assert len(got) == 2 and not skips
        np.testing.assert_allclose(got[0].T_cam_lidar, T, atol=1e-9)
        np.testing.assert_allclose(got[0].K, K)


def test_rosbag_tf_chain_and_far_stamps_are_counted_skips(tmp_path):
    frames = _tiny_frames(4)
    bag = _write_bag(tmp_path / 'chain', frames, tf='chain', image_offsets_ms=[0, 10, 400, -5])
    items = list(iter_rosbag_samples(bag))
    got, skips = _split(items)
    assert [g.stamp_ns - got[0].stamp_ns for g in got] == [0, 100_000_000, 300_000_000]
    np.testing.assert_allclose(got[0].T_cam_lidar, frames[0][3], atol=1e-9)  # through base_link
    assert got[1].image_stamp_ns - got[1].stamp_ns == 10_000_000
    # frame 2's image is 400 ms late: the scan and the image are both unpaired, counted
    assert len(skips) == 2 and all('unpaired' in r.reason for r in skips)
    assert {r.what for r in skips} == {'camera message', 'lidar message'}


def test_static_transform_resolution_and_errors():
    A = make_T(rotvec_to_matrix(np.array([0.1, 0.2, 0.3])), np.array([1.0, 2, 3]))
    B = make_T(rotvec_to_matrix(np.array([-0.3, 0.1, 0.0])), np.array([0.0, -1, 0.5]))
    edges = {('base', 'lidar'): A, ('base', 'cam'): B}
    np.testing.assert_allclose(resolve_static_transform(edges, 'cam', 'lidar'), invert(B) @ A, atol=1e-12)
    with pytest.raises(BagInputError, match="'cam' and 'radar'"):
        resolve_static_transform(edges, 'cam', 'radar')


def test_undistortion_and_compressed_images():
    from ros_ncal.bag.rosbags_msgs import header, typestore
    K = np.array([[100.0, 0, 64], [0, 100, 48], [0, 0, 1]])
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    same = UndistortMap(K, np.zeros(5), 'plumb_bob', (96, 128))(img)
    np.testing.assert_array_equal(same[:-1, :-1], img[:-1, :-1])  # zero distortion: identity (last row/col: border)
    barrel = UndistortMap(K, np.array([-0.3, 0.1, 0, 0, 0]), 'plumb_bob', (96, 128))
    assert abs(barrel.src_u[48, 64] - 64) < 1e-9 and barrel.src_u[48, 127] < 127  # centre fixed, edges pulled in
    buf = io.BytesIO()
    from PIL import Image
    Image.fromarray(img).save(buf, format='PNG')
    Msg = typestore().types['sensor_msgs/msg/CompressedImage']
    msg = Msg(header=header('cam', 0), format='rgb8; png compressed bgr8', data=np.frombuffer(buf.getvalue(), np.uint8))
    np.testing.assert_array_equal(decode_image(msg, 'sensor_msgs/msg/CompressedImage'), img)
    bad = Msg(header=header('cam', 0), format='jpeg', data=np.zeros(50, np.uint8))
    with pytest.raises(BagInputError, match='not decodable'):
        decode_image(bad, 'sensor_msgs/msg/CompressedImage')


# -------------------------------------------------------------------------------------------------------------- CLI

def test_prepare_cli_refuses_to_mix_into_existing_dataset_and_appends_on_request(kitti_dir, tmp_path):
    out = tmp_path / 'ds'
    assert ncal(['prepare', 'kitti', str(kitti_dir), '--out', str(out), '--no-progress', '--max', '2',
                 '--image-format', 'jpg']) == 0
    assert ncal(['prepare', 'kitti', str(kitti_dir), '--out', str(out), '--no-progress']) == 2
    assert ncal(['prepare', 'kitti', str(kitti_dir), '--split', 'testing', '--out', str(out), '--no-progress',
                 '--append', '--max', '1']) == 0
    ds = ShardDataset(out)
    assert len(ds) == 3 and ds.manifest['class_names'] == {'boxes': ['Car', 'Pedestrian', 'Cyclist']}
    assert [s.meta['split'] for s in ds] == ['training', 'training', 'testing']
