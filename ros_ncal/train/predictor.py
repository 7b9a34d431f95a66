"""Inference with a fine-tuned downstream model: one cloud in, labels / boxes / instances out.

The library call behind the segmenter and detector nodes (no ROS here):

    p = DownstreamPredictor.from_checkpoint('runs/finetune/seg_10pct_pretrained_s0.pt')
    out = p.predict(points)          # points (N, 4) float32 x y z intensity, LiDAR frame
    out.labels                       # seg / panoptic: (N,) int64 class ids 1..19 (0 for points not processed)
    out.instances                    # panoptic: (N,) int64, 0 = stuff / none
    out.boxes, out.scores, out.box_labels  # det: (D, 7) float32, (D,), (D,) int64 (0 car, 1 pedestrian, 2 cyclist)

Points outside ``max_range`` (metres, horizontal; 0 = no limit) or non-finite are not processed and get
label 0; with ``max_points`` > 0 a larger cloud is randomly subsampled for the network (fixed seed) and
each point left out takes the label (and instance) of the nearest processed point (KD-tree).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


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
    """A fine-tuned TaskModel in eval mode plus its task adapter; thread-compatible (one call at a time)."""

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
        from .finetune import load_finetuned, resolve_device
        model, task, payload = load_finetuned(path, map_location='cpu')
        names = getattr(task, 'class_names', None) or getattr(getattr(task, 'cfg', None), 'class_names', None)
        p = cls(model, task, resolve_device(device), max_range, max_points, names)
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
