"""Harness of the ``perception`` scenario of ``ncal demo``: segmenter + detector on a replayed bag.

:func:`run_perception_graph` starts the ``segmenter`` and ``detector`` nodes in-process
(:class:`ros_ncal.ros.suite_runner.SuiteRunner`, parameters from their config/ YAML + overrides),
publishes a sensor bag frame by frame (:class:`ros_ncal.ros.harness.demo_io.FramePlayer`) and, per cloud,
waits for ``/segmenter/labeled_points`` and ``/detector/detections3d`` with that stamp (lockstep).
It returns plain numpy data (no ROS types) for the command to report.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2

from ros_ncal.bag import BagTopics
from ros_ncal.msgcodec import cloud_to_xyzi, stamp_to_ns
from ros_ncal.ros.qos import reliable_qos


@dataclass
class PerceptionFrame:
    """Outputs for one cloud: points (N, 4) float32 + labels (N,) uint16 (segmenter);
    boxes (D, 7) float64 x y z l w h yaw, scores (D,), class names (D,) (detector); latencies in ms
    from publishing the cloud to receiving each output (None when it did not arrive)."""
    stamp_ns: int
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    classes: list = field(default_factory=list)
    seg_ms: float | None = None
    det_ms: float | None = None


def _yaw_from_quat(x: float, y: float, z: float, w: float) -> float:
    return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))


class PerceptionListener(Node):
    """Records ``/segmenter/labeled_points`` and ``/detector/detections3d`` keyed by stamp (thread-safe)."""

    def __init__(self, segmenter: str = '/segmenter', detector: str = '/detector',
                 node_name: str = 'ncal_perception_listener', **kwargs):
        super().__init__(node_name, **kwargs)
        from vision_msgs.msg import Detection3DArray
        self.lock = threading.Condition()
        self.seg: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}    # stamp -> (t_mono, points, labels)
        self.det: dict[int, tuple[float, np.ndarray, np.ndarray, list]] = {}
        self.create_subscription(PointCloud2, f'{segmenter}/labeled_points', self._on_seg, reliable_qos(10))
        self.create_subscription(Detection3DArray, f'{detector}/detections3d', self._on_det, reliable_qos(10))

    def _on_seg(self, msg: PointCloud2) -> None:
        cloud = cloud_to_xyzi(msg, extra_fields=('label',))
        with self.lock:
            self.seg[stamp_to_ns(msg.header.stamp)] = (time.monotonic(), cloud.points,
                                                       np.asarray(cloud.extras['label']).reshape(-1))
            self.lock.notify_all()

    def _on_det(self, msg) -> None:
        boxes, scores, names = [], [], []
        for d in msg.detections:
            c, s, o = d.bbox.center.position, d.bbox.size, d.bbox.center.orientation
            boxes.append([c.x, c.y, c.z, s.x, s.y, s.z, _yaw_from_quat(o.x, o.y, o.z, o.w)])
            hyp = d.results[0].hypothesis if d.results else None
            scores.append(hyp.score if hyp else 0.0)
            names.append(hyp.class_id if hyp else '?')
        with self.lock:
            self.det[stamp_to_ns(msg.header.stamp)] = (time.monotonic(), np.asarray(boxes, np.float64).reshape(-1, 7),
                                                       np.asarray(scores, np.float64), names)
            self.lock.notify_all()

    def wait_both(self, stamp_ns: int, timeout_s: float) -> bool:
        """Block until both outputs of the frame stamped ``stamp_ns`` arrived (True) or timeout (False)."""
        with self.lock:                     # both callbacks notify the condition
            return bool(self.lock.wait_for(lambda: stamp_ns in self.seg and stamp_ns in self.det, timeout=timeout_s))


@dataclass
class PerceptionRunResult:
    started: list[str]
    frames: list[PerceptionFrame]
    wall_s: float


def run_perception_graph(bag_dir: str | Path, node_params: dict[str, dict] | None = None,
                         frame_timeout_s: float = 60.0, topics: BagTopics | None = None,
                         log=print) -> PerceptionRunResult:
    """Replay ``bag_dir`` through segmenter + detector, one frame at a time.

    node_params: {'segmenter': {...}, 'detector': {...}} ROS parameter overrides (dotted names).
    """
    import rclpy

    from ros_ncal.runner.suite import resolve_invocations, suite_specs
    from ros_ncal.ros.suite_runner import SuiteRunner

    from .demo_io import FramePlayer
    node_params = node_params or {}
    topics = topics or BagTopics()
    t0 = time.monotonic()
    invs = resolve_invocations([s for s in suite_specs('default') if s.name in ('segmenter', 'detector')],
                               {'segmenter': 'true', 'detector': 'true', 'points_topic': topics.points})
    for inv in invs:
        inv.params.update(node_params.get(inv.spec.name, {}))
    runner = SuiteRunner(invs).start()
    frames: list[PerceptionFrame] = []
    try:
        listener = PerceptionListener(context=runner.context)
        runner.add_node(listener)
        pnode = rclpy.create_node('ncal_perception_player', context=runner.context)
        runner.add_node(pnode)
        player = FramePlayer(pnode, bag_dir, topics, queue_depth=10)
        runner.spin_in_thread()
        points_pub = player._pubs[topics.points]   # only the cloud has subscribers here
        deadline = time.monotonic() + 15.0
        while points_pub.get_subscription_count() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        if points_pub.get_subscription_count() < 2:
            log('warning: segmenter/detector not both subscribed to the cloud after 15 s; playing anyway')
        time.sleep(0.2)
        for i in range(len(player.frames)):
            t_pub = time.monotonic()
            stamp = player.publish_frame(i)
            ok = listener.wait_both(stamp, frame_timeout_s)
            with listener.lock:
                seg, det = listener.seg.get(stamp), listener.det.get(stamp)
            fr = PerceptionFrame(stamp_ns=stamp)
            if seg is not None:
                fr.seg_ms, fr.points, fr.labels = (seg[0] - t_pub) * 1e3, seg[1], seg[2]
            if det is not None:
                fr.det_ms, fr.boxes, fr.scores, fr.classes = (det[0] - t_pub) * 1e3, det[1], det[2], det[3]
            if not ok:
                log(f'frame {i}: segmenter {"ok" if seg else "MISSING"}, detector {"ok" if det else "MISSING"} '
                    f'after {frame_timeout_s} s')
            frames.append(fr)
        started = list(runner.report.started)
    finally:
        runner.stop()
    return PerceptionRunResult(started=started, frames=frames, wall_s=round(time.monotonic() - t0, 2))
