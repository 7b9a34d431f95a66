"""Preview pictures of synthetic (or any labelled) Samples (``ncal synth --out``): point overlays, label images,
bird's-eye views. Points are drawn with the one splat and depth ramp of every overlay (viz/colors.py), classes in the
SemanticKITTI palette (:func:`ros_ncal.data.labels.class_colors`, as every class overlay)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ros_ncal.data.sample import Sample
from ros_ncal.data.labels import class_colors
from ros_ncal.geometry import project_lidar

from .colors import depth_colors, draw_points


def overlay_points(sample: Sample, T_cam_lidar: np.ndarray | None = None, by: str = 'class',
                   dim: float = 0.45, radius: int = 1, max_depth_m: float = 60.0) -> np.ndarray:
    """(H, W, 3) uint8: the dimmed image with the points projected by ``T_cam_lidar`` (default the sample's),
    coloured by semantic class (``by='class'``) or by depth (``by='depth'``: the one depth ramp, near = red),
    near points drawn last."""
    T = sample.T_cam_lidar if T_cam_lidar is None else T_cam_lidar
    uv, depth, mask = project_lidar(sample.points, T, sample.K, sample.image_hw)
    if by == 'class':
        if sample.point_labels is None:
            raise ValueError('overlay by class needs point_labels')
        colors = class_colors(sample.point_labels[mask])
    elif by == 'depth':
        colors = depth_colors(depth[mask], max_depth_m)
    else:
        raise ValueError(f"by must be 'class' or 'depth', got {by!r}")
    out = (sample.image.astype(np.float32) * dim).astype(np.uint8)
    return draw_points(out, uv[mask], colors, depth[mask], radius)


def bev_image(sample: Sample, extent_m: float = 50.0, resolution_m: float = 0.1) -> np.ndarray:
    """(S, S, 3) uint8 bird's-eye view (x forward = up, y left = left) of the points coloured by class,
    with the 3D boxes drawn as outlines (white)."""
    from PIL import Image, ImageDraw

    S = int(round(2 * extent_m / resolution_m))
    img = np.zeros((S, S, 3), np.uint8)
    p = sample.points
    row = np.floor((extent_m - p[:, 0]) / resolution_m).astype(np.int64)
    col = np.floor((extent_m - p[:, 1]) / resolution_m).astype(np.int64)
    ok = (row >= 0) & (row < S) & (col >= 0) & (col < S)
    order = np.flatnonzero(ok)[np.argsort(p[ok, 2])]  # higher points on top
    labels = sample.point_labels if sample.point_labels is not None else np.zeros(len(p), np.int32)
    img[row[order], col[order]] = class_colors(labels[order])
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    if sample.boxes is not None:
        for x, y, _, l, w, _, yaw in sample.boxes:
            c, s = np.cos(yaw), np.sin(yaw)
            corners = [(x + c * dx - s * dy, y + s * dx + c * dy) for dx, dy in
                       ((l / 2, w / 2), (l / 2, -w / 2), (-l / 2, -w / 2), (-l / 2, w / 2))]
            pts = [((extent_m - cy) / resolution_m, (extent_m - cx) / resolution_m) for cx, cy in corners]
            draw.polygon(pts, outline=(255, 255, 255))
            front = ((extent_m - (y + s * l / 2)) / resolution_m, (extent_m - (x + c * l / 2)) / resolution_m)
            draw.line([((extent_m - y) / resolution_m, (extent_m - x) / resolution_m), front], fill=(255, 255, 255))
    return np.asarray(pil)


def save_previews(sample: Sample, out_dir: str | Path, prefix: str) -> list[Path]:
    """Write ``<prefix>_image.png``, ``_points.png`` (class overlay), ``_labels.png`` and ``_bev.png``."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    pictures = {'image': sample.image, 'points': overlay_points(sample), 'bev': bev_image(sample)}
    if sample.pixel_labels is not None:
        pictures['labels'] = class_colors(sample.pixel_labels)
    for name, pic in pictures.items():
        path = out / f'{prefix}_{name}.png'
        Image.fromarray(pic).save(path, optimize=True)
        paths.append(path)
    return paths
