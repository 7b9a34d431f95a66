"""LiDAR points and 3D boxes drawn on a sample's image (``ncal inspect``): numpy + PIL, no OpenCV.

Each point is projected with the sample's own ``T_cam_lidar`` and ``K`` (or a given extrinsic), coloured by
depth (the one depth ramp, :mod:`ros_ncal.viz.colors`), semantic class or intensity, far points first so near
ones stay on top; 3D boxes are projected wireframes (edges clipped at the near plane) with a cross on the
front face.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ros_ncal.data.boxes3d import BOX_EDGES, FRONT_CROSS, box_corners
from ros_ncal.data.labels import BOX_PALETTE, SEMANTICKITTI_PALETTE, class_colors
from ros_ncal.data.sample import Sample
from ros_ncal.geometry import project_lidar, transform_points

from .colors import depth_colors, draw_points

COLOR_MODES = ('depth', 'class', 'intensity')


def colormap_lut(name: str = 'viridis') -> np.ndarray:
    """(256, 3) uint8 lookup table of a matplotlib colormap (imported lazily; the intensity mode)."""
    import matplotlib
    cmap = matplotlib.colormaps[name]
    return (cmap(np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def point_colors(sample: Sample, mode: str, depth: np.ndarray, max_depth: float = 60.0,
                 palette: np.ndarray = SEMANTICKITTI_PALETTE) -> np.ndarray:
    """(N, 3) uint8 colours of the sample's points for ``mode`` in COLOR_MODES.

    depth: :func:`ros_ncal.viz.colors.depth_colors` (near = red, far = blue, the one depth ramp); class: palette[point_labels] (ValueError if unlabelled);
    intensity: viridis of intensity scaled to its 99th percentile.
    """
    if mode == 'depth':
        return depth_colors(depth, max_depth)
    if mode == 'class':
        if sample.point_labels is None:
            raise ValueError('color=class needs point_labels; this sample has none (use depth or intensity)')
        return class_colors(sample.point_labels, palette)
    if mode == 'intensity':
        inten = sample.points[:, 3].astype(np.float64)
        hi = max(float(np.percentile(inten, 99)) if len(inten) else 1.0, 1e-6)
        return colormap_lut('viridis')[(255 * np.clip(inten / hi, 0, 1)).astype(np.int64)]
    raise ValueError(f'color mode must be one of {COLOR_MODES}, got {mode!r}')


def _clip_segment(a: np.ndarray, b: np.ndarray, near: float):
    """Clip the camera-frame segment a-b to z >= near; None when fully behind."""
    if a[2] < near and b[2] < near:
        return None
    if a[2] < near:
        a = a + (b - a) * (near - a[2]) / (b[2] - a[2])
    elif b[2] < near:
        b = b + (a - b) * (near - b[2]) / (a[2] - b[2])
    return a, b


def draw_boxes(image: np.ndarray, boxes: np.ndarray, box_labels: np.ndarray | None, T_cam_lidar: np.ndarray,
               K: np.ndarray, width: int = 2, near: float = 0.1, palette: np.ndarray = BOX_PALETTE) -> np.ndarray:
    """Projected 3D wireframes of (M, 7) LiDAR-frame boxes onto a copy of image."""
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    labels = np.zeros(len(boxes), np.int64) if box_labels is None else np.asarray(box_labels)
    corners = box_corners(boxes)  # (M, 8, 3) LiDAR frame
    for m in range(len(boxes)):
        cam = transform_points(T_cam_lidar, corners[m])
        color = tuple(int(x) for x in class_colors(labels[m], palette))
        for i, j in BOX_EDGES + FRONT_CROSS:
            seg = _clip_segment(cam[i], cam[j], near)
            if seg is None:
                continue
            p = np.stack(seg) @ np.asarray(K).T
            p = p[:, :2] / p[:, 2:3]
            if not np.all(np.isfinite(p)) or np.abs(p).max() > 1e5:
                continue
            draw.line([tuple(p[0]), tuple(p[1])], fill=color, width=width)
    return np.asarray(pil)


def render_overlay(sample: Sample, color: str = 'depth', radius: int = 1, max_depth: float = 60.0,
                   draw_box_wireframes: bool = True, T_cam_lidar: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8: the sample's image with its in-image points (and boxes) drawn on it.

    T_cam_lidar: project with this extrinsic instead of the sample's (e.g. a calibrator's estimate).
    """
    T = sample.T_cam_lidar if T_cam_lidar is None else T_cam_lidar
    uv, depth, mask = project_lidar(sample.points, T, sample.K, sample.image_hw)
    colors = point_colors(sample, color, depth, max_depth)
    out = draw_points(sample.image.copy(), uv[mask], colors[mask], depth[mask], radius)
    if draw_box_wireframes and sample.boxes is not None and len(sample.boxes):
        out = draw_boxes(out, sample.boxes, sample.box_labels, T, sample.K)
    return out


