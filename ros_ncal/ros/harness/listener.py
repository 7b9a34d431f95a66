"""A listener node that records what the extrinsic publisher publishes (``ncal demo --scenario publisher``, tests)."""
from __future__ import annotations

import threading

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage

from ros_ncal.msgcodec import image_to_rgb, stamp_to_ns, transform_stamped_to_matrix
from ros_ncal.ros.qos import TF_STATIC_QOS, latched_qos


class OutputListener(Node):
    """Collects /tf_static transforms, the latched extrinsic topic, overlay images and diagnostics.

    tf_static: list of StampedTransform; extrinsics: list of StampedTransform; overlays: list of
    (stamp_ns, (H, W, 3) uint8) (the first ``keep_overlays`` kept, all counted).
    """

    def __init__(self, extrinsic_topic: str, overlay_topic: str, keep_overlays: int = 8,
                 node_name: str = 'ncal_listener', **kwargs):
        super().__init__(node_name, **kwargs)
        self.lock = threading.Lock()
        self.tf_static, self.extrinsics, self.overlays = [], [], []
        self.n_overlays = 0
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.keep_overlays = keep_overlays
        self.create_subscription(TFMessage, '/tf_static', self._on_tf, TF_STATIC_QOS)
        self.create_subscription(TransformStamped, extrinsic_topic, self._on_extrinsic, latched_qos(1))
        self.create_subscription(Image, overlay_topic, self._on_overlay, 10)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)

    def _on_tf(self, msg: TFMessage) -> None:
        with self.lock:
            self.tf_static.extend(transform_stamped_to_matrix(t) for t in msg.transforms)

    def _on_extrinsic(self, msg: TransformStamped) -> None:
        with self.lock:
            self.extrinsics.append(transform_stamped_to_matrix(msg))

    def _on_overlay(self, msg: Image) -> None:
        with self.lock:
            self.n_overlays += 1
            if len(self.overlays) < self.keep_overlays:
                self.overlays.append((stamp_to_ns(msg.header.stamp), image_to_rgb(msg)))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self.lock:
            for s in msg.status:
                self.diagnostics[s.name] = {kv.key: kv.value for kv in s.values}
