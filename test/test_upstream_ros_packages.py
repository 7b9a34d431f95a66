"""The design-card ROS packages (installed by scripts/setup.sh from ../shared/vendor, or a ROS distro's):
tf_transformations, tf2_ros, message_filters, sensor_msgs_py, cv_bridge, each against the project's own code on the
same data (the project's pairing stays: bench/bench_pairing.py; its message conversion: bench/bench_conversions.py),
and tf2_ros through the project's StaticTransformBroadcaster (which uses tf2_ros whenever it imports).
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

import rclpy
from rclpy.executors import SingleThreadedExecutor

from ros_ncal.data.kitti_files import read_image_rgb, read_velodyne
from ros_ncal.geometry import T_from_xyz_quat, invert, matrix_to_quat
from ros_ncal.msgcodec import (array_to_image_fields, cloud_to_xyzi, image_to_array, image_to_rgb,
                               transform_stamped_to_matrix)

REPO = Path(__file__).resolve().parents[1]


def random_rigid(rng) -> np.ndarray:
    q = rng.normal(size=4)
    return T_from_xyz_quat(rng.normal(size=3), q / np.linalg.norm(q))


def spin_until(executor, cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not cond():
        executor.spin_once(timeout_sec=0.05)
    return cond()


# -- tf_transformations -----------------------------------------------------------------------------------------
def test_tf_transformations_in_the_ros_layer():
    import tf_transformations as tft

    from ros_ncal.msgcodec import transform_to_matrix
    from ros_ncal.nodes.detector import yaw_quaternion
    from ros_ncal.ros.conversions import matrix_to_transform_msg
    rng = np.random.default_rng(3)
    for _ in range(50):
        T = random_rigid(rng)
        msg = matrix_to_transform_msg(T)                      # the ROS layer's quaternion agrees with tf_transformations
        q = np.array([msg.rotation.x, msg.rotation.y, msg.rotation.z, msg.rotation.w])
        for ref in (matrix_to_quat(T[:3, :3]), tft.quaternion_from_matrix(T)):
            assert min(np.abs(q - ref).max(), np.abs(q + ref).max()) < 1e-9
        np.testing.assert_allclose(tft.quaternion_matrix(q), np.block([[T[:3, :3], np.zeros((3, 1))],
                                                                        [np.zeros((1, 3)), np.ones((1, 1))]]), atol=1e-9)
        np.testing.assert_allclose(transform_to_matrix(msg), T, atol=1e-9)
        # the NumPy 2 fixes of the install step (copy=False) are exercised by these
        scale, shear, angles, trans, persp = tft.decompose_matrix(T)
        np.testing.assert_allclose(trans, T[:3, 3], atol=1e-9)
        np.testing.assert_allclose(tft.euler_matrix(*angles)[:3, :3], T[:3, :3], atol=1e-9)
        np.testing.assert_allclose(np.linalg.norm(tft.unit_vector(T[:3, 3])), 1.0)
    for yaw in np.linspace(-np.pi, np.pi, 9):
        x, y, z, w = yaw_quaternion(yaw)                      # detector boxes
        np.testing.assert_allclose((x, y, z, w), tft.quaternion_from_euler(0.0, 0.0, yaw), atol=1e-12)


# -- tf2_ros -----------------------------------------------------------------------------------------------------
def test_static_broadcaster_uses_tf2_ros_and_a_listener_resolves_the_chain(ros_context):
    from tf2_ros import Buffer, TransformListener

    from ros_ncal.nodes._common import FrameGraph
    from ros_ncal.ros.tf_static import StaticTransformBroadcaster
    rng = np.random.default_rng(5)
    T_base_lidar, T_base_cam = random_rigid(rng), random_rigid(rng)
    pub = rclpy.create_node('tf_pub', context=ros_context)
    bc = StaticTransformBroadcaster(pub)
    assert bc.uses_tf2_ros
    bc.send_matrix(T_base_lidar, 'base_link', 'velo_link', 1)
    bc.send_matrix(T_base_cam, 'base_link', 'cam', 1)
    sub = rclpy.create_node('tf_sub', context=ros_context)      # joins after both were sent (latched)
    buf = Buffer()
    TransformListener(buf, sub)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(pub)
    ex.add_node(sub)
    assert spin_until(ex, lambda: buf.can_transform('cam', 'velo_link', rclpy.time.Time()))
    T_cam_lidar = transform_stamped_to_matrix(buf.lookup_transform('cam', 'velo_link', rclpy.time.Time()))
    expected = invert(T_base_cam) @ T_base_lidar
    np.testing.assert_allclose(T_cam_lidar.T_parent_child, expected, atol=1e-9)
    graph = FrameGraph()                                          # the project's own chain look-up agrees
    graph.add('base_link', 'velo_link', T_base_lidar)
    graph.add('base_link', 'cam', T_base_cam)
    np.testing.assert_allclose(graph.lookup('cam', 'velo_link'), expected, atol=1e-9)
    ex.shutdown()


# -- message_filters -------------------------------------------------------------------------------------------
def _bench_pairing():
    spec = importlib.util.spec_from_file_location('bench_pairing', REPO / 'bench' / 'bench_pairing.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_message_filters_and_project_pairer_on_the_same_streams():
    """Lockstep streams (a KITTI bag): the same pairs. 15 Hz camera vs 10 Hz LiDAR: the upstream synchronizer
    pairs a scan with the first camera frame within slop, the project's pairer with the closest one."""
    b = _bench_pairing()
    events, cam = b.make_streams(scans=60, cam_hz=10.0, jitter_ms=0.0, loss=0.0, seed=1)
    events = [(a, k, s - s % 100_000_000) for a, k, s in events]   # identical stamps on both streams
    ours, _, drops = b.run_project(events, 50_000_000, 10)
    theirs, _, _ = b.run_message_filters(events, 50_000_000, 10)
    assert sorted(ours) == sorted(theirs) and len(ours) == 60 and all(lidar == c for lidar, c in ours)
    events, cam = b.make_streams(scans=400, cam_hz=15.0, jitter_ms=8.0, loss=0.02, seed=0)
    ours, _, drops = b.run_project(events, 50_000_000, 10)
    theirs, _, _ = b.run_message_filters(events, 50_000_000, 10)
    for pairs in (ours, theirs):
        assert pairs and all(abs(lidar - c) <= 50_000_000 for lidar, c in pairs)
    assert sum(c != b.closest_camera(cam, lidar) for lidar, c in ours) == 0
    assert sum(c != b.closest_camera(cam, lidar) for lidar, c in theirs) > 0.05 * len(theirs)   # 36 of 395
    assert sum(drops.values()) > 0          # the project's pairer says why an input was not paired


def test_message_filters_subscribers_pair_a_live_stream(ros_context):
    """The upstream path on the live graph: message_filters.Subscriber + ApproximateTimeSynchronizer."""
    import message_filters
    from sensor_msgs.msg import Image, PointCloud2

    from ros_ncal.ros.conversions import points_to_cloud_msg, rgb_to_image_msg
    from ros_ncal.ros.qos import reliable_qos
    pub_node = rclpy.create_node('sensors', context=ros_context)
    sub_node = rclpy.create_node('pairing', context=ros_context)
    pub_img = pub_node.create_publisher(Image, '/cam/image', reliable_qos(10))
    pub_pts = pub_node.create_publisher(PointCloud2, '/lidar/points', reliable_qos(10))
    pairs = []
    sync = message_filters.ApproximateTimeSynchronizer(
        [message_filters.Subscriber(sub_node, Image, '/cam/image', qos_profile=reliable_qos(10)),
         message_filters.Subscriber(sub_node, PointCloud2, '/lidar/points', qos_profile=reliable_qos(10))],
        queue_size=10, slop=0.05)
    sync.registerCallback(lambda img, pts: pairs.append((img.header.stamp.nanosec, pts.header.stamp.nanosec)))
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(pub_node)
    ex.add_node(sub_node)
    assert spin_until(ex, lambda: pub_img.get_subscription_count() and pub_pts.get_subscription_count())
    rgb = np.zeros((4, 6, 3), np.uint8)
    pts = np.ones((10, 4), np.float32)
    for k in range(5):
        stamp = 1_700_000_000 * 10**9 + k * 100_000_000
        pub_pts.publish(points_to_cloud_msg(pts, 'velo_link', stamp + 7_000_000))   # LiDAR 7 ms after the image
        pub_img.publish(rgb_to_image_msg(rgb, 'cam', stamp))
        spin_until(ex, lambda: len(pairs) > k, timeout=5)
    assert [(i, p - i) for i, p in pairs] == [(k * 100_000_000, 7_000_000) for k in range(5)]
    ex.shutdown()


# -- sensor_msgs_py / cv_bridge (the project's converters stay: bench/bench_conversions.py) ---------------------
def test_sensor_msgs_py_point_cloud2_agrees_with_msgcodec(kitti_dir):
    from sensor_msgs.msg import PointField
    from sensor_msgs_py import point_cloud2

    from ros_ncal.ros.conversions import make_header, points_to_cloud_msg
    pts = read_velodyne(kitti_dir / 'training' / 'velodyne' / '000001.bin')
    msg = points_to_cloud_msg(pts, 'velo_link', 1)                # project encoder -> upstream decoder
    np.testing.assert_array_equal(point_cloud2.read_points_numpy(msg, ('x', 'y', 'z', 'intensity')), pts)
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, n in enumerate(('x', 'y', 'z', 'intensity'))]
    up = point_cloud2.create_cloud(make_header('velo_link', 1), fields, pts)   # upstream encoder -> project decoder
    np.testing.assert_array_equal(cloud_to_xyzi(up).points, pts)


def test_cv_bridge_agrees_with_msgcodec(kitti_dir):
    # built only with NCAL_CV_BRIDGE=1 (needs Debian's full libopencv-dev; scripts/install_ros_vendor.sh says why)
    CvBridge = pytest.importorskip('cv_bridge', reason='cv_bridge not installed (NCAL_CV_BRIDGE=1 bash '
                                   'scripts/setup.sh builds it)').CvBridge

    from ros_ncal.ros.conversions import array_to_image_msg, rgb_to_image_msg
    from sensor_msgs.msg import Image
    bridge = CvBridge()
    rgb = read_image_rgb(kitti_dir / 'training' / 'image_2' / '000001.png')
    for enc in ('rgb8', 'bgr8'):
        msg = rgb_to_image_msg(rgb, 'cam', 1, encoding=enc)
        np.testing.assert_array_equal(bridge.imgmsg_to_cv2(msg, 'rgb8'), rgb)
        np.testing.assert_array_equal(image_to_rgb(bridge.cv2_to_imgmsg(bridge.imgmsg_to_cv2(msg), enc)), rgb)
    depth = (np.arange(37 * 53, dtype=np.uint32).reshape(37, 53) * 31 % 65536).astype(np.uint16)
    for big in (False, True):                                    # big-endian: the NumPy 2 fix of the install step
        f = array_to_image_fields(depth, 'mono16', is_bigendian=big)
        msg = Image(height=f.height, width=f.width, encoding=f.encoding, is_bigendian=f.is_bigendian, step=f.step,
                    data=f.data)
        np.testing.assert_array_equal(bridge.imgmsg_to_cv2(msg), depth)
        np.testing.assert_array_equal(image_to_array(msg), depth)
    m = array_to_image_msg(depth, 'mono16', 'cam', 1)
    assert bridge.cv2_to_imgmsg(depth, 'mono16').data.tobytes() == bytes(m.data)
