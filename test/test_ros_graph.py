"""Live rclpy graph: a second PROCESS publishes cloud, image, /tf_static (late joiner); bag player; diagnostics."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import rclpy  # noqa: E402  (conftest applied the network-safety env first)
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from tf2_msgs.msg import TFMessage

from ros_ncal.bag.kitti import write_kitti_bag
from ros_ncal.data.kitti_files import read_image_rgb, read_kitti_calib, read_velodyne
from ros_ncal.geometry import invert
from ros_ncal.msgcodec import cloud_to_xyzi, image_to_rgb, stamp_to_ns, transform_stamped_to_matrix
from ros_ncal.ros.qos import TF_STATIC_QOS, reliable_qos

REPO = Path(__file__).resolve().parents[1]

PUBLISHER = r'''
import sys, threading, time
import numpy as np
from ros_ncal.rosenv import apply_safe_ros_env
apply_safe_ros_env()
import rclpy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from ros_ncal.data.kitti_files import read_image_rgb, read_kitti_calib, read_velodyne
from ros_ncal.ros.conversions import points_to_cloud_msg, rgb_to_image_msg
from ros_ncal.ros.diagnostics import DiagnosticsHelper
from ros_ncal.ros.qos import reliable_qos
from ros_ncal.ros.tf_static import StaticTransformBroadcaster
split = sys.argv[1]
pts = read_velodyne(f'{split}/velodyne/000001.bin')
rgb = read_image_rgb(f'{split}/image_2/000001.png')
T = read_kitti_calib(f'{split}/calib/000001.txt')['T_cam_lidar']
rclpy.init()
node = rclpy.create_node('graph_publisher')
tf = StaticTransformBroadcaster(node)
tf.send_matrix(np.linalg.inv(T), 'velo_link', 'cam_optical', 1_000_000_007)
tf.send_matrix(np.eye(4), 'base_link', 'velo_link', 1_000_000_008)  # accumulated with the first
cloud_pub = node.create_publisher(PointCloud2, '/test/points', reliable_qos(5))
image_pub = node.create_publisher(Image, '/test/image', reliable_qos(5))
diag = DiagnosticsHelper(node, 'graph test')
cloud = points_to_cloud_msg(pts, 'velo_link', 1_000_000_007, extras={'label': (np.arange(len(pts)) % 7).astype(np.uint16)})
image = rgb_to_image_msg(rgb, 'cam_optical', 1_000_000_009, encoding='bgr8')
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
print('READY uses_tf2_ros=%s' % tf.uses_tf2_ros, flush=True)
t_end = time.time() + 40
while not done.is_set() and time.time() < t_end:
    cloud_pub.publish(cloud)
    image_pub.publish(image)
    diag.publish('WARN', 'testing', {'count': 3, 'latency_ms': 1.5})
    rclpy.spin_once(node, timeout_sec=0.1)
node.destroy_node()
rclpy.shutdown()
'''


def _spin_until(executor, cond, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not cond():
        executor.spin_once(timeout_sec=0.05)
    return cond()


def test_two_process_cloud_image_and_late_joiner_tf_static(ros_context, kitti_dir):
    split = kitti_dir / 'training'
    proc = subprocess.Popen([sys.executable, '-c', PUBLISHER, str(split)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=dict(os.environ))
    try:
        t0 = time.monotonic()
        line = proc.stdout.readline()
        print(f'publisher ready after {time.monotonic() - t0:.2f} s')
        assert line.startswith('READY'), f'publisher failed: {line!r} {proc.stderr.read() if proc.poll() is not None else ""}'
        time.sleep(0.3)  # its /tf_static went out before we existed: we are a late joiner
        from diagnostic_msgs.msg import DiagnosticArray
        node = rclpy.create_node('graph_listener', context=ros_context)
        got = {'tf': [], 'cloud': [], 'image': [], 'diag': []}
        node.create_subscription(TFMessage, '/tf_static', lambda m: got['tf'].append(m), TF_STATIC_QOS)
        node.create_subscription(PointCloud2, '/test/points', lambda m: got['cloud'].append(m), reliable_qos(5))
        node.create_subscription(Image, '/test/image', lambda m: got['image'].append(m), reliable_qos(5))
        node.create_subscription(DiagnosticArray, '/diagnostics', lambda m: got['diag'].append(m), 10)
        ex = SingleThreadedExecutor(context=ros_context)
        ex.add_node(node)
        t0 = time.monotonic()
        ok = _spin_until(ex, lambda: all(got.values()), 30.0)
        print(f'all received after {time.monotonic() - t0:.2f} s')
        assert ok, {k: len(v) for k, v in got.items()}
        # /tf_static: one latched message holding BOTH frames the publisher sent.
        tfs = {t.child_frame_id: transform_stamped_to_matrix(t) for t in got['tf'][-1].transforms}
        assert set(tfs) == {'cam_optical', 'velo_link'}
        T = read_kitti_calib(split / 'calib' / '000001.txt')['T_cam_lidar']
        np.testing.assert_allclose(invert(tfs['cam_optical'].T_parent_child), T, atol=1e-9)
        assert tfs['cam_optical'].parent_frame == 'velo_link' and tfs['cam_optical'].stamp_ns == 1_000_000_007
        dec = cloud_to_xyzi(got['cloud'][0], extra_fields=None)
        pts = read_velodyne(split / 'velodyne' / '000001.bin')
        np.testing.assert_array_equal(dec.points, pts)
        np.testing.assert_array_equal(dec.extras['label'], np.arange(len(pts)) % 7)
        assert stamp_to_ns(got['cloud'][0].header.stamp) == 1_000_000_007
        assert got['image'][0].encoding == 'bgr8'
        np.testing.assert_array_equal(image_to_rgb(got['image'][0]), read_image_rgb(split / 'image_2' / '000001.png'))
        status = got['diag'][0].status[0]
        assert status.name == 'graph_publisher: graph test' and status.level == b'\x01'
        assert {kv.key: kv.value for kv in status.values} == {'count': '3', 'latency_ms': '1.500'}
        ex.shutdown()
        node.destroy_node()
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read()


def test_player_replays_bag_with_original_stamps_and_latched_tf(ros_context, kitti_dir, tmp_path):
    from ros_ncal.ros.player import BagPlayer, PlayerConfig
    split = kitti_dir / 'training'
    bag_dir, counts = write_kitti_bag(split, tmp_path / 'p.mcap', frames=['000002', '000003'], hz=20.0)
    node = rclpy.create_node('player_test_sub', context=ros_context)
    pnode = rclpy.create_node('player_test_pub', context=ros_context)
    clouds, images, infos = [], [], []
    node.create_subscription(CameraInfo, '/kitti/camera/camera_info', infos.append, reliable_qos(10))
    node.create_subscription(PointCloud2, '/kitti/velo/points', clouds.append, reliable_qos(10))
    node.create_subscription(Image, '/kitti/camera/image_raw', images.append, reliable_qos(10))
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(pnode)
    player = BagPlayer(pnode, bag_dir, PlayerConfig(rate=0.0, wait_for_subscribers_s=10.0))
    import threading
    th = threading.Thread(target=player.play)
    th.start()
    assert _spin_until(ex, lambda: len(clouds) == 2 and len(images) == 2 and not th.is_alive(), 30.0)
    th.join()
    assert player.stats.published == counts
    assert [stamp_to_ns(c.header.stamp) for c in clouds] == [1_700_000_000_000_000_000, 1_700_000_000_050_000_000]
    np.testing.assert_array_equal(cloud_to_xyzi(clouds[1]).points, read_velodyne(split / 'velodyne' / '000003.bin'))
    # A subscriber created after playback still gets /tf_static (TRANSIENT_LOCAL depth 1).
    late = []
    node.create_subscription(TFMessage, '/tf_static', late.append, TF_STATIC_QOS)
    assert _spin_until(ex, lambda: late, 10.0)
    T = read_kitti_calib(split / 'calib' / '000003.txt')['T_cam_lidar']
    np.testing.assert_allclose(invert(transform_stamped_to_matrix(late[0].transforms[0]).T_parent_child), T, atol=1e-9)
    ex.shutdown()
    node.destroy_node()
    pnode.destroy_node()


def test_player_start_paused_resume_service_and_loop(ros_context, kitti_dir, tmp_path):
    import threading

    from std_srvs.srv import Trigger

    from ros_ncal.ros.player import BagPlayer, PlayerConfig
    bag_dir, _ = write_kitti_bag(kitti_dir / 'training', tmp_path / 'l.mcap', frames=['000001'])
    pnode = rclpy.create_node('paused_player', context=ros_context)
    node = rclpy.create_node('paused_sub', context=ros_context)
    clouds = []
    node.create_subscription(PointCloud2, '/kitti/velo/points', clouds.append, reliable_qos(10))
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(pnode)
    player = BagPlayer(pnode, bag_dir, PlayerConfig(rate=0.0, loop=True, start_paused=True,
                                                    topics=['/kitti/velo/points']))
    th = threading.Thread(target=player.play)
    th.start()
    try:
        _spin_until(ex, lambda: False, 0.5)
        assert clouds == []  # paused
        client = node.create_client(Trigger, '/paused_player/resume')
        assert _spin_until(ex, lambda: client.service_is_ready(), 10.0)
        future = client.call_async(Trigger.Request())
        assert _spin_until(ex, lambda: future.done() and len(clouds) >= 3, 20.0)
        assert future.result().success
    finally:
        player.stop()
        th.join(timeout=10)
    assert not th.is_alive() and player.stats.loops >= 2
    ex.shutdown()
    node.destroy_node()
    pnode.destroy_node()
