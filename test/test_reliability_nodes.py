"""Reliability guarantees of the nodes on a real rclpy graph and real processes (docs/reliability.md):
TF sanity, /diagnostics verdicts, honest covariance, a full disk under the collector, delivery of large
best-effort messages with the shipped transport, lost-message counting, the default domain, and Ctrl-C."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from node_harness import (CAMERA_FRAME, LIDAR_FRAME, T_CAM_LIDAR_AXES, RosGraph, SensorPublisher, StatusListener, TopicLog,
                          synthetic_frame)
from support import DiskFull

from ros_ncal.calib import CalibResult, register_calibrator
from ros_ncal.calib.result import ESTIMATED_ROTATION
from ros_ncal.geometry import make_T, rotvec_to_matrix
from ros_ncal.nodes.calibrator import CalibratorNode, tf_frames_problem
from ros_ncal.nodes.collector import CollectorNode

REPO = Path(__file__).resolve().parents[1]
STAMP0 = 1_700_000_000 * 10**9
PERIOD = 100_000_000


# ----------------------------------------------------------------------------- TF sanity (item 2)


def test_same_camera_and_lidar_frame_is_dropped_as_frame_mismatch_and_never_published():
    """Both sensors in 'base_link' (a common misconfiguration): no pair, no identity chain, nothing on
    /tf_static, the drops counted as frame_mismatch; before the fix the pair went through with an identity
    nominal and the calibrator published base_link -> base_link."""
    from tf2_msgs.msg import TFMessage

    from ros_ncal.ros.qos import TF_STATIC_QOS
    register_calibrator('test_rel_confident', lambda **_: _Confident(jitter_deg=0.2), overwrite=True)
    rng = np.random.default_rng(1)
    with RosGraph() as g:
        node = g.make(CalibratorNode, {'backend': 'test_rel_confident', 'fusion.min_frames': 1, 'min_period_s': 0.0,
                                       'tf.min_confidence': 0.1, 'tf.max_rot_std_deg': 90.0,
                                       'tf.max_trans_std_m': 10.0, 'tf.min_change_deg': 0.0, 'tf.min_change_m': 0.0,
                                       'overlay.enabled': False})
        pub = SensorPublisher(g.helper)
        tf_log = TopicLog(g.helper, TFMessage, '/tf_static', TF_STATIC_QOS)
        assert pub.wait_matched()
        for i in range(4):
            pub.send_frame(STAMP0 + i * PERIOD, *synthetic_frame(rng), lidar_frame='base_link', camera_frame='base_link')
        assert g.wait_for(lambda: node.drops.snapshot().get('frame_mismatch', 0) >= 3, 20), node.status()
        time.sleep(0.3)
        assert node.n_pairs == 0 and node.n_tf_published == 0
        assert not any(t.header.frame_id == t.child_frame_id for m in tf_log.msgs for t in m.transforms)
        # the same node with distinct frames (and their nominal on /tf_static) calibrates and publishes LiDAR -> camera
        pub.send_tf_static(T_CAM_LIDAR_AXES)
        assert g.wait_for(lambda: node.input.frames.lookup(CAMERA_FRAME, LIDAR_FRAME) is not None, 10)
        for i in range(4, 7):
            pub.send_frame(STAMP0 + i * PERIOD, *synthetic_frame(rng))
            assert g.wait_for(lambda: node.n_calibrated >= i - 3, 20), node.status()
        assert g.wait_for(lambda: node.n_tf_published >= 1, 20), node.status()
        assert g.wait_for(lambda: any((t.header.frame_id, t.child_frame_id) == (LIDAR_FRAME, CAMERA_FRAME)
                                      for m in tf_log.msgs for t in m.transforms), 10)
    assert tf_frames_problem('a', 'a') == 'parent equals child'
    assert 'configured LiDAR' in tf_frames_problem('base_link', 'cam', lidar_frame='velo_link')
    assert 'configured camera' in tf_frames_problem('velo_link', 'base_link', 'velo_link', 'cam')
    assert tf_frames_problem('velo_link', 'cam', 'velo_link', 'cam') == ''


class _Confident:
    """Answers the guess (the nominal) with confidence 0.9, estimating the rotation only."""

    def __init__(self, jitter_deg: float = 0.0, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.jitter = jitter_deg

    def estimate(self, sample, T_init):
        dR = rotvec_to_matrix(np.radians(self.rng.normal(0, self.jitter, 3))) if self.jitter else np.eye(3)
        return CalibResult(make_T(dR, np.zeros(3)) @ np.asarray(T_init), 0.9, True, 'ok', estimated=ESTIMATED_ROTATION)


# ----------------------------------------------------------------------------- diagnostics (item 4)


def test_diagnostics_warn_then_error_when_every_pair_is_dropped():
    """No extrinsic anywhere: every pair is dropped as no_extrinsic. /diagnostics says WARN with the reason
    within the window, then ERROR once it persisted (it said OK before the fix)."""
    rng = np.random.default_rng(2)
    params = {'backend': 'none', 'diagnostics_period_s': 0.1, 'overlay.enabled': False, 'health.window_s': 3.0,
              'health.min_events': 5, 'health.error_after_s': 1.0, 'health.stale_s': 0.0}
    with RosGraph() as g:
        node = g.make(CalibratorNode, params)
        pub = SensorPublisher(g.helper)
        listener = StatusListener(g.helper, '/calibrator/status')
        assert pub.wait_matched()
        for i in range(8):
            pub.send_frame(STAMP0 + i * PERIOD, *synthetic_frame(rng))
            time.sleep(0.05)
        assert g.wait_for(lambda: node.drops.snapshot().get('no_extrinsic', 0) >= 6, 20), node.status()

        def levels():
            return [d for d in listener.diag_values('calibrator') if 'no_extrinsic' in d.get('health.reasons', '')]
        assert g.wait_for(lambda: any(d['_level'] == 1 for d in levels()), 10), listener.diag_values('calibrator')[-1:]
        assert g.wait_for(lambda: any(d['_level'] == 2 for d in levels()), 10), listener.diag_values('calibrator')[-1:]
        err = [d for d in levels() if d['_level'] == 2][-1]
        assert 'drop ratio' in err['_message'] and float(err['health.drop_ratio']) == 1.0
        assert g.wait_for(lambda: listener.latest is not None and listener.latest['health']['level'] == 'ERROR', 5)


# ----------------------------------------------------------------------------- covariance (item 5)


def test_unestimated_translation_carries_the_prior_in_extrinsic_and_gates_tf():
    """A rotation-only backend: ~/extrinsic's translation variance is the configured prior (the issue: 1e-13),
    and a tf.max_trans_std_m below the prior keeps /tf_static silent while one above it lets it publish."""
    from geometry_msgs.msg import PoseWithCovarianceStamped
    register_calibrator('test_rel_rot_only', lambda **_: _Confident(jitter_deg=0.05, seed=3), overwrite=True)
    rng = np.random.default_rng(3)
    base = {'backend': 'test_rel_rot_only', 'extrinsic.T_cam_lidar': list(T_CAM_LIDAR_AXES.ravel()),
            'fusion.min_frames': 2, 'fusion.prior_trans_std_m': 0.03, 'tf.min_confidence': 0.5,
            'tf.max_rot_std_deg': 5.0, 'tf.min_change_deg': 0.0, 'tf.min_change_m': 0.0, 'overlay.enabled': False}
    for gate, published in ((0.02, False), (0.05, True)):
        with RosGraph() as g:
            node = g.make(CalibratorNode, dict(base, **{'tf.max_trans_std_m': gate}))
            pub = SensorPublisher(g.helper)
            log = TopicLog(g.helper, PoseWithCovarianceStamped, '/calibrator/extrinsic')
            assert pub.wait_matched()
            for i in range(4):
                pub.send_frame(STAMP0 + i * PERIOD, *synthetic_frame(rng))
                assert g.wait_for(lambda: node.n_calibrated >= i + 1, 20), node.status()
            assert g.wait_for(lambda: len(log.msgs) >= 4, 10)
            st = node.status()
            assert st['trans_std_m'] == pytest.approx(0.03, rel=1e-3) and st['estimated'] == 'rxryrz'
            cov = np.array(log.msgs[-1].pose.covariance).reshape(6, 6)
            # T_cam_lidar has no translation here: the pose's translation block is R^T (prior / 3) R
            np.testing.assert_allclose(np.trace(cov[:3, :3]), 0.03 ** 2, rtol=1e-3)
            assert (node.n_tf_published > 0) == published, (gate, st)


# ----------------------------------------------------------------------------- collector on a full disk (item 9)


def test_collector_on_a_full_disk_waits_in_warn_and_resumes_by_itself(tmp_path, monkeypatch):
    from ros_ncal.data.shards import ShardDataset
    out = tmp_path / 'ds'
    disk = DiskFull(monkeypatch, out)
    rng = np.random.default_rng(4)
    params = {'output_dir': str(out), 'extrinsic.T_cam_lidar': list(T_CAM_LIDAR_AXES.ravel()),
              'status_period_s': 0.1, 'disk_retry_s': 0.3, 'samples_per_shard': 3}
    with RosGraph() as g:
        col = g.make(CollectorNode, params)
        pub = SensorPublisher(g.helper)
        listener = StatusListener(g.helper, '/collector/status')
        assert pub.wait_matched()
        k = 0

        def send(n):
            nonlocal k
            for _ in range(n):
                pub.send_frame(STAMP0 + k * PERIOD, *synthetic_frame(rng))
                k += 1
                time.sleep(0.15)
        send(2)
        assert g.wait_for(lambda: col.written == 2, 30), col.status()
        disk.full = True
        send(3)
        assert g.wait_for(lambda: col.state == 'disk_full', 30), col.status()
        assert not list(out.glob('.*.tmp')), 'partial temporary shard left behind'
        assert g.wait_for(lambda: any(d['_level'] == 1 and d['state'] == 'disk_full'
                                      for d in listener.diag_values('collector')), 10)
        assert [s.stamp_ns for s in ShardDataset(out)] == [STAMP0, STAMP0 + PERIOD]   # committed stay readable
        disk.full = False
        send(6)
        assert g.wait_for(lambda: col.state == 'recording' and col.written >= 4, 30), col.status()
        assert col.disk_full_events == 1 and col.status()['dropped'].get('disk_full', 0) >= 1
    ds = ShardDataset(out)
    assert len(list(ds)) == col.written and not ds.skipped and not list(out.glob('.*.tmp'))


# ----------------------------------------------------------------------------- transport (item 3)

PUBLISHER = r'''
import json, os, sys, time
import numpy as np
from ros_ncal.rosenv import apply_safe_ros_env
if os.environ.get('NCAL_TEST_OLD_TRANSPORT') == '1':
    # the settings before issue 12: LOCALHOST range (rmw's own 512 KiB SHM segment plus UDP on all interfaces)
    os.environ.update(RMW_IMPLEMENTATION='rmw_fastrtps_cpp', ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
                      FASTDDS_BUILTIN_TRANSPORTS='SHM')
    os.environ.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
else:
    apply_safe_ros_env()
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String
from ros_ncal.msgcodec import CameraIntrinsics
from ros_ncal.ros.conversions import intrinsics_to_camera_info_msg, points_to_cloud_msg, rgb_to_image_msg
n_frames, hz, ns = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
rclpy.init()
node = rclpy.create_node('ncal_test_sensor_driver')
q = qos_profile_sensor_data      # what a camera / LiDAR driver offers: BEST_EFFORT, KEEP_LAST 5
pi = node.create_publisher(Image, ns + '/image', q)
pc = node.create_publisher(CameraInfo, ns + '/camera_info', q)
pp = node.create_publisher(PointCloud2, ns + '/points', q)
status = []
node.create_subscription(String, ns + '/calibrator/status', lambda m: status.append(json.loads(m.data)), 10)
rng = np.random.default_rng(0)
pts = np.concatenate([rng.uniform(2, 40, (125_000, 3)), rng.uniform(0, 1, (125_000, 1))], 1).astype(np.float32)
img = rng.integers(0, 255, (375, 1242, 3), dtype=np.uint8)
K = np.array([[700.0, 0, 621], [0, 700.0, 187], [0, 0, 1]])
info = intrinsics_to_camera_info_msg(CameraIntrinsics(K=K, D=np.zeros(5), width=1242, height=375), 'camera_optical_frame', 0)
deadline = time.monotonic() + float(os.environ.get('NCAL_TEST_MATCH_S', '120'))
while min(p.get_subscription_count() for p in (pi, pc, pp)) == 0:
    rclpy.spin_once(node, timeout_sec=0.05)
    if time.monotonic() > deadline:
        print('no subscriber', flush=True); sys.exit(3)
t_end = time.monotonic() + 1.0
while time.monotonic() < t_end:
    rclpy.spin_once(node, timeout_sec=0.05)
print('DRIVER_PID', os.getpid(), 'cloud_bytes', 125_000 * 16, 'image_bytes', img.nbytes, flush=True)
t0 = time.monotonic()
for k in range(n_frames):
    stamp = 1_700_000_000 * 10**9 + k * 100_000_000
    info.header.stamp.sec, info.header.stamp.nanosec = divmod(stamp, 10**9)
    pc.publish(info)
    pi.publish(rgb_to_image_msg(img, 'camera_optical_frame', stamp))
    pp.publish(points_to_cloud_msg(pts, 'velo_link', stamp))
    rclpy.spin_once(node, timeout_sec=0.0)
    time.sleep(max(0.0, t0 + (k + 1) / hz - time.monotonic()))
print('PUBLISHED', n_frames, 'frames in', round(time.monotonic() - t0, 2), 's', flush=True)
want = os.environ.get('NCAL_TEST_WAIT_STATUS')
t_end = time.monotonic() + (float(want) if want else 1.0)
while time.monotonic() < t_end:
    rclpy.spin_once(node, timeout_sec=0.05)
    if want and status and status[-1]['received'].get('image', 0) > 0 and status[-1]['received'].get('points', 0) > 0:
        print('STATUS', json.dumps(status[-1]['received']), flush=True)
        sys.exit(0)
sys.exit(4 if want else 0)
'''


def _udp_sockets(pid: int) -> list[str]:
    out = subprocess.run(['ss', '-uanp'], capture_output=True, text=True).stdout
    return [line.split()[3] for line in out.splitlines() if f'pid={pid},' in line]


def _deliver(n_frames: int, old_transport: bool):
    """A best-effort 'driver' process publishes n_frames of a 2 MB cloud + 1.4 MB image at 10 Hz to a
    calibrator in this process; returns (calibrator status, driver output, sockets seen)."""
    env = dict(os.environ, NCAL_TEST_OLD_TRANSPORT='1' if old_transport else '0')
    with RosGraph() as g:
        node = g.make(CalibratorNode, {'backend': 'none', 'overlay.enabled': False, 'diagnostics_period_s': 0.2,
                                       'extrinsic.T_cam_lidar': list(T_CAM_LIDAR_AXES.ravel())})
        listener = StatusListener(g.helper)
        driver = subprocess.Popen([sys.executable, '-c', PUBLISHER, str(n_frames), '10', ''], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
        sockets = {}
        try:
            lines = []
            for line in driver.stdout:
                lines.append(line)
                if line.startswith('DRIVER_PID'):
                    sockets = {'driver': _udp_sockets(driver.pid), 'nodes': _udp_sockets(os.getpid())}
            driver.wait(timeout=60)
        finally:
            if driver.poll() is None:
                driver.kill()
        assert driver.returncode == 0, ''.join(lines)
        time.sleep(0.5)
        assert g.wait_for(lambda: node.input.received().get('image', 0) + node.input.received().get('lost_image', 0)
                          >= 1, 5)
        node.publish_diagnostics()
        time.sleep(0.3)
        return node.status(), ''.join(lines), sockets, listener.diag_values('calibrator')


def test_best_effort_2mb_clouds_and_images_at_10hz_arrive_and_stay_on_loopback():
    """The issue: 3 of 40 images and 2 of 40 clouds arrived. With the shipped transport (ros_ncal.rosenv's
    Fast DDS profile) at least 95 % must, and neither process has a UDP socket off the loopback interface."""
    n = 30
    st, out, sockets, _ = _deliver(n, old_transport=False)
    rec = st['received']
    for who, socks in sockets.items():
        assert socks and all(s.startswith('127.0.0.1:') for s in socks), (who, socks)
    # nothing lost in the middleware (the old transport lost most samples here, with lost events)
    assert st['dropped'].get('message_lost', 0) == 0, (st['dropped'], rec, out)
    delivered = min(rec.get('image', 0), rec.get('points', 0)) / n
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if delivered < 0.95 and load > 2 * cpus:
        # a consumer starved of CPU loses samples in its KEEP_LAST queue, which no transport can save and no
        # event reports (bench/bench_qos.py: the same on both transports at load 24 on 2 cores)
        pytest.xfail(f'machine overloaded (load {load:.0f} on {cpus} CPUs): {rec}; {out.strip()}')
    assert delivered >= 0.95, (rec, out, f'load {load:.1f} on {cpus} CPUs')


def test_lost_messages_are_counted_and_shown_on_diagnostics():
    """With the transport settings from before the fix (a 512 KiB SHM segment at the publisher) most large
    messages are lost: the middleware's message-lost events are counted as drops and reach /diagnostics."""
    n = 30
    st, out, _, diags = _deliver(n, old_transport=True)
    rec = st['received']
    lost = sum(v for k, v in rec.items() if k.startswith('lost_'))
    assert lost > 0 and st['dropped'].get('message_lost', 0) == lost, (rec, st['dropped'], out)
    assert rec.get('image', 0) + rec.get('points', 0) < 2 * n
    assert any(int(d.get('dropped.message_lost', 0)) == lost for d in diags), diags[-1:]


# ----------------------------------------------------------------------------- default domain (item 6)


def _env_without_domain() -> dict:
    env = {k: v for k, v in os.environ.items() if k != 'ROS_DOMAIN_ID'}
    env['OPENBLAS_NUM_THREADS'] = '1'
    return env


def test_a_node_started_like_ros2_launch_without_a_domain_id_hears_a_driver_on_the_default_domain():
    """No ROS_DOMAIN_ID (what ros2 launch on a robot gives): the calibrator process and a driver process must
    both be on ROS's default domain 0 and meet (before the fix each derived its own domain from its pid)."""
    ns = f'/ncal_dom0_{uuid.uuid4().hex[:8]}'
    env = _env_without_domain()
    node = subprocess.Popen([sys.executable, '-m', 'ros_ncal.nodes.calibrator', '--ros-args', '-r', f'__ns:={ns}',
                             '-p', 'backend:=none', '-p', 'overlay.enabled:=false', '-p', 'diagnostics_period_s:=0.2'],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        driver = subprocess.run([sys.executable, '-c', PUBLISHER, '20', '10', ns], cwd=REPO, capture_output=True,
                                text=True, env=dict(env, NCAL_TEST_WAIT_STATUS='20', NCAL_TEST_MATCH_S='240'),
                                timeout=420)
    finally:
        node.send_signal(signal.SIGINT)
        try:
            node_out, _ = node.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
            node_out, _ = node.communicate()
    assert driver.returncode == 0, (driver.stdout + driver.stderr, node_out)
    rec = json.loads(driver.stdout.split('STATUS', 1)[1])
    assert rec['image'] > 0 and rec['points'] > 0
    assert node.returncode == 0 and 'Traceback' not in node_out, node_out
    from ros_ncal.rosenv import apply_safe_ros_env
    probe = {}
    apply_safe_ros_env(environ=probe)
    assert 'ROS_DOMAIN_ID' not in probe                       # nothing invented
    from ros_ncal.commands._domain import isolated_domain_id
    probe = {}
    apply_safe_ros_env(domain_id=isolated_domain_id(probe), environ=probe)
    assert 1 <= int(probe['ROS_DOMAIN_ID']) <= 100           # tests, demo, benchmarks ask for their own


# ----------------------------------------------------------------------------- Ctrl-C (item 7)


def _start(cmd, env=None):
    return subprocess.Popen(cmd, cwd=REPO, env=env or dict(os.environ, OPENBLAS_NUM_THREADS='1'),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigint_twice_exits_every_node_and_ncal_run_with_status_0_and_no_traceback(tmp_path, kitti_dir):
    """What ros2 launch does on Ctrl-C (SIGINT to every process, a second one soon after), sent to real
    processes of every node (the segmenter and detector with their shipped networks loaded) and ``ncal run``;
    and ``ncal play`` / the KITTI player end with status 0 after the last message (before: tracebacks,
    exit -2; the players aborted with exit 134)."""
    from ros_ncal.bag.kitti import write_kitti_bag
    bag, _ = write_kitti_bag(kitti_dir / 'training', tmp_path / 'b.mcap', frames=['000001'], hz=10.0)
    py = sys.executable
    suffix = uuid.uuid4().hex[:6]
    nodes = {
        'calibrator': [py, '-m', 'ros_ncal.nodes.calibrator', '--ros-args', '-r', f'__node:=cal_{suffix}',
                       '-p', 'backend:=none'],
        'collector': [py, '-m', 'ros_ncal.nodes.collector', '--ros-args', '-r', f'__node:=col_{suffix}',
                      '-p', f'output_dir:={tmp_path / "ds"}'],
        'extrinsic_publisher': [py, '-m', 'ros_ncal.nodes.extrinsic_publisher', '--ros-args',
                                '-r', f'__node:=ext_{suffix}'],
        'segmenter': [py, '-m', 'ros_ncal.nodes.segmenter', '--ros-args', '-r', f'__node:=seg_{suffix}'],
        'detector': [py, '-m', 'ros_ncal.nodes.detector', '--ros-args', '-r', f'__node:=det_{suffix}'],
        'ncal run': [py, '-m', 'ros_ncal.cli', 'run', '--arg', 'calibrator:=true',
                     '--param', 'calibrator:backend:=none', '--arg', f'points_topic:=/run_{suffix}/points'],
    }
    players = {
        'ncal play': [py, '-m', 'ros_ncal.cli', 'play', str(bag), '--rate', '0', '--linger', '0.2'],
        'kitti_player': [py, '-m', 'ros_ncal.nodes.player', '--ros-args', '-r', f'__node:=player_{suffix}',
                         '-p', f'bag:={bag}', '-p', 'rate:=0.0'],
    }
    procs = {name: _start(cmd) for name, cmd in {**nodes, **players}.items()}
    outputs = {name: [] for name in procs}
    readers = [threading.Thread(target=lambda n=n, p=p: outputs[n].extend(p.stdout), daemon=True)
               for n, p in procs.items()]
    for t in readers:
        t.start()
    names = {'calibrator': f'cal_{suffix}', 'collector': f'col_{suffix}', 'extrinsic_publisher': f'ext_{suffix}',
             'segmenter': f'seg_{suffix}', 'detector': f'det_{suffix}'}
    try:
        with RosGraph() as g:
            def up():
                seen = set(g.helper.get_node_names())
                ready = {n for n, nn in names.items() if nn in seen}
                if any('ncal run: started' in line for line in outputs['ncal run']):
                    ready.add('ncal run')
                return ready
            assert g.wait_for(lambda: up() == set(nodes), 600, period_s=0.2), (up(), {
                n: ''.join(outputs[n])[-500:] for n in nodes})
        time.sleep(1.0)
        for p in (procs[n] for n in nodes):
            p.send_signal(signal.SIGINT)
        time.sleep(0.2)
        for p in (procs[n] for n in nodes):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for name, p in procs.items():
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    for t in readers:
        t.join(5)
    for name, p in procs.items():
        text = ''.join(outputs[name])
        assert p.returncode == 0, (name, p.returncode, text[-2000:])
        assert 'Traceback' not in text and 'terminate called' not in text, (name, text[-2000:])
    assert re.search(r'published \d+ messages', ''.join(outputs['ncal play']))
    assert 'ncal run: stopped (interrupted)' in ''.join(outputs['ncal run'])
