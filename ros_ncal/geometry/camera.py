"""Pinhole projection and intrinsics bookkeeping for rectified images.

Camera frame: optical (z forward, x right, y down). Pixel (u, v): u along image width.
"""
from __future__ import annotations

import numpy as np

from .se3 import transform_points


def validate_K(K: np.ndarray, name: str = 'K') -> np.ndarray:
    """Return K as (3, 3) float64 or raise ValueError (finite, positive focal lengths, [0 0 1] last row)."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f'{name}: expected shape (3, 3), got {K.shape}')
    if not np.all(np.isfinite(K)):
        raise ValueError(f'{name}: contains NaN or inf')
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f'{name}: focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}')
    if not np.allclose(K[2], [0.0, 0.0, 1.0]):
        raise ValueError(f'{name}: last row must be [0, 0, 1], got {K[2].tolist()}')
    return K


def project_points(points_cam: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """points_cam: (N, 3) in the optical frame -> uv (N, 2) float64 pixels, depth (N,) = z.

    Points at or behind the camera get uv = NaN (use the depth/mask to filter).
    """
    P = np.asarray(points_cam, dtype=np.float64)[:, :3]
    z = P[:, 2]
    uv = np.full((len(P), 2), np.nan)
    ok = z > 1e-9
    uvw = P[ok] @ np.asarray(K, dtype=np.float64).T
    uv[ok] = uvw[:, :2] / uvw[:, 2:3]
    return uv, z


def in_image_mask(uv: np.ndarray, depth: np.ndarray, image_hw: tuple[int, int], min_depth: float = 0.1,
                  max_depth: float = np.inf) -> np.ndarray:
    """(N,) bool: depth in [min_depth, max_depth] and 0 <= u < W, 0 <= v < H."""
    H, W = image_hw
    with np.errstate(invalid='ignore'):
        return ((depth >= min_depth) & (depth <= max_depth) & (uv[:, 0] >= 0) & (uv[:, 0] < W)
                & (uv[:, 1] >= 0) & (uv[:, 1] < H))


def project_lidar(points_lidar: np.ndarray, T_cam_lidar: np.ndarray, K: np.ndarray, image_hw: tuple[int, int],
                  min_depth: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """points_lidar: (N, 3+) LiDAR frame -> uv (N, 2), depth (N,), mask (N,) of points inside the image."""
    P_cam = transform_points(T_cam_lidar, points_lidar)
    uv, depth = project_points(P_cam, K)
    return uv, depth, in_image_mask(uv, depth, image_hw, min_depth)


def backproject(uv: np.ndarray, depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """uv: (N, 2) pixels, depth: (N,) -> (N, 3) points in the optical frame."""
    K = np.asarray(K, dtype=np.float64)
    x = (uv[:, 0] - K[0, 2]) / K[0, 0]
    y = (uv[:, 1] - K[1, 2]) / K[1, 1]
    return np.stack([x * depth, y * depth, depth], axis=1)


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K for an image resized by factors (sx along width, sy along height), pixel-corner convention."""
    K2 = np.asarray(K, dtype=np.float64).copy()
    K2[0, 0] *= sx
    K2[0, 2] = (K2[0, 2] + 0.5) * sx - 0.5
    K2[1, 1] *= sy
    K2[1, 2] = (K2[1, 2] + 0.5) * sy - 0.5
    K2[0, 1] *= sx
    return K2


def crop_intrinsics(K: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """K for the crop whose top-left pixel is (x0, y0) in the original image."""
    K2 = np.asarray(K, dtype=np.float64).copy()
    K2[0, 2] -= x0
    K2[1, 2] -= y0
    return K2


def flip_intrinsics(K: np.ndarray, width: int) -> np.ndarray:
    """K' such that u' = W - 1 - u for the horizontally mirrored image.

    A mirror is not a rotation: the pinhole model of the flipped image has fx' = -fx.
    Callers that need a positive fx mirror the point cloud instead (y -> -y in the camera
    frame is equivalent); see ros_ncal.nclr augmentation.
    """
    K2 = np.asarray(K, dtype=np.float64).copy()
    K2[0, 0] = -K2[0, 0]
    K2[0, 1] = -K2[0, 1]
    K2[0, 2] = width - 1 - K2[0, 2]
    return K2
