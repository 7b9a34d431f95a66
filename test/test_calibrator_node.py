"""Calibrator node end to end on a real rclpy graph: real KITTI frames, a deliberately wrong nominal extrinsic."""
from __future__ import annotations

import numpy as np
import pytest
from node_harness import CAMERA_FRAME, LIDAR_FRAME, T_CAM_LIDAR_AXES, RosGraph, SensorPublisher, StatusListener, TopicLog, \
    synthetic_frame

from ros_ncal.calib import CalibResult, register_calibrator
from ros_ncal.data.kitti_files import read_image_rgb, read_kitti_calib, read_velodyne
from ros_ncal.geometry import invert, make_T, pose_error, rotvec_to_matrix
from ros_ncal.msgcodec import stamp_to_ns, transform_stamped_to_matrix
from ros_ncal.nodes.calibrator import CalibratorNode, pose_covariance_lidar_cam, render_overlay

STAMP0 = 1_700_000_000 * 10**9
PERIOD = 100_000_000


@pytest.fixture(scope='module')
def kitti_frames(kitti_dir):
    """Training frames 000001-000003: same size (1242x375) and the same recorded extrinsic."""
    d = kitti_dir / 'training'
    out = []
    for f in ('000001', '000002', '000003'):
        c = read_kitti_calib(d / 'calib' / f'{f}.txt')
        out.append((read_velodyne(d / 'velodyne' / f'{f}.bin'), read_image_rgb(d / 'image_2' / f'{f}.png'), c['K'],
                    c['T_cam_lidar']))
    return out


def _wrong(T_true, deg=(0.6, -0.5, 0.4), m=(0.04, -0.03, 0.02)):
    return make_T(rotvec_to_matrix(np.radians(deg)), np.array(m)) @ T_true


def _run_kitti(g, node, frames, nominal, n_frames):
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from sensor_msgs.msg import Image
    from tf2_msgs.msg import TFMessage

    from ros_ncal.ros.qos import TF_STATIC_QOS
    pub = SensorPublisher(g.helper)
    logs = {'overlay': TopicLog(g.helper, Image, '/calibrator/overlay'),
            'extrinsic': TopicLog(g.helper, PoseWithCovarianceStamped, '/calibrator/extrinsic'),
            'tf_static': TopicLog(g.helper, TFMessage, '/tf_static', TF_STATIC_QOS)}
    status = StatusListener(g.helper, '/calibrator/status')
    assert pub.wait_matched()
    pub.send_tf_static(nominal)
    assert g.wait_for(lambda: node.input.frames.lookup(CAMERA_FRAME, LIDAR_FRAME) is not None, 10)
    for i in range(n_frames):
        pts, img, K, _ = frames[i % len(frames)]
        pub.send_frame(STAMP0 + i * PERIOD, pts, img, K)
        assert g.wait_for(lambda: node.n_calibrated >= i + 1 and node.n_overlays >= i + 1, 30), node.status()
    assert g.wait_for(lambda: node.calib_worker.idle() and node.overlay_worker.idle(), 60)
    assert g.wait_for(lambda: len(logs['extrinsic']) >= n_frames and len(logs['overlay']) >= n_frames, 10)
    assert g.wait_for(lambda: len(logs['tf_static']) == 1 + node.n_tf_published, 10)
    assert g.wait_for(lambda: status.latest is not None and status.latest['calibrated'] == n_frames and
                      status.latest['tf_published'] == node.n_tf_published, 10)
    return logs, status


def test_none_backend_overlays_but_never_publishes_tf(kitti_frames):
    """'none' gives confidence 0: overlay, ~/extrinsic (= nominal) and diagnostics, but no /tf_static."""
    T_true = kitti_frames[0][3]
    nominal = _wrong(T_true)
    with RosGraph() as g:
        node = g.make(CalibratorNode, {'backend': 'none', 'diagnostics_period_s': 0.1, 'overlay.scale': 0.5})
        logs, status = _run_kitti(g, node, kitti_frames, nominal, 3)
        st = status.latest
        assert st['backend'] == 'none' and st['confidence'] == 0.0 and st['tf_published'] == 0
        assert st['dropped'] == {}
        ov = logs['overlay'].msgs[-1]
        assert (ov.width, ov.height) == (621, 188) and ov.encoding == 'rgb8' and ov.header.frame_id == CAMERA_FRAME
        assert stamp_to_ns(ov.header.stamp) == STAMP0 + 2 * PERIOD
        ex = logs['extrinsic'].msgs[-1]
        assert ex.header.frame_id == LIDAR_FRAME
        p, q = ex.pose.pose.position, ex.pose.pose.orientation
        from ros_ncal.geometry import T_from_xyz_quat
        T_lidar_cam = T_from_xyz_quat(np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))
        rot, trans = pose_error(invert(T_lidar_cam), nominal)
        assert rot < 1e-6 and trans < 1e-6
        # only the test's own nominal ever appeared on /tf_static
        assert len(logs['tf_static']) == 1
        assert g.wait_for(lambda: any(d.get('frames_processed') == '3' for d in status.diag_values('calibrator')), 5)
        diag = [d for d in status.diag_values('calibrator') if d.get('frames_processed') == '3'][-1]
        assert float(diag['confidence']) == 0.0 and diag['tf_published'] == '0'
        assert float(diag['drift_deg']) == 0.0
        assert float(diag['latency_ms']) > 0.0 and 'processing_time_ms' in diag


def test_classical_backend_gates_tf_static_on_confidence(kitti_frames, tmp_path):
    """'classical' on a small error: every /tf_static it publishes is its fused estimate at a confidence above
    the threshold; a threshold above every reachable confidence keeps /tf_static silent."""
    cfg = tmp_path / 'classical.yaml'
    cfg.write_text('classical:\n  image_scale: 0.5\n')
    T_true = kitti_frames[0][3]
    nominal = _wrong(T_true)
    params = {'backend': 'classical', 'classical_config': str(cfg), 'diagnostics_period_s': 0.1,
              'fusion.min_frames': 2, 'tf.min_confidence': 0.6, 'tf.max_rot_std_deg': 5.0,
              'tf.max_trans_std_m': 0.5, 'overlay.scale': 0.25}
    with RosGraph() as g:
        node = g.make(CalibratorNode, params)
        logs, status = _run_kitti(g, node, kitti_frames, nominal, 3)
        st = status.latest
        assert st['backend'] == 'classical' and st['calibrated'] == 3 and st['fused_frames'] >= 1
        mine = [m for m in logs['tf_static'].msgs[1:]]
        assert len(mine) == st['tf_published']
        if st['confidence'] >= 0.6 and st['rot_std_deg'] is not None and st['rot_std_deg'] <= 5.0:
            assert g.wait_for(lambda: len(logs['tf_static']) >= 2, 5)
        if node.n_tf_published:
            last = transform_stamped_to_matrix(logs['tf_static'].msgs[-1].transforms[0])
            assert (last.parent_frame, last.child_frame) == (LIDAR_FRAME, CAMERA_FRAME)
            np.testing.assert_allclose(invert(last.T_parent_child), node.last_published, atol=1e-6)
            # the nominal stays the one heard before publishing
            np.testing.assert_allclose(node.nominal, nominal, atol=1e-9)
        ex = logs['extrinsic'].msgs[-1]
        cov = np.array(ex.pose.covariance).reshape(6, 6)
        assert np.all(np.isfinite(cov)) and np.all(np.diag(cov) > 0)
    params['tf.min_confidence'] = 1.0
    params['tf.max_rot_std_deg'] = 0.0
    with RosGraph() as g:
        node = g.make(CalibratorNode, params)
        logs, status = _run_kitti(g, node, kitti_frames[:2], nominal, 2)
        assert node.n_tf_published == 0 and len(logs['tf_static']) == 1


class _OffsetCalibrator:
    """A calibrator that always answers T_init's nominal composed with a fixed rotation about the optical axis."""

    def __init__(self, deg: float):
        self.dT = make_T(rotvec_to_matrix(np.radians([0.0, 0.0, deg])), np.zeros(3))
        self.nominal = None

    def estimate(self, sample, T_init):
        if self.nominal is None:
            self.nominal = np.array(T_init)
        return CalibResult(self.dT @ self.nominal, 0.9, True, 'fixed offset')


@pytest.mark.parametrize('offset_deg, level, loop', [(1.5, 'WARN', False), (3.0, 'ERROR', False),
                                                      (3.0, 'ERROR', True)])
def test_drift_alarm_after_hold_time(offset_deg, level, loop):
    """loop: frames 0.6 s apart whose stamps restart every 3 frames (a looped bag): pairing restarts and the
    hold time (2 s) counts the sensor time seen, not the raw stamps (which never get 2 s apart)."""
    name = f'test_offset_{str(offset_deg).replace(".", "_")}'
    register_calibrator(name, lambda **_: _OffsetCalibrator(offset_deg), overwrite=True)
    params = {'backend': name, 'extrinsic.T_cam_lidar': list(T_CAM_LIDAR_AXES.ravel()), 'drift.tolerance_deg': 1.0,
              'drift.hold_s': 2.0 if loop else 0.35, 'diagnostics_period_s': 0.1, 'fusion.min_frames': 1,
              'tf.min_confidence': 0.95, 'overlay.enabled': False,
              # the drift is the backend's fixed offset alone: no joint stage refining it on the noise frames
              # (their random ranges hold enough angular-neighbour depth steps for it to run)
              'joint.enabled': False}
    rng = np.random.default_rng(3)
    with RosGraph() as g:
        node = g.make(CalibratorNode, params)
        pub = SensorPublisher(g.helper)
        status = StatusListener(g.helper, '/calibrator/status')
        assert pub.wait_matched()
        states = []
        for i in range(7):
            pub.send_frame(STAMP0 + (6 * (i % 3) if loop else i) * PERIOD, *synthetic_frame(rng))
            assert g.wait_for(lambda: node.n_calibrated >= i + 1, 10), node.status()
            states.append(node.drift['state'])
        # sensor time 0.0 .. 0.6 s (loop: 0.0 .. 3.6 s): drifting from the first frame, the alarm waits for the hold
        assert states[:3] == ['OK'] * 3 and states[4:] == [level] * 3, states
        assert node.input.received().get('time_jumps_back', 0) == (2 if loop else 0)
        assert abs(node.drift['rot_deg'] - offset_deg) < 1e-6
        assert node.n_tf_published == 0                         # 0.9 < tf.min_confidence
        want = {'WARN': 1, 'ERROR': 2}[level]
        assert g.wait_for(lambda: any(d['_level'] == want and d.get('drift_state') == level
                                      for d in status.diag_values('calibrator')), 5)


def test_unavailable_backend_falls_back_and_says_so():
    with RosGraph() as g:
        node = g.make(CalibratorNode, {'backend': 'nclr', 'checkpoint': '/nonexistent/nclr.pt',
                                       'fallback_backend': 'none', 'refine': 'none'})
        assert node.backend_spec == 'none' and 'nclr' in node.backend_note
        assert node.publish_diagnostics()['backend_note']
        with pytest.raises(Exception, match='nclr'):
            g.make(CalibratorNode, {'backend': 'nclr', 'checkpoint': '/nonexistent/nclr.pt', 'fallback_backend': ''},
                   node_name='calibrator_strict')
        with pytest.raises(ValueError, match='unknown calibrator'):
            g.make(CalibratorNode, {'backend': 'no_such_thing'}, node_name='calibrator_bad')
        # the default backend is the handover; without a checkpoint it falls back to the classical one
        fb = g.make(CalibratorNode, {'checkpoint': '/nonexistent/nclr.pt'}, node_name='calibrator_default')
        assert fb.backend_spec == 'classical' and "'nclr/classical' unavailable" in fb.backend_note
        # refine: classical does not stack a second classical stage on a handover
        h = g.make(CalibratorNode, {'backend': 'none/classical', 'refine': 'classical'}, node_name='calibrator_h')
        assert h.backend_spec == 'none/classical' and type(h.backend).__name__ == 'HandoverCalibrator'


def test_covariance_mapping_matches_finite_differences():
    """pose_covariance_lidar_cam = J cov J^T with J the derivative of the T_lidar_cam pose w.r.t. the
    left tangent perturbation of T_cam_lidar: checked column by column by finite differences."""
    from ros_ncal.geometry import matrix_to_rotvec
    T = make_T(rotvec_to_matrix(np.array([1.2, -1.0, 1.1])), np.array([0.3, -0.2, -0.5]))
    eps = 1e-6
    J = np.zeros((6, 6))
    base = invert(T)
    for k in range(6):
        d = np.zeros(6)
        d[k] = eps
        Tp = make_T(rotvec_to_matrix(d[:3]) @ T[:3, :3], T[:3, 3] + d[3:])
        inv = invert(Tp)
        J[:3, k] = (inv[:3, 3] - base[:3, 3]) / eps
        J[3:, k] = matrix_to_rotvec(inv[:3, :3] @ base[:3, :3].T) / eps
    cov = np.diag([1e-4, 2e-4, 3e-4, 1e-2, 2e-2, 3e-2])
    np.testing.assert_allclose(pose_covariance_lidar_cam(T, cov), J @ cov @ J.T, rtol=1e-4, atol=1e-10)
    assert np.all(np.diag(pose_covariance_lidar_cam(T, np.full((6, 6), np.inf))) == 1e6)


def test_the_online_core_gets_the_nodes_parameters_with_the_same_defaults():
    """The node's fusion.* / tf.* / drift.* / joint.* / init_from parameters become the library's OnlineConfig
    field by field; with no parameters set it equals the library defaults."""
    from ros_ncal.calib.online import OnlineConfig
    from ros_ncal.nodes.calibrator import CalibratorConfig, online_config
    assert online_config(CalibratorConfig()) == OnlineConfig()
    cfg = CalibratorConfig(init_from='nominal')
    cfg.fusion.min_frames, cfg.tf.min_change_m, cfg.drift.hold_s, cfg.joint.min_spacing_s = 7, 0.03, 4.5, 0.25
    oc = online_config(cfg)
    assert (oc.init_from, oc.fusion.min_frames, oc.tf.min_change_m, oc.drift.hold_s, oc.joint.min_spacing_s) == \
        ('nominal', 7, 0.03, 4.5, 0.25)
    assert oc.fusion.filter_config().min_confidence == cfg.fusion.min_frame_confidence


def test_render_overlay_places_points_where_they_project():
    img = np.zeros((40, 60, 3), np.uint8)
    K = np.array([[50.0, 0, 29.5], [0, 50.0, 19.5], [0, 0, 1]])
    pts = np.array([[10.0, 0.0, 0.0, 0.0], [-5.0, 0.0, 0.0, 0.0]], np.float32)   # ahead, behind
    out, n = render_overlay(img, pts, T_CAM_LIDAR_AXES, K, scale=1.0, radius=0)
    assert n == 1 and out.sum() > 0
    ys, xs = np.nonzero(out.sum(axis=2))
    assert (ys.tolist(), xs.tolist()) == ([20], [30])  # the principal point (29.5, 19.5) rounds to (30, 20)
    small, n2 = render_overlay(img, pts, T_CAM_LIDAR_AXES, K, scale=0.5, radius=1)
    assert small.shape == (20, 30, 3) and n2 == 1


def test_overlay_projection_agrees_with_the_geometry_library(kitti_frames):
    from ros_ncal.geometry import project_lidar
    from ros_ncal.nodes.calibrator import _project_in_view
    pts, img, K, T = kitti_frames[0]
    H, W = img.shape[:2]
    u, v, depth = _project_in_view(pts, T, K, (H, W))
    uv, d_ref, mask = project_lidar(pts, T, K, (H, W))
    ref = {(int(a), int(b)) for a, b in np.floor(uv[mask] + 0.5)}
    mine = set(zip(u.tolist(), v.tolist()))
    assert len(mine) > 1000
    assert len(mine ^ ref) <= 0.01 * len(ref)      # only rounding at the image border may differ
    np.testing.assert_allclose(np.sort(depth)[-100:], np.sort(d_ref[mask])[-100:], rtol=1e-4)


def test_rviz_config_has_the_suite_displays():
    import yaml

    from ros_ncal.runner.suite import config_dir
    cfg = yaml.safe_load((config_dir() / 'ncal.rviz').read_text())
    vm = cfg['Visualization Manager']
    displays = {d['Class']: d for d in vm['Displays']}
    assert {'rviz_default_plugins/PointCloud2', 'rviz_default_plugins/Image', 'rviz_default_plugins/TF',
            'rviz_default_plugins/MarkerArray'} <= set(displays)
    assert displays['rviz_default_plugins/Image']['Topic']['Value'] == '/calibrator/overlay'
    assert vm['Global Options']['Fixed Frame'] == 'velo_link'


def test_reset_service_clears_the_fused_estimate():
    from std_srvs.srv import Trigger
    register_calibrator('test_offset_reset', lambda **_: _OffsetCalibrator(2.0), overwrite=True)
    rng = np.random.default_rng(4)
    with RosGraph() as g:
        node = g.make(CalibratorNode, {'backend': 'test_offset_reset', 'fusion.min_frames': 1,
                                       'extrinsic.T_cam_lidar': list(T_CAM_LIDAR_AXES.ravel()),
                                       'overlay.enabled': False})
        pub = SensorPublisher(g.helper)
        assert pub.wait_matched()
        for i in range(2):
            pub.send_frame(STAMP0 + i * PERIOD, *synthetic_frame(rng))
            assert g.wait_for(lambda: node.n_calibrated >= i + 1, 10)
        assert node.filter.count == 2 and node.fused_confidence > 0.8
        client = g.helper.create_client(Trigger, '/calibrator/reset')
        assert client.wait_for_service(timeout_sec=10)
        fut = client.call_async(Trigger.Request())
        assert g.wait_for(fut.done, 10) and fut.result().message == 'cleared 2 fused frames'
        assert node.filter.count == 0 and node.fused is None and node.status()['confidence'] == 0.0


def test_nclr_backend_from_a_checkpoint_runs_in_the_node(kitti_frames, tmp_path):
    """The 'nclr' backend built from a checkpoint file (untrained tiny network: the estimate fails, which the
    node must report without publishing anything on /tf_static)."""
    import torch

    from ros_ncal.nclr.config import NCLRConfig
    from ros_ncal.nclr.network import NCLRNet
    from ros_ncal.runner.suite import config_dir
    from ros_ncal.train.pretrain import save_nclr
    cfg = NCLRConfig.from_yaml(config_dir() / 'nclr' / 'tiny_test.yaml')
    torch.manual_seed(0)
    ckpt = save_nclr(NCLRNet(cfg.network), cfg, tmp_path / 'nclr_tiny.pt')
    T_true = kitti_frames[0][3]
    with RosGraph() as g:
        node = g.make(CalibratorNode, {'backend': 'nclr', 'checkpoint': str(ckpt), 'fallback_backend': '',
                                       'device': 'cpu', 'diagnostics_period_s': 0.1})
        assert node.backend_spec == 'nclr' and type(node.backend).__name__ == 'NCLRCalibrator'
        logs, status = _run_kitti(g, node, kitti_frames[:1], _wrong(T_true), 1)
        st = status.latest
        assert st['frame_message'].startswith('nclr:') and st['tf_published'] == 0 and len(logs['tf_static']) == 1
        assert st['processing_time_ms'] > 0 and 'backend_error' not in st['dropped']


class _KeepsGuess:
    """A backend that trusts its initial guess (so only the node's joint stage can move the estimate)."""

    def estimate(self, sample, T_init):
        return CalibResult(np.array(T_init), 0.9, True, 'kept the guess')


def test_joint_stage_moves_the_published_extrinsic_toward_the_truth(kitti_frames):
    """Nominal off by 0.6 deg / 20 cm on real KITTI frames; the per-frame backend changes nothing, the joint
    multi-frame edge alignment (every 3 fused frames over the buffered frames) moves it toward the truth."""
    register_calibrator('test_keeps_guess', lambda **_: _KeepsGuess(), overwrite=True)
    T_true = kitti_frames[0][3]
    # the miscalibration of test_joint.py's sequence test (on 3 frames of one day the joint optimum depends
    # on the direction of the error: some 20 cm errors only shrink to ~18 cm; the README's numbers are the
    # 4-frame sequences)
    nominal = T_true @ make_T(rotvec_to_matrix(np.radians([0.0, 0.4, 0.45])), [0.12, -0.1, 0.12])
    params = {'backend': 'test_keeps_guess', 'joint.enabled': True, 'joint.every_n': 3, 'joint.min_frames': 3,
              'joint.min_fused_frames': 3, 'joint.min_spacing_s': 0.0, 'diagnostics_period_s': 0.1,
              'tf.publish': False}
    with RosGraph() as g:
        node = g.make(CalibratorNode, params)
        assert node.joint is not None
        logs, status = _run_kitti(g, node, kitti_frames, nominal, 6)
        st = node.status()
        assert st['joint']['runs'] == 2 and st['joint']['applied'] >= 1, st['joint']
        before, after = pose_error(nominal, T_true), pose_error(node.current, T_true)
        assert after[1] < 0.5 * before[1] and after[0] < before[0], (before, after)
        # the published ~/extrinsic is the refined estimate (T_lidar_cam = inverse)
        last = logs['extrinsic'].msgs[-1].pose.pose
        from ros_ncal.geometry import T_from_xyz_quat
        T_pub = invert(T_from_xyz_quat(np.array([last.position.x, last.position.y, last.position.z]),
                                       np.array([last.orientation.x, last.orientation.y, last.orientation.z,
                                                 last.orientation.w])))
        assert pose_error(T_pub, node.current)[1] < 1e-6
        assert g.wait_for(lambda: status.latest['joint']['runs'] == 2, 5)
    # the 'none' backend never gets a joint stage; the code default (as config/calibrator.yaml) is on
    with RosGraph() as g:
        assert g.make(CalibratorNode, {'backend': 'none', 'joint.enabled': True}).joint is None
        assert g.make(CalibratorNode, {'backend': 'test_keeps_guess'}, node_name='calibrator_b').joint is not None
        assert g.make(CalibratorNode, {'backend': 'test_keeps_guess', 'joint.enabled': False},
                      node_name='calibrator_c').joint is None
