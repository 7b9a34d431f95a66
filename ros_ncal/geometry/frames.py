"""Transform chains without ROS: the bag reader's /tf_static (``ncal calibrate`` on a recording). The live nodes look
up the same chain with tf2_ros (``ros_ncal.nodes._common.TfFrames``); test_upstream_ros_packages.py checks both agree."""
from __future__ import annotations

from collections import deque

import numpy as np

from .se3 import invert


def chain_transform(edges: dict[tuple[str, str], np.ndarray], target: str, source: str) -> np.ndarray | None:
    """edges: (parent, child) -> (4, 4) T_parent_child. Returns (4, 4) float64 T_target_source composed along
    the chain (edges are walked in either direction), the identity when ``target == source``, or None when the
    two frames are not connected."""
    if target == source:
        return np.eye(4)
    adj: dict[str, list[tuple[str, np.ndarray]]] = {}
    for (p, c), T in edges.items():
        adj.setdefault(p, []).append((c, T))                 # step p -> c carries T_p_c
        adj.setdefault(c, []).append((p, invert(T)))         # step c -> p carries T_c_p
    if source not in adj or target not in adj:
        return None
    seen = {target: np.eye(4)}                               # frame -> T_target_frame, breadth first
    queue = deque([target])
    while queue:
        f = queue.popleft()
        for g, T_f_g in adj[f]:
            if g in seen:
                continue
            seen[g] = seen[f] @ T_f_g
            if g == source:
                return seen[g]
            queue.append(g)
    return None
