"""The one depth colour ramp and the one point splat of every LiDAR-on-image overlay (the calibrator node's
~/overlay, ncal calibrate's before/after, the demo's figures and GIF, ncal inspect, ncal synth's previews, the
demo's segmentation picture): turbo-like, near = dark red, far = dark blue."""
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


def draw_points(image: np.ndarray, uv: np.ndarray, colors: np.ndarray, depth: np.ndarray | None = None,
                radius: int = 1) -> np.ndarray:
    """The one point splat of every overlay: a (2 * radius + 1)^2 square of ``colors`` (N, 3) at each of ``uv``
    (N, 2) pixels, onto ``image`` (H, W, 3) in place; returns ``image``.

    Float ``uv`` go to the nearest pixel (floor(x + 0.5), pixel centres at integers); integer ``uv`` are used as
    they are. With ``depth`` (N,) the far points are drawn first so near ones stay on top; without it, in the
    given order (later points on top), whole squares over whole squares. Squares are clipped at the image border.
    """
    uv = np.asarray(uv)
    colors = np.asarray(colors)
    if depth is not None:
        order = np.argsort(-np.asarray(depth), kind='stable')
        uv, colors = uv[order], colors[order]
    if np.issubdtype(uv.dtype, np.integer):
        u, v = uv[:, 0].astype(np.int64), uv[:, 1].astype(np.int64)
    else:
        u, v = np.floor(uv[:, 0] + 0.5).astype(np.int64), np.floor(uv[:, 1] + 0.5).astype(np.int64)
    H, W = image.shape[:2]
    r = max(0, int(radius))
    dv, du = np.mgrid[-r:r + 1, -r:r + 1].reshape(2, 1, -1)
    uu, vv = (u[:, None] + du).ravel(), (v[:, None] + dv).ravel()  # point-major: a later point's square wins
    ok = (uu >= 0) & (uu < W) & (vv >= 0) & (vv < H)
    image[vv[ok], uu[ok]] = np.repeat(colors, du.size, axis=0)[ok]
    return image
