"""Collector node on a real rclpy graph (fresh Context per test), plus its TF helper (nodes/_common.TfFrames).
The pieces without ROS are tested with their library homes: test_worker.py (LatestWorker), test_geometry.py
(Rectifier, extrinsic_from_params), test_reliability.py (StampGuard, DropCounter), test_sensor_input.py."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from node_harness import (CAMERA_FRAME, LIDAR_FRAME, T_CAM_LIDAR_AXES, RosGraph, SensorPublisher, StatusListener,
                          synthetic_frame)
from PIL import Image as PILImage
from rclpy.parameter import Parameter

from ros_ncal.data.shards import ShardDataset
from ros_ncal.geometry import T_to_xyz_quat, invert, make_T, rotvec_to_matrix
from ros_ncal.msgcodec import CameraIntrinsics
from ros_ncal.nodes._common import TfFrames
from ros_ncal.nodes.collector import CollectorNode
from ros_ncal.viz import turbo_ramp as turbo_colors

STAMP0 = 1_700_000_000 * 10**9


def _frames(n, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return [synthetic_frame(rng, **kw) for _ in range(n)]


# ----------------------------------------------------------------------------- helpers

def test_tf_frames_compose_chains_in_both_directions():
    g = TfFrames()                      # a tf2_ros.Buffer behind the project's checks
    T_base_lidar = make_T(rotvec_to_matrix(np.array([0.0, 0.0, 0.1])), np.array([1.0, 0.0, 1.5]))
    T_base_cam = make_T(rotvec_to_matrix(np.array([0.05, -0.02, 0.0])), np.array([1.2, 0.1, 1.3]))
    g.add('base_link', 'lidar', T_base_lidar)
    g.add('base_link', 'cam', T_base_cam)
    T_cam_lidar = g.lookup('cam', 'lidar')
    np.testing.assert_allclose(T_cam_lidar, invert(T_base_cam) @ T_base_lidar, atol=1e-12)
    np.testing.assert_allclose(g.lookup('lidar', 'cam'), invert(T_cam_lidar), atol=1e-12)
    assert g.lookup('cam', 'unknown') is None
    np.testing.assert_allclose(g.lookup('cam', 'cam'), np.eye(4))


def test_turbo_colors_go_from_blue_to_red():
    c = turbo_colors(np.array([0.0, 0.5, 1.0]))
    assert c.dtype == np.uint8 and c.shape == (3, 3)
    assert c[0, 2] > c[0, 0] and c[2, 0] > c[2, 2] and c[1, 1] > 150


# ----------------------------------------------------------------------------- node on a graph

def test_collector_writes_validated_pairs_with_extrinsic_from_a_tf_chain(tmp_path):
    out = tmp_path / 'ds'
    T_base_lidar = make_T(rotvec_to_matrix(np.array([0.0, 0.0, 0.05])), np.array([0.8, 0.0, 1.7]))
    T_base_cam = T_base_lidar @ invert(T_CAM_LIDAR_AXES)
    with RosGraph() as g:
        node = g.make(CollectorNode, {'output_dir': str(out), 'status_period_s': 0.1, 'samples_per_shard': 2})
        pub = SensorPublisher(g.helper)
        status = StatusListener(g.helper, '/collector/status')
        assert pub.wait_matched()
        # a chain base_link -> velo_link and base_link -> camera (one TFMessage per child, as tf2 does)
        from tf2_msgs.msg import TFMessage

        from ros_ncal.ros.conversions import matrix_to_transform_stamped
        pub.tf_static.publish(TFMessage(transforms=[
            matrix_to_transform_stamped(T_base_lidar, 'base_link', LIDAR_FRAME, 1),
            matrix_to_transform_stamped(T_base_cam, 'base_link', CAMERA_FRAME, 1)]))
        assert g.wait_for(lambda: node.input.frames.lookup(CAMERA_FRAME, LIDAR_FRAME) is not None, 10)
        frames = _frames(5)
        for i, (pts, img, K) in enumerate(frames):
            pub.send_frame(STAMP0 + i * 100_000_000, pts, img, K, cam_dt_ns=5_000_000)
            time.sleep(0.05)
        assert g.wait_for(lambda: node.written == 5, 60), node.status()
        assert g.wait_for(lambda: status.latest is not None and status.latest['written'] == 5, 30)
        st = status.latest
        assert st['state'] == 'recording' and st['dropped'] == {} and st['received']['pairs'] == 5
        assert st['queues']['writer_pending'] == 0
        assert g.wait_for(lambda: any(d.get('written') == '5' for d in status.diag_values('collector')), 10)
    ds = ShardDataset(out)
    assert len(ds) == 5 and ds.skipped == []
    for i, s in enumerate(ds):
        pts, img, K = frames[i]
        np.testing.assert_array_equal(s.points, pts)
        np.testing.assert_array_equal(s.image, img)
        np.testing.assert_allclose(s.K, K)
        np.testing.assert_allclose(s.T_cam_lidar, T_CAM_LIDAR_AXES, atol=1e-9)
        assert s.stamp_ns == STAMP0 + i * 100_000_000 and s.image_stamp_ns == s.stamp_ns + 5_000_000
        assert s.frame_ids == (LIDAR_FRAME, CAMERA_FRAME)


def test_collector_services_interval_and_max_samples(tmp_path):
    from std_srvs.srv import Trigger
    out = tmp_path / 'ds'
    with RosGraph() as g:
        node = g.make(CollectorNode, {'output_dir': str(out), 'autostart': False, 'min_interval_s': 0.25,
                                      'max_samples': 2, 'extrinsic.T_cam_lidar': list(T_CAM_LIDAR_AXES.ravel()),
                                      'extrinsic.source': 'param'})
        pub = SensorPublisher(g.helper)
        assert pub.wait_matched()
        frames = _frames(8, seed=1)
        pub.send_frame(STAMP0, *frames[0])
        assert g.wait_for(lambda: node.skipped.get('not_recording_stopped', 0) == 1, 10)
        client = g.helper.create_client(Trigger, '/collector/start')
        assert client.wait_for_service(timeout_sec=10)
        fut = client.call_async(Trigger.Request())
        assert g.wait_for(fut.done, 10) and fut.result().success, fut.result()
        assert node.state == 'recording'
        # 0.1 s apart: with min_interval 0.25 s, stamps 0.1, 0.4, 0.7 pass; max_samples 2 then stops
        for i in range(1, 8):
            pub.send_frame(STAMP0 + i * 100_000_000, *frames[i])
            time.sleep(0.05)
        assert g.wait_for(lambda: node.state == 'full', 60), node.status()
        time.sleep(0.3)
        st = node.status()
        assert st['written'] == 2
        assert st['skipped']['min_interval'] >= 2
        assert st['skipped']['min_interval'] + st['skipped'].get('not_recording_full', 0) == 5
        stop = g.helper.create_client(Trigger, '/collector/stop')
        assert stop.wait_for_service(timeout_sec=10)
        fut = stop.call_async(Trigger.Request())
        assert g.wait_for(fut.done, 10) and 'not recording' in fut.result().message
    ds = ShardDataset(out)
    assert [s.stamp_ns for s in ds] == [STAMP0 + 100_000_000, STAMP0 + 400_000_000]


def test_collector_compressed_images_param_extrinsic_and_restart_appends(tmp_path):
    from sensor_msgs.msg import CompressedImage

    from ros_ncal.ros.conversions import intrinsics_to_camera_info_msg, make_header, points_to_cloud_msg
    out = tmp_path / 'ds'
    xyz, q = T_to_xyz_quat(T_CAM_LIDAR_AXES)
    params = {'output_dir': str(out), 'input.image_transport': 'compressed', 'extrinsic.xyz': list(xyz),
              'extrinsic.quat_xyzw': list(q), 'input.lidar_frame': LIDAR_FRAME, 'input.camera_frame': CAMERA_FRAME}
    frames = _frames(4, seed=2)
    for run in range(2):
        with RosGraph() as g:
            node = g.make(CollectorNode, params)
            pub = SensorPublisher(g.helper)
            assert pub.wait_matched(pubs=[pub.compressed, pub.info, pub.points])
            for i in range(2):
                k = run * 2 + i
                pts, img, K = frames[k]
                buf = io.BytesIO()
                PILImage.fromarray(img).save(buf, format='PNG')
                stamp = STAMP0 + k * 100_000_000
                pub.info.publish(intrinsics_to_camera_info_msg(
                    CameraIntrinsics(K=K, width=img.shape[1], height=img.shape[0]), CAMERA_FRAME, stamp))
                pub.compressed.publish(CompressedImage(header=make_header(CAMERA_FRAME, stamp), format='png',
                                                       data=buf.getvalue()))
                pub.points.publish(points_to_cloud_msg(pts, LIDAR_FRAME, stamp))
                time.sleep(0.05)
            assert g.wait_for(lambda: node.written == 2, 60), node.status()
    ds = ShardDataset(out)
    assert len(ds) == 4
    for k, s in enumerate(ds):
        np.testing.assert_array_equal(s.image, frames[k][1])   # PNG transport is lossless
        np.testing.assert_allclose(s.T_cam_lidar, T_CAM_LIDAR_AXES, atol=1e-9)


def test_collector_rejects_bad_parameters():
    with RosGraph() as g:
        with pytest.raises(ValueError, match='image_format'):
            g.make(CollectorNode, {'image_format': 'bmp'})
        with pytest.raises(ValueError, match='tf_topic'):
            g.make(CollectorNode, {'min_motion_m': 1.0})
        with pytest.raises(ValueError, match='extrinsic'):
            g.make(CollectorNode, {'extrinsic.source': 'param'})
        with pytest.raises(ValueError, match='input.qos_depth'):
            g.make(CollectorNode, {'input.qos_depth': 0})               # below the declared range
        with pytest.raises(ValueError, match='autostart'):
            g.make(CollectorNode, {'autostart': 'yes'})                 # wrong type
        with pytest.raises(ValueError, match='pair_tolerance_s'):
            g.make(CollectorNode, {'input.pair_tolerance_s': 5.0})      # above the declared range


def test_collector_on_the_nuscenes_sample_with_its_sensor_config(tmp_path, shared_data):
    """Real nuScenes CAM_FRONT JPEG (CompressedImage) + LIDAR_TOP cloud, names from config/sensors_nuscenes.yaml."""
    from sensor_msgs.msg import CameraInfo, CompressedImage, PointCloud2

    from ros_ncal.data.readers.nuscenes import load_info, read_nuscenes_points
    from ros_ncal.ros.conversions import intrinsics_to_camera_info_msg, make_header, points_to_cloud_msg
    from ros_ncal.ros.qos import reliable_qos
    from ros_ncal.runner.suite import config_dir
    root = shared_data / 'nuscenes'
    rec = load_info(next(root.glob('*.pkl')))['data_list'][0]
    cam = rec['images']['CAM_FRONT']
    jpeg = (root / 'samples' / 'CAM_FRONT' / cam['img_path'].split('/')[-1]).read_bytes()
    pts = read_nuscenes_points(next((root / 'samples' / 'LIDAR_TOP').glob('*.pcd.bin')), 5, 1 / 255)
    K = np.asarray(cam['cam2img'], dtype=np.float64)[:3, :3]
    T = np.asarray(cam['lidar2cam'], dtype=np.float64)
    rgb = np.asarray(PILImage.open(io.BytesIO(jpeg)).convert('RGB'))
    H, W = rgb.shape[:2]
    t_lidar, t_cam = 1532402927647951000, 1532402927612460000
    out = tmp_path / 'ds'
    cli = ['--ros-args', '--params-file', str(config_dir() / 'collector.yaml'),
           '--params-file', str(config_dir() / 'sensors_nuscenes.yaml')]
    with RosGraph() as g:
        node = g.add(CollectorNode(context=g.context, cli_args=cli,
                                   parameter_overrides=[Parameter('output_dir', value=str(out))]))
        assert node.cfg.input.image_transport == 'compressed' and node.cfg.input.lidar_frame == 'LIDAR_TOP'
        q = reliable_qos(10)
        p_img = g.helper.create_publisher(CompressedImage, '/CAM_FRONT/image_rect_compressed', q)
        p_info = g.helper.create_publisher(CameraInfo, '/CAM_FRONT/camera_info', q)
        p_pts = g.helper.create_publisher(PointCloud2, '/LIDAR_TOP', q)
        pub = SensorPublisher(g.helper)
        assert pub.wait_matched(pubs=[p_img, p_info, p_pts])
        pub.send_tf_static(T, lidar_frame='LIDAR_TOP', camera_frame='CAM_FRONT')
        assert g.wait_for(lambda: node.input.frames.lookup('CAM_FRONT', 'LIDAR_TOP') is not None, 10)
        for stamp in (t_cam, t_cam + 83_000_000):      # 12 Hz camera around the 20 Hz LiDAR sweep
            p_info.publish(intrinsics_to_camera_info_msg(CameraIntrinsics(K=K, width=W, height=H), 'CAM_FRONT', stamp))
            p_img.publish(CompressedImage(header=make_header('CAM_FRONT', stamp), format='jpeg', data=jpeg))
            if stamp == t_cam:
                p_pts.publish(points_to_cloud_msg(pts, 'LIDAR_TOP', t_lidar))
            time.sleep(0.05)
        assert g.wait_for(lambda: node.written == 1, 60), node.status()
    s = ShardDataset(out)[0]
    assert s.frame_ids == ('LIDAR_TOP', 'CAM_FRONT') and s.stamp_ns == t_lidar and s.image_stamp_ns == t_cam
    np.testing.assert_array_equal(s.image, rgb)
    np.testing.assert_allclose(s.T_cam_lidar, T, atol=1e-6)
    assert s.num_points == len(pts)


def test_collector_min_motion_from_tf_and_disk_budget(tmp_path):
    from tf2_msgs.msg import TFMessage

    from ros_ncal.ros.conversions import matrix_to_transform_stamped
    from ros_ncal.ros.qos import reliable_qos
    frames = _frames(4, seed=6)
    ext = {'extrinsic.T_cam_lidar': list(T_CAM_LIDAR_AXES.ravel())}
    with RosGraph() as g:
        node = g.make(CollectorNode, {**ext, 'output_dir': str(tmp_path / 'motion'), 'min_motion_m': 1.0,
                                      'input.tf_topic': True})
        pub = SensorPublisher(g.helper)
        tf_pub = g.helper.create_publisher(TFMessage, '/tf', reliable_qos(10))
        assert pub.wait_matched(pubs=[pub.image, pub.info, pub.points, tf_pub])
        pub.send_frame(STAMP0, *frames[0])
        assert g.wait_for(lambda: node.skipped.get('no_odometry') == 1, 10), node.status()
        for i, x in enumerate([0.0, 0.5, 1.2], start=1):
            stamp = STAMP0 + i * 100_000_000
            tf_pub.publish(TFMessage(transforms=[matrix_to_transform_stamped(
                make_T(np.eye(3), np.array([x, 0.0, 0.0])), 'odom', LIDAR_FRAME, stamp)]))
            assert g.wait_for(lambda: node.input.frames.lookup('odom', LIDAR_FRAME) is not None and
                              abs(node.input.frames.lookup('odom', LIDAR_FRAME)[0, 3] - x) < 1e-9, 10)
            pub.send_frame(stamp, *frames[i])
            assert g.wait_for(lambda: node.input.received().get('pairs', 0) == i + 1, 10)
        assert g.wait_for(lambda: node.written == 2, 60), node.status()
        assert node.skipped['min_motion'] == 1
    assert [s.stamp_ns for s in ShardDataset(tmp_path / 'motion')] == [STAMP0 + 100_000_000, STAMP0 + 300_000_000]
    with RosGraph() as g:
        node = g.make(CollectorNode, {**ext, 'output_dir': str(tmp_path / 'budget'), 'disk_budget_mb': 0.001})
        pub = SensorPublisher(g.helper)
        assert pub.wait_matched()
        pub.send_frame(STAMP0, *frames[0])
        assert g.wait_for(lambda: node.state == 'full', 60), node.status()
        pub.send_frame(STAMP0 + 100_000_000, *frames[1])
        assert g.wait_for(lambda: node.skipped.get('not_recording_full') == 1, 10)
        assert node.written == 1 and 'disk_budget_mb' in node.status()['detail']
