"""QoS profiles used by the project's nodes and tools (docs/design.md, "ROS conventions the nodes follow")."""
from __future__ import annotations

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)


def sensor_qos(depth: int = 5, reliable: bool = False) -> QoSProfile:
    """Sensor subscriptions: KEEP_LAST depth, BEST_EFFORT (or RELIABLE), VOLATILE."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def reliable_qos(depth: int = 10) -> QoSProfile:
    """Publishers of data streams: RELIABLE, VOLATILE (matches reliable and best-effort readers)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def latched_qos(depth: int = 1) -> QoSProfile:
    """/tf_static and other latched topics: RELIABLE, TRANSIENT_LOCAL, KEEP_LAST depth (1)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


TF_STATIC_QOS = latched_qos(1)
SENSOR_DATA_QOS = qos_profile_sensor_data
