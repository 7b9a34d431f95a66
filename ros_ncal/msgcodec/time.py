"""builtin_interfaces/Time <-> integer nanoseconds (pure python)."""
from __future__ import annotations

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp) -> int:
    """Time-like (sec, nanosec) -> int ns."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_sec_nanosec(ns: int) -> tuple[int, int]:
    """int ns (>= 0) -> (sec, nanosec) with 0 <= nanosec < 1e9."""
    ns = int(ns)
    if ns < 0:
        raise ValueError(f'negative time stamp {ns} ns')
    return ns // NS_PER_S, ns % NS_PER_S
