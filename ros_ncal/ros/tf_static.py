"""Static transform broadcasting: tf2_ros when importable, else our own /tf_static publisher.

The fallback publishes tf2_msgs/TFMessage on /tf_static with TRANSIENT_LOCAL depth 1 and
keeps every transform it has sent (keyed by child frame), so the one latched message always
holds all of them, as tf2_ros does.
"""
from __future__ import annotations

import numpy as np

from .conversions import matrix_to_transform_stamped
from .qos import TF_STATIC_QOS

TF_STATIC_TOPIC = '/tf_static'


class StaticTransformBroadcaster:
    """Latched static transforms. ``uses_tf2_ros`` tells which implementation is active."""

    def __init__(self, node, prefer_tf2_ros: bool = True):
        self._node = node
        self._sent: dict[str, object] = {}
        self._tf2 = None
        self._pub = None
        if prefer_tf2_ros:
            try:
                from tf2_ros import StaticTransformBroadcaster as _Tf2Broadcaster
                self._tf2 = _Tf2Broadcaster(node)
            except ImportError:
                self._tf2 = None
        if self._tf2 is None:
            from tf2_msgs.msg import TFMessage
            self._msg_type = TFMessage
            self._pub = node.create_publisher(TFMessage, TF_STATIC_TOPIC, TF_STATIC_QOS)

    @property
    def uses_tf2_ros(self) -> bool:
        return self._tf2 is not None

    def send_transform(self, transforms) -> None:
        """TransformStamped or a list of them; replaces earlier ones with the same child frame."""
        if not isinstance(transforms, (list, tuple)):
            transforms = [transforms]
        if self._tf2 is not None:
            self._tf2.sendTransform(list(transforms))
            return
        for t in transforms:
            self._sent[t.child_frame_id] = t
        self._pub.publish(self._msg_type(transforms=list(self._sent.values())))

    def send_matrix(self, T_parent_child: np.ndarray, parent_frame: str, child_frame: str, stamp_ns: int) -> None:
        """Publish T_parent_child (4, 4) with header.frame_id=parent, child_frame_id=child."""
        self.send_transform(matrix_to_transform_stamped(T_parent_child, parent_frame, child_frame, stamp_ns))

    @property
    def sent_child_frames(self) -> list[str]:
        return list(self._sent)
