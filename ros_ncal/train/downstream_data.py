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
import os
from dataclasses import dataclass, field
from pathlib import Path
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
    rotate_z: bool = True        # uniform yaw in [-rotate_range, rotate_range] (default pi: any yaw)
    rotate_range: float = math.pi
    flip_y: bool = True          # mirror y -> -y with probability 1/2
    scale: tuple = (0.95, 1.05)  # uniform isotropic scale
    beam_dropout: float = 0.0    # probability of dropping beams (elevation rings) of a cloud
    beam_dropout_max: float = 0.5  # then a uniform fraction in [0, this] of the rings is removed
    num_beams: int = 64          # rings the elevation range is divided into (HDL-64E: 64)
    gt_sampling: dict = field(default_factory=dict)  # {class id: max boxes pasted per cloud}; needs a GT database


@dataclass
class RealDataConfig:
    """Real labelled frames for fine-tuning (KITTI object label_2 boxes or SemanticKITTI point labels).

    kind: '' (none: synthetic / shards only) | kitti | semantickitti. root: the KITTI ``training`` split
    folder or a SemanticKITTI ``sequences/XX`` folder ('' = the shared data in ../shared/data).
    train_frames / eval_frames: frame ids (e.g. '000008'); eval frames are never trained on.
    calib_frames: detection only, held-out frames on which the score calibration and the default score
    threshold are fitted after training (a subset of eval_frames is fine: AP does not depend on them).
    weight: probability that a batch element is a real frame; the rest are synthetic scenes of ``data``
    (1.0 = real only). fov_only: KITTI training clouds keep only points in the camera image (label_2
    exists only there; unlabelled cars elsewhere would be taught as background).
    """
    kind: str = ''
    root: str = ''
    train_frames: list = field(default_factory=list)
    eval_frames: list = field(default_factory=list)
    calib_frames: list = field(default_factory=list)
    weight: float = 1.0
    fov_only: bool = True
    max_points: int = 0          # subsample real training clouds (0 = all points inside the crop)
    eval_max_points: int = 0     # real held-out clouds (0 = all, as the nodes see them)


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
    ignore_boxes: np.ndarray | None = None  # (K, 7) labelled objects of other types (KITTI Van, Truck, ...)
    real: bool = False           # a real labelled frame (mixing weights, GT sampling)


SHARED_DATA = Path(__file__).resolve().parents[2].parent / 'shared' / 'data'


def shared_data_dir() -> Path:
    """../shared/data beside the checkout, or $NCAL_SHARED_DATA."""
    return Path(os.environ.get('NCAL_SHARED_DATA', SHARED_DATA))


def default_real_root(kind: str) -> Path:
    if kind == 'kitti':
        return shared_data_dir() / 'kitti_object' / 'training'
    if kind == 'semantickitti':
        return shared_data_dir() / 'semantickitti' / 'sequences' / '00'
    raise ValueError(f"real.kind must be '', 'kitti' or 'semantickitti', got {kind!r}")


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


def augment(s: TaskSample, cfg: AugmentConfig, rng: np.random.Generator,
            gt_database: 'GTDatabase | None' = None) -> TaskSample:
    """Ground-truth box sampling (real frames, when a database is given), beam dropout, then random
    yaw, y-mirror and scale applied consistently to points, boxes and headings."""
    if gt_database is not None and cfg.gt_sampling and s.real:
        s = gt_database.paste(s, cfg.gt_sampling, rng)
    if cfg.beam_dropout > 0 and rng.random() < cfg.beam_dropout:
        s = beam_dropout(s, rng.uniform(0.0, cfg.beam_dropout_max), cfg.num_beams, rng)
    pts = s.points.copy()
    boxes = s.boxes.astype(np.float32).copy()
    if cfg.flip_y and rng.random() < 0.5:
        pts[:, 1] = -pts[:, 1]
        boxes[:, 1] = -boxes[:, 1]
        boxes[:, 6] = -boxes[:, 6]
    if cfg.rotate_z:
        a = rng.uniform(-cfg.rotate_range, cfg.rotate_range)
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
    return TaskSample(pts, s.labels, s.instances, boxes, s.box_labels, s.index, s.scene, real=s.real)


def beam_index(points: np.ndarray, num_beams: int = 64) -> np.ndarray:
    """(N,) ring index 0..num_beams-1 from the elevation angle, the range [min, max] of the cloud split evenly.

    Real scans carry no ring field here; on an HDL-64E the rings are about 0.4 deg apart, so equal
    elevation bins over the cloud's own range approximate them."""
    p = np.asarray(points, np.float64)
    elev = np.arctan2(p[:, 2], np.hypot(p[:, 0], p[:, 1]))
    lo, hi = float(elev.min(initial=0.0)), float(elev.max(initial=0.0))
    return np.clip(((elev - lo) / max(hi - lo, 1e-9) * num_beams).astype(np.int64), 0, num_beams - 1)


def beam_dropout(s: TaskSample, fraction: float, num_beams: int, rng: np.random.Generator) -> TaskSample:
    """Drop ``fraction`` of the rings (all their points): a sparser sensor. Boxes are kept as they are."""
    if len(s.points) == 0 or fraction <= 0:
        return s
    ring = beam_index(s.points, num_beams)
    drop = rng.random(num_beams) < fraction
    keep = ~drop[ring]
    if keep.sum() < 2:
        return s
    return TaskSample(s.points[keep], s.labels[keep], s.instances[keep], s.boxes, s.box_labels, s.index, s.scene,
                      s.camera, s.ignore_boxes, s.real)


class GTDatabase:
    """Objects (box, class, the points inside) cut from the real training frames, pasted into other frames.

    ``paste`` adds up to ``max_per_class[c]`` objects of class c from *other* frames at their recorded
    position (so range, density and occlusion stay realistic), skipping any whose BEV box overlaps a box
    (or ignore box) already in the scene; the scene's points inside a pasted box are removed first, so each
    box holds exactly its object's points (test: test_finetune.py).
    """

    def __init__(self, samples: Sequence[TaskSample], min_points: int = 5, margin: float = 0.1):
        from ros_ncal.eval.box_geometry import points_in_boxes
        self.items: list[tuple[Any, np.ndarray, int, np.ndarray]] = []   # (scene, box (7,), class, points (k, 4))
        for s in samples:
            if len(s.boxes) == 0:
                continue
            inside = points_in_boxes(s.points, s.boxes, margin)
            for m in range(len(s.boxes)):
                if inside[m].sum() >= min_points:
                    self.items.append((s.scene, s.boxes[m].astype(np.float32), int(s.box_labels[m]),
                                       s.points[inside[m]].copy()))

    def __len__(self) -> int:
        return len(self.items)

    def counts(self) -> dict:
        out: dict = {}
        for _, _, c, _ in self.items:
            out[c] = out.get(c, 0) + 1
        return out

    def paste(self, s: TaskSample, max_per_class: dict, rng: np.random.Generator) -> TaskSample:
        from ros_ncal.eval.box_geometry import bev_iou, points_in_boxes
        boxes, labels = [s.boxes.astype(np.float32)], [s.box_labels]
        occupied = [b for b in (s.boxes, s.ignore_boxes) if b is not None and len(b)]
        occ = np.concatenate(occupied).astype(np.float64) if occupied else np.zeros((0, 7))
        new_boxes, new_pts, new_labels = [], [], []
        for c, n_max in max_per_class.items():
            cands = [k for k, it in enumerate(self.items) if it[2] == int(c) and it[0] != s.scene]
            if not cands or int(n_max) <= 0:
                continue
            for k in rng.permutation(cands)[:int(n_max)]:
                _, box, cls, pts = self.items[k]
                if len(occ) and bev_iou(box[None], occ).max() > 0:
                    continue
                occ = np.concatenate([occ, box[None].astype(np.float64)])
                new_boxes.append(box)
                new_pts.append(pts)
                new_labels.append(cls)
        if not new_boxes:
            return s
        nb = np.stack(new_boxes)
        # remove the scene's points inside the pasted boxes (ground under the object, background behind it)
        inside = points_in_boxes(s.points, nb, 0.1).any(axis=0)
        keep = ~inside
        pts = np.concatenate([s.points[keep]] + new_pts).astype(np.float32)
        n_new = sum(len(p) for p in new_pts)
        lab = np.concatenate([s.labels[keep], np.zeros(n_new, s.labels.dtype)])
        ins = np.concatenate([s.instances[keep], np.zeros(n_new, s.instances.dtype)])
        boxes.append(nb)
        labels.append(np.asarray(new_labels, s.box_labels.dtype))
        return TaskSample(pts, lab, ins, np.concatenate(boxes), np.concatenate(labels), s.index, s.scene, s.camera,
                          s.ignore_boxes, s.real)


KITTI_IGNORE_TYPES = ('Van', 'Truck', 'Tram', 'Misc', 'Person_sitting')


def kitti_ignore_boxes(split_dir: str | Path, frame: str) -> np.ndarray:
    """(K, 7) LiDAR-frame boxes of the label_2 objects that are neither car, pedestrian nor cyclist but
    have a 3D box (KITTI_IGNORE_TYPES): a detection there is neither a true nor a false positive."""
    from ros_ncal.data.kitti_files import read_kitti_calib, read_kitti_labels
    from ros_ncal.data.readers.kitti import kitti_boxes_from_labels
    d = Path(split_dir)
    boxes, _, _ = kitti_boxes_from_labels(read_kitti_labels(d / 'label_2' / f'{frame}.txt'),
                                          read_kitti_calib(d / 'calib' / f'{frame}.txt'),
                                          {t: 0 for t in KITTI_IGNORE_TYPES})
    return boxes


def load_real_samples(cfg: 'RealDataConfig', data: DataConfig, split: str,
                      progress: Callable[[str], None] | None = None) -> list[TaskSample]:
    """Real labelled frames of a split ('train': train_frames, 'eval': eval_frames, 'calib': calib_frames).

    KITTI: boxes from label_2 (car / pedestrian / cyclist; other 3D-labelled types as ignore_boxes), the
    camera kept for field-of-view evaluation; training clouds cropped to the camera view when fov_only.
    SemanticKITTI: per-point labels (training ids) and instance ids. Clouds are cropped to data.crop_*.
    """
    frames = {'train': cfg.train_frames, 'eval': cfg.eval_frames, 'calib': cfg.calib_frames}[split]
    root = Path(cfg.root) if cfg.root else default_real_root(cfg.kind)
    lo, hi = np.asarray(data.crop_min, np.float32), np.asarray(data.crop_max, np.float32)
    max_points = cfg.max_points if split == 'train' else cfg.eval_max_points
    out = []
    for frame in frames:
        frame = str(frame).zfill(6)
        if cfg.kind == 'kitti':
            from ros_ncal.data.readers.kitti import read_kitti_frame
            from ros_ncal.geometry import project_lidar
            smp = read_kitti_frame(root, frame)
            pts = np.asarray(smp.points, np.float32)
            keep = np.all((pts[:, :3] >= lo) & (pts[:, :3] <= hi), axis=1)
            camera = (np.asarray(smp.K), np.asarray(smp.T_cam_lidar), tuple(smp.image.shape[:2]))
            if split == 'train' and cfg.fov_only:
                keep &= project_lidar(pts[:, :3].astype(np.float64), camera[1], camera[0], camera[2])[2]
            ign = kitti_ignore_boxes(root, frame)
            n = int(keep.sum())
            ts = TaskSample(pts[keep], np.zeros(n, np.int64), np.zeros(n, np.int64),
                            np.asarray(smp.boxes, np.float32).reshape(-1, 7), np.asarray(smp.box_labels, np.int64),
                            int(frame), f'kitti/{frame}', camera, ign, True)
        elif cfg.kind == 'semantickitti':
            from ros_ncal.data.readers.semantickitti import read_semantickitti_scan
            pts, lab, ins = read_semantickitti_scan(root / 'velodyne' / f'{frame}.bin', root / 'labels' / f'{frame}.label')
            keep = np.isfinite(pts).all(axis=1) & np.all((pts[:, :3] >= lo) & (pts[:, :3] <= hi), axis=1)
            ts = TaskSample(pts[keep].astype(np.float32), lab[keep].astype(np.int64), ins[keep].astype(np.int64),
                            np.zeros((0, 7), np.float32), np.zeros(0, np.int64), int(frame),
                            f'semantickitti/{root.name}/{frame}', None, None, True)
        else:
            raise ValueError(f"real.kind must be 'kitti' or 'semantickitti' to load real frames, got {cfg.kind!r}")
        if max_points and len(ts.points) > max_points:
            idx = np.sort(np.random.default_rng(1_000_003 + ts.index).choice(len(ts.points), max_points, replace=False))
            ts = TaskSample(ts.points[idx], ts.labels[idx], ts.instances[idx], ts.boxes, ts.box_labels, ts.index,
                            ts.scene, ts.camera, ts.ignore_boxes, True)
        out.append(ts)
        if progress is not None:
            progress(f'real {split}: {ts.scene} ({len(ts.points)} points, {len(ts.boxes)} boxes)')
    return out
