"""The one depth colour ramp of every LiDAR-on-image overlay (the calibrator node's ~/overlay, ncal calibrate's
before/after, the demo's figures and GIF, ncal inspect): turbo-like, near = dark red, far = dark blue."""
from __future__ import annotations

import numpy as np

_TURBO_ANCHORS = np.array([[48, 18, 59], [65, 105, 226], [30, 190, 240], [40, 240, 150], [150, 250, 50],
                           [240, 200, 40], [250, 120, 20], [200, 40, 5], [122, 4, 3]], dtype=np.float64)


def turbo_ramp(t: np.ndarray) -> np.ndarray:
    """t: (N,) in [0, 1] -> (N, 3) uint8 on a turbo-like ramp (0 dark blue, cyan, green, yellow, red, 1 dark red)."""
    x = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0) * (len(_TURBO_ANCHORS) - 1)
    i = np.minimum(x.astype(np.int64), len(_TURBO_ANCHORS) - 2)
    w = (x - i)[:, None]
    return (_TURBO_ANCHORS[i] * (1 - w) + _TURBO_ANCHORS[i + 1] * w).astype(np.uint8)


def depth_colors(depth: np.ndarray, max_depth_m: float = 60.0) -> np.ndarray:
    """depth: (N,) metres -> (N, 3) uint8; near = dark red, ``max_depth_m`` and beyond = dark blue."""
    return turbo_ramp(1.0 - np.asarray(depth, dtype=np.float64) / max_depth_m)


def splat_points(image: np.ndarray, u: np.ndarray, v: np.ndarray, colors: np.ndarray, radius: int = 1) -> np.ndarray:
    """Draw (2 * radius + 1)^2 squares of ``colors`` (N, 3) at integer pixels (u, v) (N,) onto ``image`` (H, W, 3)
    in place, in the given order (later points on top); returns ``image``."""
    H, W = image.shape[:2]
    r = max(0, int(radius))
    for dv in range(-r, r + 1):
        for du in range(-r, r + 1):
            uu, vv = u + du, v + dv
            ok = (uu >= 0) & (uu < W) & (vv >= 0) & (vv < H)
            image[vv[ok], uu[ok]] = colors[ok]
    return image
