"""3D box helpers for Samples: corners, point-in-box tests, camera <-> LiDAR conversion of KITTI labels.

Box convention (docs/design.md, "Frames and transforms"): (x, y, z, l, w, h, yaw) in the LiDAR frame; (x, y, z) is the geometric
centre; l runs along the heading, w across it, h along z; yaw is the heading angle about +z from +x (rad).
"""
from __future__ import annotations

import numpy as np

# Unit-box corner signs (l, w, h); 0-3 the bottom face counter-clockwise seen from above, 4-7 the top face.
_CORNER_SIGNS = np.array([[1, 1, -1], [-1, 1, -1], [-1, -1, -1], [1, -1, -1],
                          [1, 1, 1], [-1, 1, 1], [-1, -1, 1], [1, -1, 1]], dtype=np.float64) * 0.5
# Wireframe edges as corner index pairs: bottom, top, verticals; plus a heading tick (front-face cross).
BOX_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))
FRONT_CROSS = ((0, 7), (3, 4))


def wrap_angle(a):
    """Angles to [-pi, pi)."""
    return (np.asarray(a, dtype=np.float64) + np.pi) % (2 * np.pi) - np.pi


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """boxes: (M, 7) -> (M, 8, 3) corners in the boxes' frame (corners 0,3,4,7 are on the front face, +l)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    local = _CORNER_SIGNS[None] * b[:, None, 3:6]
    c, s = np.cos(b[:, 6]), np.sin(b[:, 6])
    R = np.stack([np.stack([c, -s, np.zeros_like(c)], -1), np.stack([s, c, np.zeros_like(c)], -1),
                  np.tile([0.0, 0.0, 1.0], (len(b), 1))], axis=1)  # (M, 3, 3)
    return np.einsum('mij,mkj->mki', R, local) + b[:, None, :3]


def points_in_boxes(points: np.ndarray, boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """points: (N, 3+), boxes: (M, 7) -> (M, N) bool, True where the point is inside the box (+ margin m)."""
    P = np.asarray(points, dtype=np.float64)[:, :3]
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    out = np.zeros((len(b), len(P)), dtype=bool)
    for m, (x, y, z, l, w, h, yaw) in enumerate(b):
        d = P - (x, y, z)
        c, s = np.cos(yaw), np.sin(yaw)
        u = c * d[:, 0] + s * d[:, 1]
        v = -s * d[:, 0] + c * d[:, 1]
        out[m] = (np.abs(u) <= l / 2 + margin) & (np.abs(v) <= w / 2 + margin) & (np.abs(d[:, 2]) <= h / 2 + margin)
    return out


def kitti_camera_boxes_to_lidar(location: np.ndarray, dimensions_hwl: np.ndarray, rotation_y: np.ndarray,
                                T_rect_lidar: np.ndarray) -> np.ndarray:
    """KITTI label_2 boxes -> (M, 7) LiDAR-frame boxes.

    location: (M, 3) bottom centre in the rectified reference camera frame (x right, y down, z forward);
    dimensions_hwl: (M, 3) h, w, l; rotation_y: (M,) rad about the camera y axis (0 = facing camera +x);
    T_rect_lidar: (4, 4) = R0_rect @ Tr_velo_to_cam (LiDAR -> rectified reference camera, no P2 offset).
    The heading is carried through the actual rotation, which for KITTI's calibration is yaw = -rotation_y - pi/2.
    """
    loc = np.asarray(location, dtype=np.float64).reshape(-1, 3)
    hwl = np.asarray(dimensions_hwl, dtype=np.float64).reshape(-1, 3)
    ry = np.asarray(rotation_y, dtype=np.float64).reshape(-1)
    T_lidar_rect = np.linalg.inv(np.asarray(T_rect_lidar, dtype=np.float64))
    centre_cam = loc - np.stack([np.zeros(len(loc)), hwl[:, 0] / 2, np.zeros(len(loc))], axis=1)  # y is down
    centre = centre_cam @ T_lidar_rect[:3, :3].T + T_lidar_rect[:3, 3]
    heading_cam = np.stack([np.cos(ry), np.zeros_like(ry), -np.sin(ry)], axis=1)  # R_y(ry) @ [1, 0, 0]
    heading = heading_cam @ T_lidar_rect[:3, :3].T
    yaw = np.arctan2(heading[:, 1], heading[:, 0])
    return np.concatenate([centre, hwl[:, [2, 1, 0]], wrap_angle(yaw)[:, None]], axis=1)
