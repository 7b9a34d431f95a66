"""Draw LiDAR points projected into an image, coloured by depth (numpy only; the ramp: viz/colors.py)."""
from __future__ import annotations

import numpy as np

from ros_ncal.geometry import project_lidar

from .colors import depth_colors, draw_points


def draw_projection_overlay(image: np.ndarray, points: np.ndarray, T_cam_lidar: np.ndarray, K: np.ndarray,
                            radius: int = 1, max_depth_m: float = 60.0, scale: float = 1.0) -> tuple[np.ndarray, int]:
    """image: (H, W, 3) uint8 RGB; points: (N, 3+) LiDAR frame -> (overlay copy, points drawn).

    Each point inside the image becomes a (2 * radius + 1)^2 square; far points are drawn
    first so near ones stay on top. scale < 1: the image is downscaled first (K scaled with it).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'image must be (H, W, 3) uint8, got {image.shape} {image.dtype}')
    if not 0 < scale <= 1.0:
        raise ValueError(f'scale must be in (0, 1], got {scale}')
    if scale < 1.0:
        from PIL import Image
        H0, W0 = image.shape[:2]
        w, h = max(1, round(W0 * scale)), max(1, round(H0 * scale))
        image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
        K = np.diag([w / W0, h / H0, 1.0]) @ np.asarray(K, np.float64)
    H, W = image.shape[:2]
    uv, depth, mask = project_lidar(points, T_cam_lidar, K, (H, W))
    uv, depth = uv[mask], depth[mask]
    out = draw_points(image.copy(), uv, depth_colors(depth, max_depth_m), depth, radius)
    return out, int(mask.sum())
