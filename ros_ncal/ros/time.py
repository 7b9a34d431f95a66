"""builtin_interfaces/Time helpers for rclpy (stamp <-> integer nanoseconds)."""
from __future__ import annotations

from builtin_interfaces.msg import Time

from ros_ncal.msgcodec.time import ns_to_sec_nanosec, stamp_to_ns  # noqa: F401


def ns_to_stamp(ns: int) -> Time:
    """int ns -> builtin_interfaces/Time."""
    sec, nanosec = ns_to_sec_nanosec(ns)
    return Time(sec=sec, nanosec=nanosec)


def now_ns(node) -> int:
    """The node's clock (honours use_sim_time) in ns."""
    return int(node.get_clock().now().nanoseconds)
