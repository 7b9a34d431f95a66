"""The design-card ROS packages (installed by scripts/setup.sh from ../shared/vendor, or a ROS distro's):
tf_transformations, tf2_ros, message_filters, sensor_msgs_py, cv_bridge, each against the project's own code on the
same data (the project's pairing stays: bench/bench_pairing.py; its point cloud conversion: bench/bench_conversions.py;
raw rgb8/bgr8 images stay with msgcodec: bench/bench_image_decode.py), tf2_ros through the project's
StaticTransformBroadcaster and the nodes' TF chain (Buffer + TransformListener), and cv_bridge in the nodes' image
decoding (ros_ncal/ros/image_decode.py) where it is installed.
"""
from __future__ import annotations

import importlib.util
import io
import sys
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


def cv_bridge_or_skip():
    """CvBridge, or a skip naming why the set-up did not build it (.vendor_build/cv_bridge.skipped)."""
    why = Path(sys.prefix) / '.vendor_build' / 'cv_bridge.skipped'
    reason = why.read_text().strip() if why.is_file() else 'NCAL_CV_BRIDGE=1 bash scripts/setup.sh builds it'
    return pytest.importorskip('cv_bridge', reason=f'cv_bridge not installed: {reason}').CvBridge


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

    from ros_ncal.geometry import chain_transform
    from ros_ncal.nodes._common import TfFrames
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
    nodes_tf = TfFrames()                                         # the nodes' chain: tf2_ros behind the checks
    nodes_tf.listen(sub, lambda msg, static: nodes_tf.add_message(msg, static), dynamic=False)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(pub)
    ex.add_node(sub)
    assert spin_until(ex, lambda: buf.can_transform('cam', 'velo_link', rclpy.time.Time())
                      and nodes_tf.lookup('cam', 'velo_link') is not None)
    T_cam_lidar = transform_stamped_to_matrix(buf.lookup_transform('cam', 'velo_link', rclpy.time.Time()))
    expected = invert(T_base_cam) @ T_base_lidar
    np.testing.assert_allclose(T_cam_lidar.T_parent_child, expected, atol=1e-9)
    np.testing.assert_allclose(nodes_tf.lookup('cam', 'velo_link'), expected, atol=1e-9)
    np.testing.assert_allclose(nodes_tf.lookup('velo_link', 'cam'), invert(expected), atol=1e-9)
    # the library's chain look-up without ROS (the bag reader's) agrees
    edges = {('base_link', 'velo_link'): T_base_lidar, ('base_link', 'cam'): T_base_cam}
    np.testing.assert_allclose(chain_transform(edges, 'cam', 'velo_link'), expected, atol=1e-9)
    ex.shutdown()


def test_nodes_take_the_lidar_camera_chain_from_tf2_ros_on_the_live_graph():
    """The calibrator's front end resolves its nominal through a tf2_ros TransformListener + Buffer: a
    base_link -> LiDAR / base_link -> camera chain sent by another node (the project's tf2_ros broadcaster) gives
    T_cam_lidar; hostile transforms (NaN, quaternion off unit norm, parent == child, empty frame) are rejected
    and counted and never reach tf2; /tf is taken only with input.tf_topic; after freeze_tf nothing changes."""
    from node_harness import CAMERA_FRAME, LIDAR_FRAME, RosGraph
    from tf2_msgs.msg import TFMessage

    from ros_ncal.nodes.calibrator import CalibratorNode
    from ros_ncal.ros.conversions import matrix_to_transform_stamped
    from ros_ncal.ros.qos import TF_STATIC_QOS
    from ros_ncal.ros.tf_static import StaticTransformBroadcaster
    rng = np.random.default_rng(9)
    T_base_lidar, T_base_cam, T_odom_base = random_rigid(rng), random_rigid(rng), random_rigid(rng)
    base = {'backend': 'none', 'overlay.enabled': False}
    with RosGraph() as g:
        only_static = g.make(CalibratorNode, base, node_name='cal_static')
        with_tf = g.make(CalibratorNode, dict(base, **{'input.tf_topic': True}), node_name='cal_tf')
        nodes = (only_static, with_tf)
        for nd in nodes:
            assert type(nd.input.frames.buffer).__module__.startswith('tf2_ros')
        assert only_static.input.frames.listener.tf_sub not in only_static.subscriptions   # /tf_static only
        assert with_tf.input.frames.listener.tf_sub in with_tf.subscriptions
        bc = StaticTransformBroadcaster(g.helper)
        assert bc.uses_tf2_ros
        bad = []
        for kind in ('nan', 'norm', 'self', 'empty'):
            ts = matrix_to_transform_stamped(T_base_lidar, 'base_link', LIDAR_FRAME, 1)
            if kind == 'nan':
                ts.transform.translation.y = float('nan')
            elif kind == 'norm':
                r = ts.transform.rotation       # |q| = 1.004: tf2 alone keeps it (its test: | |q|^2 - 1 | < 1e-2)
                r.x, r.y, r.z, r.w = r.x * 1.004, r.y * 1.004, r.z * 1.004, r.w * 1.004
            elif kind == 'self':
                ts.child_frame_id = 'base_link'
            else:
                ts.header.frame_id = ''
            bad.append(ts)
        hostile = g.helper.create_publisher(TFMessage, '/tf_static', TF_STATIC_QOS)
        hostile.publish(TFMessage(transforms=bad))
        assert g.wait_for(lambda: all(nd.input.frames.rejected == 4 for nd in nodes), 10)
        assert all(nd.input.nominal_extrinsic(LIDAR_FRAME, CAMERA_FRAME) is None for nd in nodes)
        bc.send_matrix(T_base_lidar, 'base_link', LIDAR_FRAME, 1)
        bc.send_matrix(T_base_cam, '/base_link', CAMERA_FRAME, 1)     # a leading slash is stripped for tf2
        expected = invert(T_base_cam) @ T_base_lidar
        assert g.wait_for(lambda: all(nd.input.nominal_extrinsic(LIDAR_FRAME, CAMERA_FRAME) is not None
                                      for nd in nodes), 10)
        for nd in nodes:
            np.testing.assert_allclose(nd.input.nominal_extrinsic(LIDAR_FRAME, CAMERA_FRAME), expected, atol=1e-9)
        # /tf (dynamic): odom -> base_link, only for the node with input.tf_topic
        tf_pub = g.helper.create_publisher(TFMessage, '/tf', 100)
        assert g.wait_for(lambda: tf_pub.get_subscription_count() >= 1, 10)
        stamp = 1_700_000_000 * 10**9
        tf_pub.publish(TFMessage(transforms=[matrix_to_transform_stamped(T_odom_base, 'odom', 'base_link', stamp)]))
        assert g.wait_for(lambda: with_tf.input.frames.lookup('odom', LIDAR_FRAME) is not None, 10)
        np.testing.assert_allclose(with_tf.input.frames.lookup('odom', LIDAR_FRAME), T_odom_base @ T_base_lidar,
                                   atol=1e-9)
        assert only_static.input.frames.lookup('odom', LIDAR_FRAME) is None
        # frozen (the calibrator does this before its first publication): a new nominal is not taken
        for nd in nodes:
            nd.input.freeze_tf()
        bc.send_matrix(T_base_cam @ random_rigid(rng), 'base_link', CAMERA_FRAME, 1)
        hostile.publish(TFMessage(transforms=bad))
        time.sleep(1.0)
        for nd in nodes:
            np.testing.assert_allclose(nd.input.nominal_extrinsic(LIDAR_FRAME, CAMERA_FRAME), expected, atol=1e-9)
            assert nd.input.frames.rejected == 4



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
    # built with NCAL_CV_BRIDGE=1 (CI sets it; needs Debian's libopencv-dev: scripts/install_ros_vendor.sh)
    CvBridge = cv_bridge_or_skip()

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


# -- cv_bridge in the nodes' image decoding (ros_ncal/ros/image_decode.py; evidence: bench/bench_image_decode.py) --
def _image(arr, encoding, pad=0):
    from sensor_msgs.msg import Image
    rows = np.ascontiguousarray(arr).reshape(arr.shape[0], -1).view(np.uint8)
    if pad:
        rows = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    return Image(height=arr.shape[0], width=arr.shape[1], encoding=encoding, is_bigendian=0, step=rows.shape[1],
                 data=rows.tobytes())


def _mosaic(rgb, pattern):
    """Bayer mosaic of an RGB image; pattern like 'rggb' (top-left 2x2 cell, row-major)."""
    out = np.empty(rgb.shape[:2], rgb.dtype)
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[dy::2, dx::2] = rgb[dy::2, dx::2, 'rgb'.index(pattern[k])]
    return out


def test_nodes_image_decoder_uses_cv_bridge_where_it_fits(kitti_dir):
    cv_bridge_or_skip()
    from sensor_msgs.msg import CompressedImage

    from ros_ncal.msgcodec import compressed_to_rgb
    from ros_ncal.ros.image_decode import (CV_BRIDGE_ENCODINGS, CV_BRIDGE_FASTER, ImageDecoder,
                                           UnsupportedEncodingError)
    dec, plain = ImageDecoder(), ImageDecoder(use_cv_bridge=False)
    assert dec.bridge is not None and plain.bridge is None
    rgb = read_image_rgb(kitti_dir / 'training' / 'image_2' / '000001.png')[100:164, 300:390]   # 90 x 64
    H, W = rgb.shape[:2]
    # rgb8 / bgr8 stay with msgcodec: with 2 bytes of row padding cv_bridge alone mis-decodes (step // 3 pixels)
    for enc, arr in (('rgb8', rgb), ('bgr8', rgb[:, :, ::-1])):
        msg = _image(arr, enc, pad=2)
        assert dec.tool_for(enc) == 'msgcodec'
        np.testing.assert_array_equal(dec.to_rgb(msg), rgb)
        assert not np.array_equal(dec.bridge.imgmsg_to_cv2(msg, 'rgb8'), rgb)
    # rgba8 / bgra8 / mono8: cv_bridge (faster, the same pixels as msgcodec), row padding removed first
    alpha = np.full((H, W, 1), 255, np.uint8)
    for enc, arr in (('rgba8', np.concatenate([rgb, alpha], 2)), ('bgra8', np.concatenate([rgb[:, :, ::-1], alpha], 2)),
                     ('mono8', rgb[:, :, 1])):
        assert enc in CV_BRIDGE_FASTER and dec.tool_for(enc) == 'cv_bridge' and plain.tool_for(enc) == 'msgcodec'
        for pad in (0, 3):
            n = dec.used['cv_bridge']
            np.testing.assert_array_equal(dec.to_rgb(_image(arr, enc, pad)), plain.to_rgb(_image(arr, enc, pad)))
            assert dec.used['cv_bridge'] == n + 1
    # colour encodings only cv_bridge knows: Bayer (a flat colour comes back exactly), YUV, 16-bit colour
    flat = np.empty((H, W, 3), np.uint8)
    flat[:] = (200, 100, 50)
    for pattern in ('rggb', 'bggr', 'gbrg', 'grbg'):
        for bits in (8, 16):
            arr = _mosaic(flat, pattern) if bits == 8 else _mosaic(flat, pattern).astype(np.uint16) * 257
            out = dec.to_rgb(_image(arr, f'bayer_{pattern}{bits}', pad=2 * (bits // 8)))
            assert out.shape == (H, W, 3) and out.dtype == np.uint8
            np.testing.assert_array_equal(out[2:-2, 2:-2], flat[2:-2, 2:-2])
    grey = np.full((H, W), 77, np.uint8)
    for enc, arr in (('yuv422', np.stack([np.full((H, W), 128, np.uint8), grey], 2)),      # U Y V Y
                     ('yuv422_yuy2', np.stack([grey, np.full((H, W), 128, np.uint8)], 2))):  # Y U Y V
        for pad in (0, 3):                          # 3 bytes: not whole pixels, where cv_bridge alone would shear
            out = dec.to_rgb(_image(arr, enc, pad))
            assert out.shape == (H, W, 3) and np.abs(out.astype(int) - 71).max() <= 1    # BT.601 grey 77 -> 71
    for enc, arr in (('rgb16', rgb), ('bgr16', rgb[:, :, ::-1]), ('rgba16', np.concatenate([rgb, alpha], 2)),
                     ('bgra16', np.concatenate([rgb[:, :, ::-1], alpha], 2))):
        np.testing.assert_array_equal(dec.to_rgb(_image(arr.astype(np.uint16) * 257, enc)), rgb)
    for enc in CV_BRIDGE_ENCODINGS:
        assert enc in dec.encodings and enc not in plain.encodings
        with pytest.raises(UnsupportedEncodingError, match='need cv_bridge'):
            plain.check(_image(np.zeros((4, 6), np.uint8), enc))
    with pytest.raises(ValueError, match='smaller than width'):
        dec.check(_image(np.zeros((4, 6), np.uint8), 'yuv422'))           # 1 byte per pixel: step too small
    # CompressedImage: cv_bridge (cv2.imdecode), the same pixels as msgcodec's PIL path
    from PIL import Image as PILImage
    for fmt in ('jpeg', 'png'):
        buf = io.BytesIO()
        PILImage.fromarray(rgb).save(buf, format=fmt.upper())
        msg = CompressedImage(format=fmt, data=buf.getvalue())
        n = dec.used['cv_bridge']
        np.testing.assert_array_equal(dec.compressed_to_rgb(msg), compressed_to_rgb(msg.data, fmt))
        assert dec.used['cv_bridge'] == n + 1
    buf = io.BytesIO()                              # a 16-bit PNG: cv_bridge gives uint16, msgcodec decodes it
    PILImage.fromarray(rgb[:, :, 0].astype(np.uint16) * 200).save(buf, format='PNG')
    n = dec.used['msgcodec']
    out = dec.compressed_to_rgb(CompressedImage(format='png', data=buf.getvalue()))
    assert out.dtype == np.uint8 and out.shape == (H, W, 3) and dec.used['msgcodec'] == n + 1
    with pytest.raises(ValueError, match='not decodable'):
        dec.compressed_to_rgb(CompressedImage(format='jpeg', data=b'not a jpeg'))


def test_a_node_takes_a_bayer_camera_through_cv_bridge_on_the_live_graph():
    """The collector / calibrator front end (SensorInput) pairs and decodes a bayer_rggb8 camera where cv_bridge is
    installed (msgcodec alone drops it as image_encoding)."""
    cv_bridge_or_skip()
    from node_harness import CAMERA_FRAME, LIDAR_FRAME, T_CAM_LIDAR_AXES, RosGraph, SensorPublisher, synthetic_frame
    from rclpy.node import Node

    from ros_ncal.data.sensor_input import ExtrinsicParams, SensorInputConfig
    from ros_ncal.health import DropCounter
    from ros_ncal.msgcodec import CameraIntrinsics
    from ros_ncal.nodes._common import SensorInput
    from ros_ncal.ros.conversions import intrinsics_to_camera_info_msg, points_to_cloud_msg
    pts, _, K = synthetic_frame(np.random.default_rng(2), hw=(48, 64))
    flat = np.empty((48, 64, 3), np.uint8)
    flat[:] = (30, 160, 220)
    stamp = 1_700_000_000 * 10**9
    with RosGraph() as g:
        node = g.add(Node('front_end', context=g.context))
        pairs, drops = [], DropCounter()
        inp = SensorInput(node, SensorInputConfig(reliable=True),
                          ExtrinsicParams(T_cam_lidar=list(T_CAM_LIDAR_AXES.ravel())), drops, pairs.append)
        assert inp.images.tool_for('bayer_rggb8') == 'cv_bridge'
        pub = SensorPublisher(g.helper)
        assert pub.wait_matched()
        pub.info.publish(intrinsics_to_camera_info_msg(CameraIntrinsics(K=K, width=64, height=48), CAMERA_FRAME, stamp))
        msg = _image(_mosaic(flat, 'rggb'), 'bayer_rggb8')
        msg.header.frame_id, msg.header.stamp.sec = CAMERA_FRAME, stamp // 10**9
        assert g.wait_for(lambda: inp.received().get('camera_info', 0) >= 1, 10)
        pub.image.publish(msg)
        pub.points.publish(points_to_cloud_msg(pts, LIDAR_FRAME, stamp))
        assert g.wait_for(lambda: len(pairs) == 1, 10), drops.snapshot()
        n = inp.images.used['cv_bridge']
        rgb = pairs[0].decode_image()
        assert rgb.shape == (48, 64, 3) and inp.images.used['cv_bridge'] == n + 1
        np.testing.assert_array_equal(rgb[2:-2, 2:-2], flat[2:-2, 2:-2])
        assert not drops.snapshot()
