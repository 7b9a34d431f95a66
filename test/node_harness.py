"""Test harness for the collector / calibrator nodes: a real rclpy graph on a fresh Context.

``RosGraph`` spins the nodes under test plus a publisher node in a MultiThreadedExecutor on a
background thread; ``SensorPublisher`` sends Image / CameraInfo / PointCloud2 / TFMessage built
with the project's own conversions. The ROS env (SHM only, local domain) comes from conftest.py.
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from ros_ncal.geometry import invert
from ros_ncal.msgcodec import CameraIntrinsics
from ros_ncal.ros.conversions import (intrinsics_to_camera_info_msg, matrix_to_transform_stamped,
                                      points_to_cloud_msg, rgb_to_image_msg)
from ros_ncal.ros.qos import TF_STATIC_QOS, reliable_qos

from support import wait_for as _wait_for

LIDAR_FRAME = 'velo_link'
CAMERA_FRAME = 'camera_optical_frame'
# LiDAR x forward, y left, z up -> optical z forward, x right, y down
T_CAM_LIDAR_AXES = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def overrides(params: dict) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in params.items()]


def synthetic_frame(rng: np.random.Generator, n_points: int = 400, hw=(48, 64)):
    """(points (N, 4) float32 in front of the LiDAR, image (H, W, 3) uint8, K (3, 3))."""
    H, W = hw
    x = rng.uniform(4.0, 20.0, n_points)
    y = rng.uniform(-0.5, 0.5, n_points) * x
    z = rng.uniform(-0.3, 0.3, n_points) * x
    pts = np.stack([x, y, z, rng.uniform(0, 1, n_points)], axis=1).astype(np.float32)
    img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    K = np.array([[W * 0.8, 0, W / 2 - 0.5], [0, W * 0.8, H / 2 - 0.5], [0, 0, 1]], dtype=np.float64)
    return pts, img, K


class SensorPublisher:
    """Publishes sensor messages on the default relative topic names of the nodes."""

    def __init__(self, node: Node, ns: str = '/', reliable: bool = True):
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
        from tf2_msgs.msg import TFMessage
        self.node = node
        q = reliable_qos(10)
        p = ns.rstrip('/') + '/'
        self.image = node.create_publisher(Image, p + 'image', q)
        self.compressed = node.create_publisher(CompressedImage, p + 'image/compressed', q)
        self.info = node.create_publisher(CameraInfo, p + 'camera_info', q)
        self.points = node.create_publisher(PointCloud2, p + 'points', q)
        self.tf_static = node.create_publisher(TFMessage, '/tf_static', TF_STATIC_QOS)

    def send_tf_static(self, T_cam_lidar: np.ndarray, lidar_frame=LIDAR_FRAME, camera_frame=CAMERA_FRAME) -> None:
        from tf2_msgs.msg import TFMessage
        ts = matrix_to_transform_stamped(invert(T_cam_lidar), lidar_frame, camera_frame, 1)
        self.tf_static.publish(TFMessage(transforms=[ts]))

    def send_frame(self, stamp_ns: int, points: np.ndarray, rgb: np.ndarray, K: np.ndarray,
                   lidar_frame=LIDAR_FRAME, camera_frame=CAMERA_FRAME, cam_dt_ns: int = 0) -> None:
        H, W = rgb.shape[:2]
        info = intrinsics_to_camera_info_msg(CameraIntrinsics(K=K, D=np.zeros(5), width=W, height=H),
                                             camera_frame, stamp_ns + cam_dt_ns)
        self.info.publish(info)
        self.image.publish(rgb_to_image_msg(rgb, camera_frame, stamp_ns + cam_dt_ns))
        self.points.publish(points_to_cloud_msg(points, lidar_frame, stamp_ns))

    def warm_up(self, received, hw=(8, 8), timeout_s: float = 60.0) -> bool:
        """Publish stamp-0 image / CameraInfo / cloud (dropped as stamp_zero by the nodes) until
        ``received()`` says the subscriber got each stream: covers the discovery race of a fresh process."""
        H, W = hw
        K = np.array([[W, 0, W / 2], [0, W, H / 2], [0, 0, 1.0]])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.info.publish(intrinsics_to_camera_info_msg(CameraIntrinsics(K=K, width=W, height=H),
                                                            CAMERA_FRAME, 0))
            self.image.publish(rgb_to_image_msg(np.zeros((H, W, 3), np.uint8), CAMERA_FRAME, 0))
            self.points.publish(points_to_cloud_msg(np.ones((1, 4), np.float32), LIDAR_FRAME, 0))
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                if received():
                    return True
                time.sleep(0.02)
        return False

    def wait_matched(self, timeout_s: float = 10.0, pubs=None) -> bool:
        pubs = pubs or [self.image, self.info, self.points]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in pubs):
                return True
            time.sleep(0.02)
        return False


class StatusListener:
    """Keeps the latest JSON of a ``~/status`` topic and every DiagnosticArray on /diagnostics."""

    def __init__(self, node: Node, status_topic: str | None = None):
        from diagnostic_msgs.msg import DiagnosticArray
        from std_msgs.msg import String
        self.latest: dict | None = None
        self.diagnostics: list = []
        self._lock = threading.Lock()
        if status_topic:
            node.create_subscription(String, status_topic, self._on_status, 10)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 50)

    def _on_status(self, msg) -> None:
        with self._lock:
            self.latest = json.loads(msg.data)

    def _on_diag(self, msg) -> None:
        with self._lock:
            self.diagnostics.extend(msg.status)

    def diag_values(self, name_contains: str) -> list[dict]:
        with self._lock:
            return [dict({kv.key: kv.value for kv in s.values}, _level=int.from_bytes(s.level, 'little')
                         if isinstance(s.level, bytes) else int(s.level), _message=s.message)
                    for s in self.diagnostics if name_contains in s.name]


class RosGraph:
    """A fresh rclpy Context with an executor spinning on a thread; nodes added via :meth:`add`."""

    def __init__(self, num_threads: int = 4):
        self.context = Context()
        rclpy.init(context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=num_threads, context=self.context)
        self.nodes: list[Node] = []
        self.helper = Node('ncal_test_helper', context=self.context)
        self.add(self.helper)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - shutdown races
            pass

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def make(self, cls, params: dict | None = None, **kwargs):
        return self.add(cls(context=self.context, parameter_overrides=overrides(params or {}), **kwargs))

    wait_for = staticmethod(_wait_for)     # support.wait_for: poll a predicate until it holds or time runs out

    def close(self) -> None:
        for n in reversed(self.nodes):
            close = getattr(n, 'close', None)
            if close is not None:
                close()
        self.executor.shutdown(timeout_sec=5.0)
        for n in reversed(self.nodes):
            self.executor.remove_node(n)
            n.destroy_node()
        rclpy.shutdown(context=self.context)
        self._thread.join(timeout=5.0)

    def __enter__(self) -> 'RosGraph':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TopicLog:
    """Every message received on ``topic`` (thread-safe list ``msgs``; ``len()`` counts them)."""

    def __init__(self, node, msg_type, topic: str, qos=10):
        self.msgs: list = []
        self._lock = threading.Lock()
        node.create_subscription(msg_type, topic, self._cb, qos)

    def _cb(self, msg) -> None:
        with self._lock:
            self.msgs.append(msg)

    def __len__(self) -> int:
        with self._lock:
            return len(self.msgs)


def mutate_cloud_msg(rng, m):
    """Corrupt a PointCloud2 in one of 8 random ways (fuzz tests of every node): bad point_step or
    row_step, truncated data, bogus width/height, broken field, NaN/huge bytes, wrong endianness, or
    (kind 7) left intact."""
    kind = rng.integers(0, 8)
    if kind == 0:
        m.point_step = int(rng.integers(-4, 40))
    elif kind == 1:
        m.row_step = int(rng.integers(0, 2 * m.row_step + 2))
    elif kind == 2:
        m.data = bytes(m.data)[: rng.integers(0, len(m.data) + 1)]
    elif kind == 3:
        m.width, m.height = int(rng.integers(0, 1000)), int(rng.integers(0, 4))
    elif kind == 4:
        f = m.fields[int(rng.integers(0, len(m.fields)))]
        f.offset, f.datatype, f.count = int(rng.integers(0, 20)), int(rng.integers(0, 10)), int(rng.integers(0, 3))
    elif kind == 5:
        arr = np.frombuffer(bytes(m.data), np.uint8).copy()
        if arr.size:
            arr[rng.integers(0, arr.size, size=min(arr.size, 50))] = 0xFF   # NaN / huge floats
        m.data = arr.tobytes()
    elif kind == 6:
        m.is_bigendian = True
    return m
