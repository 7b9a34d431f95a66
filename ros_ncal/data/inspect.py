"""Look at a dataset: LiDAR-on-image overlays (numpy + PIL, no OpenCV) and summary statistics.

Overlays project each point with the sample's own ``T_cam_lidar`` and ``K``, coloured by depth, semantic
class or intensity, far points first so near ones stay on top; 3D boxes are drawn as projected wireframes
(edges clipped at the near plane) with a cross on the front face.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from PIL import Image, ImageDraw

from ros_ncal.geometry import project_lidar, transform_points

from .boxes3d import BOX_EDGES, FRONT_CROSS, box_corners
from .labels import BOX_PALETTE, SEMANTICKITTI_PALETTE
from .sample import Sample

COLOR_MODES = ('depth', 'class', 'intensity')


def colormap_lut(name: str = 'turbo') -> np.ndarray:
    """(256, 3) uint8 lookup table of a matplotlib colormap (imported lazily)."""
    import matplotlib
    cmap = matplotlib.colormaps[name]
    return (cmap(np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def point_colors(sample: Sample, mode: str, depth: np.ndarray, max_depth: float = 60.0,
                 palette: np.ndarray = SEMANTICKITTI_PALETTE) -> np.ndarray:
    """(N, 3) uint8 colours of the sample's points for ``mode`` in COLOR_MODES.

    depth: near = red end of turbo, far = blue; class: palette[point_labels] (ValueError if unlabelled);
    intensity: viridis of intensity scaled to its 99th percentile.
    """
    if mode == 'depth':
        t = np.clip(depth / max_depth, 0, 1)
        return colormap_lut('turbo')[(255 * (1 - t)).astype(np.int64)]
    if mode == 'class':
        if sample.point_labels is None:
            raise ValueError('color=class needs point_labels; this sample has none (use depth or intensity)')
        return palette[np.mod(sample.point_labels, len(palette))]
    if mode == 'intensity':
        inten = sample.points[:, 3].astype(np.float64)
        hi = max(float(np.percentile(inten, 99)) if len(inten) else 1.0, 1e-6)
        return colormap_lut('viridis')[(255 * np.clip(inten / hi, 0, 1)).astype(np.int64)]
    raise ValueError(f'color mode must be one of {COLOR_MODES}, got {mode!r}')


def draw_points(image: np.ndarray, uv: np.ndarray, colors: np.ndarray, depth: np.ndarray, radius: int = 1) -> np.ndarray:
    """Splat (2r+1)^2 squares at uv (N, 2) onto a copy of image (H, W, 3); nearer points drawn last."""
    out = image.copy()
    H, W = out.shape[:2]
    order = np.argsort(-depth)
    u = np.round(uv[order, 0]).astype(np.int64)
    v = np.round(uv[order, 1]).astype(np.int64)
    c = colors[order]
    for du in range(-radius, radius + 1):
        for dv in range(-radius, radius + 1):
            uu, vv = u + du, v + dv
            ok = (uu >= 0) & (uu < W) & (vv >= 0) & (vv < H)
            out[vv[ok], uu[ok]] = c[ok]  # later (nearer) writes win
    return out


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
        color = tuple(int(x) for x in palette[int(labels[m]) % len(palette)])
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
    out = draw_points(sample.image, uv[mask], colors[mask], depth[mask], radius)
    if draw_box_wireframes and sample.boxes is not None and len(sample.boxes):
        out = draw_boxes(out, sample.boxes, sample.box_labels, T, sample.K)
    return out


@dataclass
class DatasetStats:
    """Summary statistics over samples (see ``format``)."""

    samples: int = 0
    points: list[int] = field(default_factory=list)
    in_image_fraction: list[float] = field(default_factory=list)
    image_sizes: Counter = field(default_factory=Counter)
    class_hist: Counter = field(default_factory=Counter)
    box_hist: Counter = field(default_factory=Counter)
    boxes_per_sample: list[int] = field(default_factory=list)
    stamp_dt_ms: list[float] = field(default_factory=list)
    sources: Counter = field(default_factory=Counter)
    frame_ids: Counter = field(default_factory=Counter)

    def add(self, s: Sample) -> None:
        self.samples += 1
        self.points.append(s.num_points)
        _, _, mask = project_lidar(s.points, s.T_cam_lidar, s.K, s.image_hw)
        self.in_image_fraction.append(float(mask.mean()) if len(mask) else 0.0)
        self.image_sizes[f'{s.image_hw[1]}x{s.image_hw[0]}'] += 1
        if s.point_labels is not None:
            self.class_hist.update(dict(zip(*[a.tolist() for a in np.unique(s.point_labels, return_counts=True)])))
        if s.boxes is not None:
            self.boxes_per_sample.append(len(s.boxes))
            self.box_hist.update(s.box_labels.tolist())
        self.stamp_dt_ms.append((s.image_stamp_ns - s.stamp_ns) / 1e6)
        self.sources[str(s.meta.get('source', '?'))] += 1
        self.frame_ids['/'.join(s.frame_ids)] += 1

    def as_dict(self, class_names: Any = None) -> dict:
        def summ(x):
            if not x:
                return None
            a = np.asarray(x, dtype=np.float64)
            return {'min': float(a.min()), 'mean': float(a.mean()), 'max': float(a.max())}

        pnames = (class_names or {}).get('points') if isinstance(class_names, dict) else None
        bnames = (class_names or {}).get('boxes') if isinstance(class_names, dict) else None

        def named(hist, names):
            return {(names[k] if names and 0 <= k < len(names) else str(k)): int(v) for k, v in sorted(hist.items())}

        return {'samples': self.samples, 'points_per_sample': summ(self.points),
                'fraction_of_points_in_image': summ(self.in_image_fraction), 'image_sizes_wxh': dict(self.image_sizes),
                'point_class_histogram': named(self.class_hist, pnames), 'box_class_histogram': named(self.box_hist, bnames),
                'boxes_per_sample': summ(self.boxes_per_sample), 'image_minus_lidar_stamp_ms': summ(self.stamp_dt_ms),
                'sources': dict(self.sources), 'frame_ids': dict(self.frame_ids)}


def dataset_stats(samples: Iterable[Sample]) -> DatasetStats:
    st = DatasetStats()
    for s in samples:
        st.add(s)
    return st


def format_stats(d: dict) -> str:
    """Human-readable lines of DatasetStats.as_dict()."""
    lines = [f"samples: {d['samples']}"]
    for key in ('points_per_sample', 'fraction_of_points_in_image', 'boxes_per_sample', 'image_minus_lidar_stamp_ms'):
        v = d.get(key)
        if v:
            lines.append(f"{key}: min {v['min']:.4g}  mean {v['mean']:.4g}  max {v['max']:.4g}")
    lines.append(f"image sizes (WxH): {d['image_sizes_wxh']}")
    if d['point_class_histogram']:
        total = sum(d['point_class_histogram'].values())
        lines.append('point classes: ' + ', '.join(f'{k} {100 * v / total:.1f}%'
                                                   for k, v in d['point_class_histogram'].items()))
    if d['box_class_histogram']:
        lines.append(f"box classes: {d['box_class_histogram']}")
    lines.append(f"sources: {d['sources']}  frames: {d['frame_ids']}")
    return '\n'.join(lines)
