"""Inference with a fine-tuned downstream model: one cloud in, labels / boxes / instances out.

The library call behind the segmenter and detector nodes (no ROS, no training code here):

    p = DownstreamPredictor.from_checkpoint('runs/finetune/seg_10pct_pretrained_s0.pt')
    out = p.predict(points)          # points (N, 4) float32 x y z intensity, LiDAR frame
    out.labels                       # seg / panoptic: (N,) int64 class ids 1..19 (0 for points not processed)
    out.instances                    # panoptic: (N,) int64, 0 = stuff / none
    out.boxes, out.scores, out.box_labels  # det: (D, 7) float32, (D,), (D,) int64 (0 car, 1 pedestrian, 2 cyclist)

Points outside ``max_range`` (metres, horizontal; 0 = no limit) or non-finite are not processed and get
label 0; with ``max_points`` > 0 a larger cloud is randomly subsampled for the network (fixed seed) and
each point left out takes the label (and instance) of the nearest processed point (KD-tree).

Also here, because both training and inference need them: :class:`TaskModel` (backbone + head), the
checkpoint type of a fine-tuned model and :func:`load_task_model` that rebuilds one from its checkpoint.
Training (``ros_ncal.train.finetune``) writes these checkpoints and re-exports the names.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

FINETUNED_MODEL_TYPE = 'ros_ncal.finetuned'
TASKS = ('seg', 'det', 'panoptic')
# head-config keys read only by the training / evaluation adapters (ros_ncal.train.downstream_tasks)
EVAL_ONLY_HEAD_KEYS = {'seg': (), 'det': ('iou_thresholds', 'eval_region', 'eval_score_threshold'),
                       'panoptic': ('eval_min_points',)}


class TaskModel(nn.Module):
    """backbone (list of (Ni, C) clouds -> list of (Ni, D) feats) + task head.

    ``freeze_backbone``: linear probing; the backbone gets no gradients and stays in eval mode (BN
    statistics frozen) even when the model is put in train mode.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, task: str, freeze_backbone: bool = False):
        super().__init__()
        self.backbone, self.head, self.task = backbone, head, task
        self.freeze_backbone = bool(freeze_backbone)
        if self.freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> 'TaskModel':
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def features(self, points_list: list) -> list:
        if self.freeze_backbone:
            with torch.no_grad():
                return self.backbone(points_list)
        return self.backbone(points_list)


def backbone_out_dim(backbone) -> int:
    dim = getattr(backbone, 'out_dim', None)
    if dim is None:
        raise ValueError(f'backbone {type(backbone).__name__} has no out_dim attribute')
    return int(dim)


def resolve_device(name: str) -> torch.device:
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    return torch.device(name)


@dataclass(frozen=True)
class TaskInfo:
    """What inference needs to know about a task: its name ('seg', 'det', 'panoptic') and class names."""
    name: str
    class_names: tuple = ()


def build_task_head(task: str, head_cfg: dict | None, in_dim: int) -> tuple[nn.Module, TaskInfo]:
    """The head a fine-tuned checkpoint's config describes -> (head module, TaskInfo).

    Same construction as the training adapters' ``build_head`` (ros_ncal.train.downstream_tasks), without
    the evaluation-only keys.
    """
    from ros_ncal.data.labels import SEMANTICKITTI_CLASSES
    if task not in TASKS:
        raise ValueError(f'unknown task {task!r}; expected one of {TASKS}')
    cfg = {k: v for k, v in dict(head_cfg or {}).items() if k not in EVAL_ONLY_HEAD_KEYS[task]}
    if task == 'det':
        from .heads.bev_det_head import BEVDetConfig, BEVDetHead
        det_cfg = BEVDetConfig.from_dict(cfg)
        return BEVDetHead(in_dim, det_cfg), TaskInfo(task, tuple(det_cfg.class_names))
    num_classes = int(cfg.pop('num_classes', 20))
    names = tuple(SEMANTICKITTI_CLASSES[:num_classes])
    if task == 'seg':
        from .heads.seg_head import SegHead
        return SegHead(in_dim, num_classes, **cfg), TaskInfo(task, names)
    from .heads.panoptic_head import PanopticHead
    return PanopticHead(in_dim, num_classes, **cfg), TaskInfo(task, names)


def load_task_model(path: str | Path, map_location: str | torch.device = 'cpu') -> tuple[TaskModel, TaskInfo, dict]:
    """Rebuild a fine-tuned model from its checkpoint -> (TaskModel in eval mode, TaskInfo, payload)."""
    from .checkpoint import CheckpointError, load_checkpoint
    from .registry import build_model
    payload = load_checkpoint(path, map_location)
    mcfg = payload.get('config') or {}
    if mcfg.get('type') != FINETUNED_MODEL_TYPE:
        raise CheckpointError(f'{path} is not a fine-tuned task model (config type {mcfg.get("type")!r})')
    backbone = build_model(mcfg['backbone'])
    head, info = build_task_head(mcfg['task'], mcfg.get('head'), backbone_out_dim(backbone))
    model = TaskModel(backbone, head, mcfg['task'])
    model.load_state_dict(payload['model_state'])
    return model.to(map_location).eval(), info, payload


@dataclass
class Prediction:
    task: str
    labels: np.ndarray | None = None      # (N,) int64
    instances: np.ndarray | None = None   # (N,) int64
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 7), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    box_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    num_processed: int = 0
    seconds: float = 0.0


class DownstreamPredictor:
    """A fine-tuned TaskModel in eval mode plus its task (anything with ``.name``); thread-compatible (one
    call at a time)."""

    def __init__(self, model, task, device='cpu', max_range: float = 0.0, max_points: int = 0,
                 class_names=None):
        self.model, self.task = model.eval(), task
        self.device = torch.device(device)
        self.model.to(self.device)
        self.max_range, self.max_points = float(max_range), int(max_points)
        self.class_names = class_names
        self.payload: dict | None = None   # the checkpoint payload (config, metrics) when built from a file

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = 'auto', max_range: float = 0.0,
                        max_points: int = 0) -> 'DownstreamPredictor':
        model, info, payload = load_task_model(path, map_location='cpu')
        names = info.class_names if info.name == 'det' else list(info.class_names)   # as the training adapters
        p = cls(model, info, resolve_device(device), max_range, max_points, names or None)
        p.payload = {k: v for k, v in payload.items() if k != 'model_state'}
        return p

    @property
    def task_name(self) -> str:
        return self.task.name

    @torch.no_grad()
    def predict(self, points: np.ndarray) -> Prediction:
        """points: (N, 4) float32 [x, y, z, intensity] (N may be 0) -> Prediction."""
        t0 = time.perf_counter()
        pts = np.asarray(points, np.float32)
        if pts.ndim != 2 or pts.shape[1] < 4:
            raise ValueError(f'points: expected (N, 4) x y z intensity, got {pts.shape}')
        n = len(pts)
        keep = np.isfinite(pts[:, :4]).all(axis=1)
        if self.max_range > 0:
            keep &= np.hypot(pts[:, 0], pts[:, 1]) <= self.max_range
        idx = np.flatnonzero(keep)
        if self.max_points > 0 and len(idx) > self.max_points:
            idx = np.sort(np.random.default_rng(0).choice(idx, self.max_points, replace=False))
        out = Prediction(self.task.name, num_processed=int(len(idx)))
        if self.task.name in ('seg', 'panoptic'):
            out.labels = np.zeros(n, np.int64)
            if self.task.name == 'panoptic':
                out.instances = np.zeros(n, np.int64)
        if len(idx) < 2:  # nothing a network can use
            out.seconds = time.perf_counter() - t0
            return out
        sub = torch.from_numpy(np.ascontiguousarray(pts[idx, :4])).to(self.device)
        feats = self.model.features([sub])[0]
        head = self.model.head
        if self.task.name == 'seg':
            lab = head.predict(head(feats)).cpu().numpy()
            out.labels = self._spread(pts, keep, idx, lab)
        elif self.task.name == 'panoptic':
            sem, inst = head.predict(head(feats), sub[:, :3])
            out.labels = self._spread(pts, keep, idx, sem)
            out.instances = self._spread(pts, keep, idx, inst)
        else:
            bidx = torch.zeros(len(idx), dtype=torch.long, device=self.device)
            det = head.decode(head(sub[:, :3], feats, bidx, 1), sub[:, :3], bidx)[0]
            out.boxes, out.scores, out.box_labels = det['boxes'], det['scores'], det['labels']
        out.seconds = time.perf_counter() - t0
        return out

    @staticmethod
    def _spread(pts: np.ndarray, keep: np.ndarray, idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Values of processed points -> all N points (kept but unprocessed: nearest processed point)."""
        full = np.zeros(len(pts), np.int64)
        full[idx] = values
        rest = np.setdiff1d(np.flatnonzero(keep), idx, assume_unique=True)
        if len(rest):
            from scipy.spatial import cKDTree
            _, nn = cKDTree(pts[idx, :3]).query(pts[rest, :3])
            full[rest] = values[nn]
        return full
