"""Data for downstream fine-tuning: sources, per-scene label fractions, cropping, augmentation.

A ``TaskSample`` is the part of a Sample that the task heads need, as numpy arrays:
points (N, 4) float32 x y z intensity (LiDAR frame), labels (N,) int64 semantic ids (0 = ignore),
instances (N,) int64 (0 = none), boxes (M, 7) float32, box_labels (M,) int64; index and scene ids.

Sources: the synthetic world (``SyntheticWorld(cfg).sample(i)``, train and held-out eval by index range)
or dataset shards (``ShardDataset``, by index). Samples are converted once and kept in memory (the
synthetic ray caster is the slow part; a CPU-sized cloud is a few MB).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np


@dataclass
class DataConfig:
    """Where samples come from and how clouds are reduced for training."""
    source: str = 'synthetic'            # synthetic | shards
    synthetic_config: str | None = None  # YAML for the synthetic world (None: config/synthetic.yaml)
    synthetic_overrides: dict = field(default_factory=dict)  # nested keys overriding that YAML (e.g. lidar beams)
    shards: str | None = None            # dataset directory for source 'shards'
    eval_shards: str | None = None       # optional separate directory for the held-out samples
    train_indices: tuple = (0, 32)       # [start, stop) sample indices used for training
    eval_indices: tuple = (1000, 1008)   # [start, stop) held-out sample indices
    crop_min: tuple = (-32.0, -32.0, -4.0)  # x y z metres, points outside are dropped
    crop_max: tuple = (32.0, 32.0, 4.0)
    max_points: int = 20000              # random subsample per cloud (fixed per sample index); 0 = keep all


@dataclass
class AugmentConfig:
    """Training-time augmentation (the NCLR downstream recipe: z rotation and flip)."""
    rotate_z: bool = True        # uniform yaw in [0, 2 pi)
    flip_y: bool = True          # mirror y -> -y with probability 1/2
    scale: tuple = (0.95, 1.05)  # uniform isotropic scale


@dataclass
class TaskSample:
    points: np.ndarray
    labels: np.ndarray
    instances: np.ndarray
    boxes: np.ndarray
    box_labels: np.ndarray
    index: int
    scene: Any
    camera: tuple | None = None  # (K (3, 3), T_cam_lidar (4, 4), (H, W)) of the source Sample; None after augmentation


def _scene_of(sample, index: int) -> Any:
    meta = getattr(sample, 'meta', None) or {}
    for key in ('scene', 'scene_id', 'sequence', 'drive'):
        if key in meta:
            return meta[key]
    return index


def to_task_sample(sample, index: int, cfg: DataConfig) -> TaskSample:
    """Crop and subsample a Sample (deterministically per index) into a TaskSample."""
    pts = np.asarray(sample.points, np.float32)
    n = len(pts)
    labels = (np.zeros(n, np.int64) if sample.point_labels is None else np.asarray(sample.point_labels, np.int64))
    inst = (np.zeros(n, np.int64) if sample.instance_ids is None else np.asarray(sample.instance_ids, np.int64))
    lo, hi = np.asarray(cfg.crop_min, np.float32), np.asarray(cfg.crop_max, np.float32)
    keep = np.all((pts[:, :3] >= lo) & (pts[:, :3] <= hi), axis=1)
    idx = np.flatnonzero(keep)
    if cfg.max_points and len(idx) > cfg.max_points:
        rng = np.random.default_rng(1_000_003 + int(index))
        idx = np.sort(rng.choice(idx, cfg.max_points, replace=False))
    boxes = np.zeros((0, 7), np.float32) if sample.boxes is None else np.asarray(sample.boxes, np.float32)
    box_labels = (np.zeros(0, np.int64) if sample.box_labels is None else np.asarray(sample.box_labels, np.int64))
    camera = (np.asarray(sample.K), np.asarray(sample.T_cam_lidar), tuple(sample.image.shape[:2]))
    return TaskSample(pts[idx], labels[idx], inst[idx], boxes, box_labels, int(index), _scene_of(sample, index),
                      camera)


def _apply_overrides(obj, overrides: dict, where: str) -> None:
    """Set nested dataclass attributes from a nested dict, in place; unknown keys raise ValueError."""
    for k, v in (overrides or {}).items():
        if not hasattr(obj, k):
            raise ValueError(f'{where}: unknown key {k!r}')
        cur = getattr(obj, k)
        if isinstance(v, dict) and hasattr(cur, '__dataclass_fields__'):
            _apply_overrides(cur, v, f'{where}.{k}')
        else:
            setattr(obj, k, tuple(v) if isinstance(cur, tuple) else type(cur)(v) if cur is not None else v)


def make_sample_source(cfg: DataConfig, split: str) -> Callable[[int], Any]:
    """-> function index -> Sample, for split 'train' or 'eval'."""
    if cfg.source == 'synthetic':
        from ros_ncal.data.synthetic import SyntheticConfig, SyntheticWorld, load_synthetic_config, validate_config
        from ros_ncal.data.synthetic.config import DEFAULT_CONFIG_PATH
        if cfg.synthetic_config or DEFAULT_CONFIG_PATH.is_file():
            world_cfg = load_synthetic_config(cfg.synthetic_config)
        else:
            world_cfg = SyntheticConfig()
        _apply_overrides(world_cfg, cfg.synthetic_overrides, 'data.synthetic_overrides')
        return SyntheticWorld(validate_config(world_cfg)).sample
    if cfg.source == 'shards':
        from ros_ncal.data.shards import ShardDataset
        root = cfg.eval_shards if (split == 'eval' and cfg.eval_shards) else cfg.shards
        if not root:
            raise ValueError("data.source 'shards' needs data.shards (a dataset directory)")
        ds = ShardDataset(root)
        return ds.__getitem__
    raise ValueError(f"data.source must be 'synthetic' or 'shards', got {cfg.source!r}")


def load_task_samples(cfg: DataConfig, split: str, indices: Sequence[int] | None = None,
                      progress: Callable[[str], None] | None = None) -> list[TaskSample]:
    """Generate / read the samples of a split ('train' or 'eval'), or of explicit ``indices``."""
    rng_ = cfg.train_indices if split == 'train' else cfg.eval_indices
    if indices is None:
        if len(rng_) != 2 or rng_[1] <= rng_[0]:
            raise ValueError(f'data.{split}_indices must be [start, stop) with stop > start, got {rng_}')
        indices = range(int(rng_[0]), int(rng_[1]))
    source = make_sample_source(cfg, split)
    out = []
    for k, i in enumerate(indices):
        try:
            sample = source(int(i))
        except IndexError as exc:
            raise ValueError(f'data.{split}_indices: sample {i} does not exist in the {cfg.source} source '
                             f'({exc})') from exc
        out.append(to_task_sample(sample, int(i), cfg))
        if progress is not None:
            progress(f'{split}: sample {k + 1}/{len(indices)} (index {i}, {len(out[-1].points)} points)')
    return out


def select_labelled_scenes(scenes: Sequence[Any], fraction: float, seed: int) -> list:
    """Choose ``max(1, round(fraction * #scenes))`` distinct scenes with a fixed seed; sorted by first appearance.

    The choice depends only on (the list of distinct scenes, fraction, seed): the pretrained and the
    from-scratch run of one protocol see exactly the same labelled scenes.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f'label fraction must be in (0, 1], got {fraction}')
    distinct = list(dict.fromkeys(scenes))
    if not distinct:
        raise ValueError('no scenes to choose labelled ones from')
    n = max(1, int(round(fraction * len(distinct))))
    rng = np.random.default_rng(int(seed))
    chosen = set(rng.choice(len(distinct), size=n, replace=False).tolist())
    return [s for k, s in enumerate(distinct) if k in chosen]


def labelled_subset(samples: list[TaskSample], fraction: float, seed: int) -> list[TaskSample]:
    """The samples whose scene is among the labelled scenes (see select_labelled_scenes)."""
    if fraction >= 1.0:
        return list(samples)
    chosen = set(select_labelled_scenes([s.scene for s in samples], fraction, seed))
    return [s for s in samples if s.scene in chosen]


def augment(s: TaskSample, cfg: AugmentConfig, rng: np.random.Generator) -> TaskSample:
    """Random yaw, y-mirror and scale applied consistently to points, boxes and headings."""
    pts = s.points.copy()
    boxes = s.boxes.astype(np.float32).copy()
    if cfg.flip_y and rng.random() < 0.5:
        pts[:, 1] = -pts[:, 1]
        boxes[:, 1] = -boxes[:, 1]
        boxes[:, 6] = -boxes[:, 6]
    if cfg.rotate_z:
        a = rng.uniform(0.0, 2 * math.pi)
        c, si = math.cos(a), math.sin(a)
        R = np.array([[c, -si], [si, c]], np.float32)
        pts[:, :2] = pts[:, :2] @ R.T
        boxes[:, :2] = boxes[:, :2] @ R.T
        boxes[:, 6] = boxes[:, 6] + a
    lo, hi = cfg.scale
    if hi > lo or lo != 1.0:
        k = np.float32(rng.uniform(lo, hi))
        pts[:, :3] *= k
        boxes[:, :6] *= k
    boxes[:, 6] = (boxes[:, 6] + math.pi) % (2 * math.pi) - math.pi
    return TaskSample(pts, s.labels, s.instances, boxes, s.box_labels, s.index, s.scene)
