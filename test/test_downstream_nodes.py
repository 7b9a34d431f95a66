"""Segmenter and detector nodes on a real rclpy graph, with real (tiny) fine-tuned networks.

The checkpoints are written by ``ros_ncal.train.finetune.finetune`` (the function behind ``ncal finetune``)
after one step on one synthetic cloud, so the nodes load and run the same kind of file users ship.
The input is a real KITTI velodyne scan (000001, 120k points).
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from node_harness import LIDAR_FRAME, RosGraph, StatusListener, TopicLog, mutate_cloud_msg

from ros_ncal.data.boxes3d import box_corners
from ros_ncal.data.labels import SEMANTICKITTI_PALETTE
from ros_ncal.msgcodec import cloud_to_xyzi, stamp_to_ns
from ros_ncal.models.inference import DownstreamPredictor
from ros_ncal.msgcodec.pointcloud import unpack_rgb_float
from ros_ncal.nodes.detector import DetectorNode, MarkerParams, box_edge_points, make_marker_array
from ros_ncal.nodes.segmenter import SegmenterNode, labeled_cloud_extras
from ros_ncal.ros.conversions import make_header, points_to_cloud_msg
from ros_ncal.ros.qos import reliable_qos

S0 = 1_700_000_000 * 10**9
TINY_BACKBONE = {'type': 'MinkUNet', 'depth': 14, 'in_channels': 1, 'input_features': 'intensity',
                 'out_dim': 8, 'width': 0.125, 'voxel_size': 0.25}
# score_threshold 0: every heat-map peak is a box, so even a one-step network yields detections to check.
TINY_DET_HEAD = {'x_range': [-30.0, 30.0], 'y_range': [-30.0, 30.0], 'cell_size': 1.0, 'neck_channels': 8,
                 'score_threshold': 0.0, 'max_detections': 8}
MAX_POINTS = 20000   # node parameter model.max_points: bounds the network input on the 120k-point scan


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """{'seg' | 'det' | 'panoptic': path}: one-step fine-tuned tiny models saved by ros_ncal.train.finetune."""
    from ros_ncal.data.synthetic import SyntheticConfig, SyntheticWorld
    from ros_ncal.train.downstream_data import DataConfig, to_task_sample
    from ros_ncal.train.finetune import config_from_dict, finetune
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    wc = SyntheticConfig()
    wc.lidar.n_beams, wc.lidar.n_azimuth = 16, 256
    wc.camera.width, wc.camera.height, wc.camera.cx, wc.camera.cy = 32, 16, 16.0, 8.0
    wc.camera.fx = wc.camera.fy = 20.0
    wc.camera.shadows = False
    dc = DataConfig(crop_min=(-20.0, -20.0, -4.0), crop_max=(20.0, 20.0, 4.0), max_points=1000)
    samples = [to_task_sample(SyntheticWorld(wc).sample(0), 0, dc)]
    out_dir = tmp_path_factory.mktemp('downstream_ckpt')
    paths = {}
    for task in ('seg', 'det', 'panoptic'):
        cfg = config_from_dict({'task': task, 'backbone': dict(TINY_BACKBONE),
                                'head': dict(TINY_DET_HEAD) if task == 'det' else {},
                                'augment': {'rotate_z': False, 'flip_y': False, 'scale': [1.0, 1.0]},
                                'optim': {'steps': 1, 'batch_size': 1}, 'log_every': 0,
                                'output_dir': str(out_dir), 'run_name': task, 'device': 'cpu'})
        paths[task] = finetune(cfg, train_samples=samples, log=lambda m: None, evaluate=False,
                               train_is_labelled=True).checkpoint
    torch.set_num_threads(n_threads)
    return paths


def _points_pub(g):
    from sensor_msgs.msg import PointCloud2
    return g.helper.create_publisher(PointCloud2, '/points', reliable_qos(10))


def _send_until(g, pub, msg_for_stamp, done, timeout_s=30.0, first_stamp=S0):
    """Publish msg_for_stamp(stamp) with increasing stamps until done(); returns the stamp that got through
    (covers the discovery race of a freshly created subscription)."""
    assert g.wait_for(lambda: pub.get_subscription_count() > 0, 10)
    stamp = first_stamp
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pub.publish(msg_for_stamp(stamp))
        if g.wait_for(done, 2.0):
            return stamp
        stamp += 10**8
    raise AssertionError('nothing came through')


def _diag_ok(listener, name, **want):
    def check():
        for d in listener.diag_values(name):
            if all(str(d.get(k)) == str(v) if not callable(v) else v(d.get(k)) for k, v in want.items()):
                return True
        return False
    return check


# ----------------------------------------------------------------------------- pure helpers


def test_labeled_cloud_extras_and_box_wireframe():
    labels = np.array([0, 1, 9, 19, 40])
    ex = labeled_cloud_extras(labels)
    assert ex['label'].dtype == np.uint16 and ex['rgb'].dtype == np.float32
    np.testing.assert_array_equal(unpack_rgb_float(ex['rgb'])[:4], SEMANTICKITTI_PALETTE[[0, 1, 9, 19]])
    np.testing.assert_array_equal(unpack_rgb_float(ex['rgb'])[4], SEMANTICKITTI_PALETTE[40 % 20])
    with pytest.raises(ValueError, match='uint16'):
        labeled_cloud_extras(np.array([-1]))
    boxes = np.array([[10.0, -2.0, -0.5, 4.0, 2.0, 1.5, 0.3], [0.0, 5.0, 0.0, 1.0, 1.0, 2.0, -2.0]])
    edges = box_edge_points(boxes)
    assert edges.shape == (2, 24, 3)
    # each of the 12 edges joins two corners that differ along exactly one box axis (length l, w or h)
    lengths = np.linalg.norm(edges[:, 0::2] - edges[:, 1::2], axis=2)
    for b, ls in zip(boxes, lengths):
        assert sorted(np.round(ls, 6).tolist()) == sorted([b[3]] * 4 + [b[4]] * 4 + [b[5]] * 4)
    arr = make_marker_array(make_header('velo', 5), boxes, np.array([0.9, 0.4]), np.array([0, 2]),
                            ('car', 'pedestrian', 'cyclist'), MarkerParams())
    from visualization_msgs.msg import Marker
    assert [m.action for m in arr.markers] == [Marker.DELETEALL] + [Marker.ADD] * 4
    assert [m.text for m in arr.markers if m.type == Marker.TEXT_VIEW_FACING] == ['car 0.90', 'cyclist 0.40']
    assert arr.markers[4].pose.position.z > boxes[1, 2] + boxes[1, 5] / 2


# ----------------------------------------------------------------------------- real graph


def test_segmenter_labels_a_kitti_scan(checkpoints, kitti_points):
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Float64
    pts = kitti_points.copy()
    hostile = pts.copy()
    hostile[::1000, 1] = np.nan       # 121 NaN rows: removed, the cloud still processed
    n_valid = int(np.isfinite(hostile).all(axis=1).sum())
    with RosGraph() as g:
        seg = g.make(SegmenterNode, {'checkpoint': checkpoints['seg'], 'model.max_points': MAX_POINTS,
                                     'diagnostics_period_s': 0.1})
        out = TopicLog(g.helper, PointCloud2, '/segmenter/labeled_points', reliable_qos(10))
        proc = TopicLog(g.helper, Float64, '/segmenter/debug/processing_time_ms', reliable_qos(10))
        diag = StatusListener(g.helper, '/segmenter/status')
        pub = _points_pub(g)
        stamp = _send_until(g, pub, lambda s: points_to_cloud_msg(hostile, LIDAR_FRAME, s + 123), lambda: len(out))
        msg = out.msgs[0]
        assert msg.header.frame_id == LIDAR_FRAME and stamp_to_ns(msg.header.stamp) == stamp + 123
        fields = {f.name: f.datatype for f in msg.fields}
        assert fields == {'x': 7, 'y': 7, 'z': 7, 'intensity': 7, 'label': 4, 'rgb': 7}
        dec = cloud_to_xyzi(msg, extra_fields=None)
        assert len(dec.points) == n_valid == msg.width * msg.height
        valid = hostile[np.isfinite(hostile).all(axis=1)]
        np.testing.assert_array_equal(dec.points, valid)
        labels = dec.extras['label']
        assert labels.dtype == np.uint16 and labels.max() <= 19
        np.testing.assert_array_equal(unpack_rgb_float(dec.extras['rgb']), SEMANTICKITTI_PALETTE[labels])
        # the node's labels are the library's labels for the same points and settings
        ref = DownstreamPredictor.from_checkpoint(checkpoints['seg'], 'cpu', 0.0, MAX_POINTS).predict(valid)
        np.testing.assert_array_equal(labels, ref.labels)
        assert g.wait_for(lambda: len(proc), 10) and proc.msgs[0].data > 0
        assert g.wait_for(_diag_ok(diag, 'segmenter', frames_processed=1, points=n_valid, _level=0,
                                   latency_ms=lambda v: v is not None and float(v) > 0), 10)
        assert g.wait_for(lambda: diag.latest and diag.latest['frames_processed'] == 1, 10)
        assert seg.worker.errors == 0 and 'internal_error' not in seg.drops.snapshot()


def test_detector_publishes_markers_and_detection3d(checkpoints, kitti_points):
    from visualization_msgs.msg import Marker, MarkerArray
    from vision_msgs.msg import Detection3DArray
    with RosGraph() as g:
        det = g.make(DetectorNode, {'checkpoint': checkpoints['det'], 'diagnostics_period_s': 0.1})
        markers = TopicLog(g.helper, MarkerArray, '/detector/detections', reliable_qos(10))
        dets = TopicLog(g.helper, Detection3DArray, '/detector/detections3d', reliable_qos(10))
        diag = StatusListener(g.helper)
        pub = _points_pub(g)
        stamp = _send_until(g, pub, lambda s: points_to_cloud_msg(kitti_points, LIDAR_FRAME, s),
                            lambda: len(markers) and len(dets))
        ref = DownstreamPredictor.from_checkpoint(checkpoints['det'], 'cpu').predict(kitti_points)
        n = len(ref.boxes)
        assert n > 0
        ma, da = markers.msgs[0], dets.msgs[0]
        for m in (ma.markers[0], da):
            assert m.header.frame_id == LIDAR_FRAME and stamp_to_ns(m.header.stamp) == stamp
        assert ma.markers[0].action == Marker.DELETEALL and len(ma.markers) == 1 + 2 * n
        wires = [m for m in ma.markers if m.type == Marker.LINE_LIST]
        texts = [m for m in ma.markers if m.type == Marker.TEXT_VIEW_FACING]
        assert len(wires) == len(texts) == len(da.detections) == n
        names = ('car', 'pedestrian', 'cyclist')
        for i, (w, t, d) in enumerate(zip(wires, texts, da.detections)):
            assert t.text == f'{names[ref.box_labels[i]]} {ref.scores[i]:.2f}'
            hyp = d.results[0].hypothesis
            assert hyp.class_id == names[ref.box_labels[i]] and hyp.score == pytest.approx(ref.scores[i], abs=1e-6)
            # the Detection3D box (centre, yaw quaternion, size) rebuilds the marker's wireframe corners
            c, q, s = d.bbox.center.position, d.bbox.center.orientation, d.bbox.size
            assert q.x == 0.0 and q.y == 0.0
            yaw = 2 * np.arctan2(q.z, q.w)
            corners = box_corners(np.array([[c.x, c.y, c.z, s.x, s.y, s.z, yaw]]))[0]
            wire_pts = np.array([[p.x, p.y, p.z] for p in w.points])
            assert len(wire_pts) == 24
            np.testing.assert_allclose(np.unique(wire_pts.round(4), axis=0), np.unique(corners.round(4), axis=0),
                                       atol=2e-4)
            np.testing.assert_allclose([c.x, c.y, c.z, s.x, s.y, s.z], ref.boxes[i, :6], rtol=1e-5, atol=1e-5)
        assert g.wait_for(_diag_ok(diag, 'detector', frames_processed=1, last_detections=n, _level=0), 10)
        assert det.worker.errors == 0


def _mutated_cloud(rng, pts, stamp):
    return mutate_cloud_msg(rng, points_to_cloud_msg(pts[: rng.integers(0, len(pts) + 1)], LIDAR_FRAME, stamp))


def test_hostile_clouds_are_counted_and_both_nodes_keep_working(checkpoints, kitti_points):
    rng = np.random.default_rng(5)
    pts = kitti_points[rng.choice(len(kitti_points), 3000, replace=False)]
    with RosGraph() as g:
        seg = g.make(SegmenterNode, {'checkpoint': checkpoints['seg']})
        det = g.make(DetectorNode, {'checkpoint': checkpoints['det']})
        nodes = (seg, det)
        pub = _points_pub(g)
        assert g.wait_for(lambda: pub.get_subscription_count() == 2, 10)
        t = S0

        def expect(reason, n, msg):
            pub.publish(msg)
            assert g.wait_for(lambda: all(nd.drops.snapshot().get(reason, 0) == n for nd in nodes), 10), \
                (reason, [nd.drops.snapshot() for nd in nodes])

        # the first accepted cloud sets the stamp reference
        _send_until(g, pub, lambda s: points_to_cloud_msg(pts, LIDAR_FRAME, s),
                    lambda: all(nd.n_processed >= 1 for nd in nodes), first_stamp=t)
        t = max(nd.input.stamps.newest_ns for nd in nodes) + 10**8
        expect('cloud_empty', 1, points_to_cloud_msg(np.zeros((0, 4), np.float32), LIDAR_FRAME, t))
        nan = pts.copy()
        nan[:, :3] = np.nan
        expect('cloud_nonfinite', 1, points_to_cloud_msg(nan, LIDAR_FRAME, t))
        m = points_to_cloud_msg(pts, LIDAR_FRAME, t)
        m.data = bytes(m.data)[: len(m.data) // 2]                       # truncated
        expect('cloud_malformed', 1, m)
        m = points_to_cloud_msg(pts, LIDAR_FRAME, t)
        m.point_step = 8                                                 # fields reach byte 16
        expect('cloud_malformed', 2, m)
        m = points_to_cloud_msg(pts, LIDAR_FRAME, t)
        m.fields = [f for f in m.fields if f.name != 'x']                # no x
        expect('cloud_malformed', 3, m)
        expect('frame_mismatch', 1, points_to_cloud_msg(pts, '', t))
        expect('stamp_zero', 1, points_to_cloud_msg(pts, LIDAR_FRAME, 0))
        expect('stamp_future', 1, points_to_cloud_msg(pts, LIDAR_FRAME, t + 86_400 * 10**9))
        for nd in nodes:
            got = {k: v for k, v in nd.drops.snapshot().items() if k != 'busy'}
            assert got == {'cloud_empty': 1, 'cloud_nonfinite': 1, 'cloud_malformed': 3, 'frame_mismatch': 1,
                           'stamp_zero': 1, 'stamp_future': 1}, got

        # random mutations straight into the subscription callback: each message is accepted or dropped
        for node in nodes:
            inp = node.input
            for i in range(150):
                before = (inp.accepted, node.drops.total)
                inp.on_msg(_mutated_cloud(rng, pts[:64], t + (i + 1) * 10**6))
                after = (inp.accepted, node.drops.total)
                assert (after[0] - before[0]) + (after[1] - before[1]) >= 1, i
                assert after[0] - before[0] in (0, 1)
            assert 'internal_error' not in node.drops.snapshot(), node.drops.snapshot()
            assert node.worker.wait_idle(30)
            assert node.worker.errors == 0, node.drops.snapshot()
        # both still work on a clean cloud through the transport
        done = [nd.n_processed for nd in nodes]
        pub.publish(points_to_cloud_msg(pts, LIDAR_FRAME, t + 10**9))
        assert g.wait_for(lambda: all(nd.n_processed > d for nd, d in zip(nodes, done)), 30), \
            [nd.status() for nd in nodes]


def test_missing_or_wrong_checkpoint_reports_error_and_keeps_running(checkpoints, kitti_points, tmp_path):
    from ros_ncal.runner.suite import config_dir
    cfg = config_dir()
    pts = kitti_points[:2000]
    with RosGraph() as g:
        # packaged parameter files + a checkpoint that does not exist / is of the wrong task
        seg = g.make(SegmenterNode, cli_args=['--ros-args', '--params-file', str(cfg / 'segmenter.yaml'),
                                              '-p', f'checkpoint:={tmp_path / "none.pt"}',
                                              '-p', 'diagnostics_period_s:=0.1'])
        det = g.make(DetectorNode, cli_args=['--ros-args', '--params-file', str(cfg / 'detector.yaml'),
                                             '-p', f'checkpoint:={checkpoints["seg"]}',
                                             '-p', 'diagnostics_period_s:=0.1'])
        assert seg.predictor is None and 'not found' in seg.model_error
        assert det.predictor is None and "'seg' model" in det.model_error
        diag = StatusListener(g.helper)
        pub = _points_pub(g)
        _send_until(g, pub, lambda s: points_to_cloud_msg(pts, LIDAR_FRAME, s),
                    lambda: all(nd.drops.snapshot().get('no_model', 0) >= 1 for nd in (seg, det)))
        for name in ('segmenter', 'detector'):
            assert g.wait_for(_diag_ok(diag, name, _level=2, **{'dropped.no_model': lambda v: v and int(v) >= 1}),
                              10), name
        assert any('no model' in d['_message'] for d in diag.diag_values('segmenter'))


def test_segmenter_with_a_panoptic_model_adds_instances(checkpoints, kitti_points):
    from sensor_msgs.msg import PointCloud2
    pts = kitti_points[::20].copy()
    with RosGraph() as g:
        g.make(SegmenterNode, {'checkpoint': checkpoints['panoptic']})
        out = TopicLog(g.helper, PointCloud2, '/segmenter/labeled_points', reliable_qos(10))
        _send_until(g, _points_pub(g), lambda s: points_to_cloud_msg(pts, LIDAR_FRAME, s), lambda: len(out))
        dec = cloud_to_xyzi(out.msgs[0], extra_fields=None)
        assert {f.name: f.datatype for f in out.msgs[0].fields}['instance'] == 4
        ref = DownstreamPredictor.from_checkpoint(checkpoints['panoptic'], 'cpu').predict(pts)
        np.testing.assert_array_equal(dec.extras['label'], ref.labels)
        np.testing.assert_array_equal(dec.extras['instance'], np.clip(ref.instances, 0, 65535))


def test_bad_parameter_is_named(checkpoints):
    with RosGraph() as g:
        with pytest.raises(ValueError, match='model.max_points'):
            g.make(SegmenterNode, {'checkpoint': checkpoints['seg'], 'model.max_points': -5})
