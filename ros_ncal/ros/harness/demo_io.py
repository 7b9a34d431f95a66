"""Harness of ``ncal demo`` (and its tests): a frame-by-frame bag player and a listener for the calibrator's outputs.

* :class:`FramePlayer` loads a sensor bag written by :mod:`ros_ncal.bag` (one PointCloud2, Image and
  CameraInfo per frame, ``/tf_static`` latched) and publishes it frame by frame, optionally shifting
  the header stamps (so a bag replayed several times keeps moving forward in time).
* :class:`DemoListener` records what a user looks at: ``/tf_static``, the calibrator's ``~/extrinsic``
  (PoseWithCovarianceStamped, T_lidar_cam), ``~/confidence``, ``~/overlay`` (first and latest image),
  ``~/status`` JSON, the collector's ``~/status`` JSON and ``/diagnostics``; :meth:`wait_extrinsic`
  blocks until the calibrator answered a given LiDAR stamp (lockstep replay).
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Float32, String
from tf2_msgs.msg import TFMessage

from ros_ncal.bag import BagTopics, read_messages
from ros_ncal.geometry import T_from_xyz_quat
from ros_ncal.msgcodec import image_to_rgb, stamp_to_ns, transform_stamped_to_matrix
from ros_ncal.ros.generic import rclpy_message_class, to_rclpy
from ros_ncal.ros.qos import TF_STATIC_QOS, reliable_qos, sensor_qos


@dataclass
class BagFrameMsgs:
    """One frame of a sensor bag as rosbags message objects (points, image, camera_info)."""
    stamp_ns: int
    msgs: dict[str, tuple[str, object]] = field(default_factory=dict)   # topic -> (msgtype, msg)


def load_bag_frames(bag_dir: str | Path, topics: BagTopics) -> tuple[list[tuple[str, object]], list[BagFrameMsgs]]:
    """-> (/tf_static messages [(msgtype, msg)], frames in log order). A frame starts at each cloud."""
    tf_static, frames = [], []
    for m in read_messages(bag_dir):
        if m.topic == topics.tf_static:
            tf_static.append((m.msgtype, m.msg))
        elif m.topic == topics.points:
            frames.append(BagFrameMsgs(stamp_ns=stamp_to_ns(m.msg.header.stamp), msgs={m.topic: (m.msgtype, m.msg)}))
        elif m.topic in (topics.image, topics.camera_info) and frames:
            frames[-1].msgs[m.topic] = (m.msgtype, m.msg)
    if not frames:
        raise ValueError(f'{bag_dir}: no {topics.points} messages')
    return tf_static, frames


def _shift_stamp(msg, offset_ns: int) -> None:
    if offset_ns:
        from ros_ncal.msgcodec.time import ns_to_sec_nanosec
        sec, nsec = ns_to_sec_nanosec(stamp_to_ns(msg.header.stamp) + offset_ns)
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nsec


class FramePlayer:
    """Publishes a sensor bag frame by frame on ``node`` (RELIABLE publishers, or BEST_EFFORT like a driver's
    SensorDataQoS with ``best_effort``; /tf_static latched)."""

    def __init__(self, node, bag_dir: str | Path, topics: BagTopics | None = None, queue_depth: int = 10,
                 best_effort: bool = False):
        self.node = node
        self.topics = topics or BagTopics()
        self.tf_static, self.frames = load_bag_frames(bag_dir, self.topics)
        first = self.frames[0].msgs
        self._pubs = {}
        qos = sensor_qos(queue_depth) if best_effort else reliable_qos(queue_depth)
        for topic, (msgtype, _) in first.items():
            self._pubs[topic] = node.create_publisher(rclpy_message_class(msgtype), topic, qos)
        self._tf_pub = (node.create_publisher(TFMessage, self.topics.tf_static, TF_STATIC_QOS)
                        if self.tf_static else None)
        self.published = 0
        self._converted: list | None = None      # preconvert(): rclpy messages per frame

    @property
    def duration_ns(self) -> int:
        """Bag length + one frame period (the offset that makes a replay continue the first one)."""
        stamps = [f.stamp_ns for f in self.frames]
        period = int(np.median(np.diff(stamps))) if len(stamps) > 1 else 100_000_000
        return stamps[-1] - stamps[0] + period

    def publish_tf_static(self) -> None:
        for msgtype, msg in self.tf_static:
            self._tf_pub.publish(to_rclpy(msg, msgtype))

    def wait_for_subscribers(self, timeout_s: float, min_count: int = 1) -> bool:
        """True once every sensor topic has ``min_count`` subscriptions (e.g. one per node started)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() >= min_count for p in self._pubs.values()):
                return True
            time.sleep(0.02)
        return False

    def preconvert(self) -> None:
        """Convert every frame to rclpy messages now, so a real-time replay only stamps and publishes
        (the conversion of a 100k-point cloud costs up to ~0.2 s on a loaded machine)."""
        from ros_ncal.msgcodec.time import ns_to_sec_nanosec
        self._converted = []
        for frame in self.frames:
            conv = {}
            for topic, (msgtype, msg) in frame.msgs.items():
                conv[topic] = (to_rclpy(msg, msgtype), stamp_to_ns(msg.header.stamp))
            self._converted.append(conv)
        self._ns_to_sec_nanosec = ns_to_sec_nanosec

    def publish_frame(self, index: int, stamp_offset_ns: int = 0) -> int:
        """Publish frame ``index`` (image and camera_info first, the cloud last) -> its LiDAR stamp."""
        frame = self.frames[index]
        order = sorted(frame.msgs, key=lambda t: t == self.topics.points)
        conv = self._converted
        for topic in order:
            if conv is not None:
                out, stamp = conv[index][topic]
                out.header.stamp.sec, out.header.stamp.nanosec = self._ns_to_sec_nanosec(stamp + stamp_offset_ns)
            else:
                msgtype, msg = frame.msgs[topic]
                out = to_rclpy(msg, msgtype)
                _shift_stamp(out, stamp_offset_ns)
            self._pubs[topic].publish(out)
        self.published += 1
        return frame.stamp_ns + stamp_offset_ns


@dataclass
class ExtrinsicRecord:
    """One ``~/extrinsic`` message: LiDAR stamp, T_lidar_cam (4, 4), the covariance diagonal (6,)."""
    stamp_ns: int
    T_lidar_cam: np.ndarray
    cov_diag: np.ndarray
    received_mono: float


class DemoListener(Node):
    """Records the calibrator's and collector's outputs (see module docstring); thread-safe getters."""

    def __init__(self, calibrator: str = '/calibrator', collector: str = '/collector',
                 node_name: str = 'ncal_demo_listener', **kwargs):
        super().__init__(node_name, **kwargs)
        self.lock = threading.Condition()
        self.tf_static: list = []                  # [(arrival index, StampedTransform)]
        self.tf_static_mono: list[float] = []      # arrival time (time.monotonic) of each tf_static entry
        self.extrinsics: list[ExtrinsicRecord] = []
        self.confidences: list[float] = []
        self.first_overlay = None                 # (stamp_ns, (H, W, 3) uint8)
        self.last_overlay = None
        self.n_overlays = 0
        self._overlay_stamps: list[int] = []     # the last few overlay stamps (lockstep waits on them)
        self.calibrator_status: dict = {}
        self.collector_status: dict = {}
        self.diagnostics: dict[str, dict] = {}     # status name -> {'level', 'message', 'values'}
        self.n_diagnostics = 0
        self._tf_count = 0
        self.create_subscription(TFMessage, '/tf_static', self._on_tf, TF_STATIC_QOS)
        self.create_subscription(PoseWithCovarianceStamped, f'{calibrator}/extrinsic', self._on_extrinsic,
                                 reliable_qos(100))
        self.create_subscription(Float32, f'{calibrator}/confidence', self._on_confidence, reliable_qos(100))
        self.create_subscription(Image, f'{calibrator}/overlay', self._on_overlay, reliable_qos(5))
        self.create_subscription(String, f'{calibrator}/status', self._on_cal_status, 10)
        self.create_subscription(String, f'{collector}/status', self._on_col_status, 10)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 50)

    def _on_tf(self, msg: TFMessage) -> None:
        with self.lock:
            for t in msg.transforms:
                self._tf_count += 1
                self.tf_static.append((self._tf_count, transform_stamped_to_matrix(t)))
                self.tf_static_mono.append(time.monotonic())
            self.lock.notify_all()

    def _on_extrinsic(self, msg: PoseWithCovarianceStamped) -> None:
        p = msg.pose.pose
        T = T_from_xyz_quat(np.array([p.position.x, p.position.y, p.position.z]),
                            np.array([p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w]))
        cov = np.asarray(msg.pose.covariance, dtype=np.float64).reshape(6, 6)
        rec = ExtrinsicRecord(stamp_to_ns(msg.header.stamp), T, np.diag(cov).copy(), time.monotonic())
        with self.lock:
            self.extrinsics.append(rec)
            self.lock.notify_all()

    def _on_confidence(self, msg: Float32) -> None:
        with self.lock:
            self.confidences.append(float(msg.data))

    def _on_overlay(self, msg: Image) -> None:
        item = (stamp_to_ns(msg.header.stamp), image_to_rgb(msg))
        with self.lock:
            self.n_overlays += 1
            self._overlay_stamps = self._overlay_stamps[-9:] + [item[0]]
            if self.first_overlay is None:
                self.first_overlay = item
            self.last_overlay = item
            self.lock.notify_all()

    def _on_cal_status(self, msg: String) -> None:
        with self.lock:
            self.calibrator_status = json.loads(msg.data)
            self.lock.notify_all()

    def _on_col_status(self, msg: String) -> None:
        with self.lock:
            self.collector_status = json.loads(msg.data)
            self.lock.notify_all()

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.n_diagnostics += 1
            for s in msg.status:
                self.diagnostics[s.name] = {'level': int.from_bytes(s.level, 'little') if isinstance(s.level, bytes)
                                            else int(s.level), 'message': s.message,
                                            'values': {kv.key: kv.value for kv in s.values}}
            self.lock.notify_all()

    def wait_extrinsic(self, stamp_ns: int, timeout_s: float, overlay: bool = False) -> bool:
        """Block until a ``~/extrinsic`` (and with ``overlay`` an ``~/overlay``) with header stamp ``stamp_ns``
        arrived (True) or timeout (False)."""
        def done() -> bool:
            return (any(r.stamp_ns == stamp_ns for r in self.extrinsics[-5:])
                    and (not overlay or stamp_ns in self._overlay_stamps))
        with self.lock:                     # every callback notifies the condition
            return bool(self.lock.wait_for(done, timeout=timeout_s))

    def wait_status(self, predicate, timeout_s: float, node: str = 'calibrator') -> bool:
        """Block until ``predicate(status)`` holds (True) or timeout (False); ``node``: 'calibrator' | 'collector'
        (whose last ``~/status`` JSON is tested)."""
        if node not in ('calibrator', 'collector'):
            raise ValueError(f"node must be 'calibrator' or 'collector', got {node!r}")
        with self.lock:
            return bool(self.lock.wait_for(lambda: predicate(getattr(self, f'{node}_status')), timeout=timeout_s))


@dataclass
class GraphRun:
    """One replay of a bag through the demo suite (calibrator + optional collector) on a live graph.

    calibrator_params / collector_params: ROS parameter overrides (dotted names, e.g. 'input.reliable');
    collector_params None = no collector. pace: 'lockstep' (publish a frame, wait for the calibrator's
    ~/extrinsic with its stamp, up to frame_timeout_s) or 'realtime' (the bag's frame rate x rate,
    the calibrator drops what it cannot keep up with). passes: replays of the bag, stamps shifted so
    time keeps moving forward. best_effort: sensor topics published BEST_EFFORT, as a driver does (the
    subscribers must then not ask for RELIABLE).
    """
    bag_dir: Path
    calibrator_params: dict
    collector_params: dict | None = None
    topics: BagTopics = field(default_factory=BagTopics)
    passes: int = 1
    pace: str = 'lockstep'
    rate: float = 1.0
    frame_timeout_s: float = 60.0
    settle_s: float = 5.0
    best_effort: bool = False
    wait_overlay: bool = True      # lockstep also waits for the frame's ~/overlay (no overlay_busy drops)
    suite: str = 'demo_full'
    node_processes: bool = False   # each node in its own process, as ros2 launch starts them (else in-process)
    log_dir: Path | None = None    # node_processes: each node's output goes to LOG_DIR/<node>.log
    startup_timeout_s: float = 120.0   # node_processes: wait this long for the nodes' subscriptions


@dataclass
class GraphRunResult:
    started: list[str]
    frames_published: int
    frames_answered: int
    answer_ms: list[float]                 # publish -> ~/extrinsic (+ ~/overlay) of that frame (lockstep)
    extrinsics: list[ExtrinsicRecord]
    confidences: list[float]
    tf_static: list                        # StampedTransform in arrival order (bag's and calibrator's)
    first_overlay: tuple | None
    last_overlay: tuple | None
    n_overlays: int
    calibrator_status: dict
    collector_status: dict
    diagnostics: dict
    wall_s: float
    publish_mono: list[tuple[int, int, float]] = field(default_factory=list)   # (pass, frame index, publish time)
    tf_static_mono: list[float] = field(default_factory=list)   # arrival time of each tf_static entry
    frame_stamps_ns: list[int] = field(default_factory=list)    # the bag's LiDAR stamps (first pass)
    pass_offset_ns: int = 0                                      # stamp shift of each further pass


def collector_settled(status: dict, frames_published: int) -> bool:
    """True once a collector ``~/status`` accounts for every frame published to it: its writer is idle and
    written + dropped + skipped reaches the frames (or it stopped: full, error or stopped)."""
    if not status:
        return False
    if status.get('state') in ('full', 'error', 'stopped'):
        return True
    q = status.get('queues', {})
    if q.get('writer_pending', 1) or q.get('writer_busy', 1):
        return False
    done = status.get('written', 0) + sum(status.get('dropped', {}).values()) + \
        sum(status.get('skipped', {}).values())
    return done >= frames_published


def _wait_for_node_processes(player, processes, n_nodes: int, run: GraphRun) -> bool:
    """True once every node process subscribed to the sensor topics; raises RuntimeError naming the node as
    soon as one of them exits during start-up (bad parameters, missing checkpoint), instead of waiting."""
    deadline = time.monotonic() + run.startup_timeout_s
    while not player.wait_for_subscribers(1.0, min_count=n_nodes):
        dead = sorted(name for name, alive in processes.alive().items() if not alive)
        if dead:
            where = f'; its output: {run.log_dir}/<node>.log' if run.log_dir else ''
            raise RuntimeError(f'node process(es) {", ".join(dead)} exited during start-up{where}')
        if time.monotonic() > deadline:
            return False
    return True


def run_graph(run: GraphRun, log=print) -> GraphRunResult:
    """Start the suite in-process (:class:`ros_ncal.ros.suite_runner.SuiteRunner`) or, with
    ``node_processes``, one process per node (:class:`ros_ncal.ros.suite_runner.ProcessSuite`); replay,
    collect."""
    import rclpy

    from ros_ncal.runner.suite import resolve_invocations, suite_specs
    from ros_ncal.ros.suite_runner import ProcessSuite, SuiteRunner
    if run.pace not in ('lockstep', 'realtime'):
        raise ValueError(f"pace must be 'lockstep' or 'realtime', got {run.pace!r}")
    if run.passes < 1:
        raise ValueError(f'passes must be >= 1, got {run.passes}')
    if run.pace == 'realtime' and run.rate <= 0:
        raise ValueError(f'realtime pace needs rate > 0, got {run.rate}')
    t0 = time.monotonic()
    invs = resolve_invocations(suite_specs(run.suite),
                               {'collector': 'true' if run.collector_params is not None else 'false',
                                'calibrator': 'true', 'extrinsic_publisher': 'false'})
    for inv in invs:
        if inv.spec.name == 'calibrator':
            inv.params.update(run.calibrator_params)
        elif inv.spec.name == 'collector':
            inv.params.update(run.collector_params or {})
    processes = ProcessSuite(invs, log_dir=run.log_dir).start() if run.node_processes else None
    try:
        runner = SuiteRunner([] if processes else invs).start()
    except BaseException:
        if processes is not None:
            processes.stop()
        raise
    started = processes.report.started if processes else runner.report.started
    answered, answer_ms, published = 0, [], 0
    try:
        listener = DemoListener(context=runner.context)
        runner.add_node(listener)
        pnode = rclpy.create_node('ncal_demo_player', context=runner.context)
        runner.add_node(pnode)
        player = FramePlayer(pnode, run.bag_dir, run.topics, queue_depth=5 if run.best_effort else 10,
                             best_effort=run.best_effort)
        if run.pace == 'realtime':
            player.preconvert()
        runner.spin_in_thread()
        if not (_wait_for_node_processes(player, processes, len(invs), run) if processes
                else player.wait_for_subscribers(15.0)):
            log('warning: not every sensor topic has a subscriber after 15 s; playing anyway')
        player.publish_tf_static()
        deadline = time.monotonic() + 5.0
        with listener.lock:   # the nominal must reach the graph before the first frame
            while not listener.tf_static and time.monotonic() < deadline:
                listener.lock.wait(timeout=0.1)
        time.sleep(0.2)
        period_s = player.duration_ns / 1e9 / len(player.frames)
        publish_mono = []
        t_play = time.monotonic()
        for p in range(run.passes):
            for i in range(len(player.frames)):
                t_pub = time.monotonic()
                stamp = player.publish_frame(i, p * player.duration_ns)
                publish_mono.append((p, i, t_pub))
                published += 1
                if run.pace == 'lockstep':
                    if listener.wait_extrinsic(stamp, run.frame_timeout_s, overlay=run.wait_overlay):
                        answered += 1
                        answer_ms.append((time.monotonic() - t_pub) * 1e3)
                    else:
                        log(f'no ~/extrinsic{" + ~/overlay" if run.wait_overlay else ""} for frame {i} '
                            f'(pass {p + 1}) within {run.frame_timeout_s} s')
                else:   # on a fixed schedule (no drift): frame k at t_play + k * period / rate
                    time.sleep(max(0.0, t_play + published * period_s / run.rate - time.monotonic()))
            log(f'pass {p + 1}/{run.passes}: {published} frames published, '
                f'{len(listener.extrinsics)} estimates received')
        if run.pace == 'realtime':   # let the last calibration (and, on a loaded machine, the first overlay) finish
            def idle(s: dict) -> bool:
                q = s.get('queues', {})
                return q.get('calib_busy', 1) == 0 and q.get('calib_pending', 1) == 0 and q.get('overlay_pending', 0) == 0
            listener.wait_status(idle, run.frame_timeout_s)
            if run.wait_overlay:
                deadline = time.monotonic() + run.frame_timeout_s
                with listener.lock:
                    while listener.n_overlays == 0 and time.monotonic() < deadline:
                        listener.lock.wait(timeout=0.2)
        n_est = len(listener.extrinsics)
        listener.wait_status(lambda s: s.get('calibrated', -1) >= n_est, run.settle_s)
        if run.collector_params is not None:   # every pair the collector formed is written, dropped or skipped
            listener.wait_status(lambda s: collector_settled(s, published), max(run.settle_s, run.frame_timeout_s),
                                 node='collector')
        # one more status period so /diagnostics and the collector status describe the end state
        seen = listener.n_diagnostics
        deadline = time.monotonic() + run.settle_s
        while listener.n_diagnostics < seen + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        with listener.lock:
            result = GraphRunResult(
                started=list(started), frames_published=published, frames_answered=answered,
                answer_ms=answer_ms, extrinsics=list(listener.extrinsics), confidences=list(listener.confidences),
                tf_static=[t for _, t in listener.tf_static], first_overlay=listener.first_overlay,
                last_overlay=listener.last_overlay, n_overlays=listener.n_overlays,
                calibrator_status=dict(listener.calibrator_status), collector_status=dict(listener.collector_status),
                diagnostics=dict(listener.diagnostics), wall_s=0.0, publish_mono=publish_mono,
                tf_static_mono=list(listener.tf_static_mono), frame_stamps_ns=[f.stamp_ns for f in player.frames],
                pass_offset_ns=player.duration_ns)
    finally:
        runner.stop()
        if processes is not None:
            codes = processes.stop()
            bad = {n: c for n, c in codes.items() if c != 0}
            if bad:
                log(f'node processes exited with {bad}' + (f' (logs: {run.log_dir})' if run.log_dir else ''))
    result.wall_s = round(time.monotonic() - t0, 2)
    return result
