"""Draw LiDAR points projected into an image, coloured by depth (numpy only)."""
from __future__ import annotations

import numpy as np

from ros_ncal.geometry import project_lidar


def depth_colors(depth: np.ndarray, max_depth_m: float = 60.0) -> np.ndarray:
    """depth: (N,) metres -> (N, 3) uint8 colours, near = red, far = blue (a jet-like ramp)."""
    t = np.clip(np.asarray(depth, np.float64) / max_depth_m, 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4 * t - 1), 0, 1)
    g = np.clip(1.5 - np.abs(4 * t - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * t - 3), 0, 1)
    return (np.stack([r, g, b], axis=1) * 255).astype(np.uint8)


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
    out = image.copy()
    uv, depth = uv[mask], depth[mask]
    order = np.argsort(-depth)
    u = uv[order, 0].astype(np.int64)
    v = uv[order, 1].astype(np.int64)
    colors = depth_colors(depth[order], max_depth_m)
    r = max(0, int(radius))
    for dv in range(-r, r + 1):
        for du in range(-r, r + 1):
            uu, vv = u + du, v + dv
            ok = (uu >= 0) & (uu < W) & (vv >= 0) & (vv < H)
            out[vv[ok], uu[ok]] = colors[ok]
    return out, int(mask.sum())
