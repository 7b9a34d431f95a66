"""Look at a dataset: summary statistics (``ncal inspect``). The LiDAR-on-image overlays it saves are drawn by
:mod:`ros_ncal.viz.sample_overlay`."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ros_ncal.geometry import project_lidar

from .sample import Sample


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
