"""Panoptic head: semantic classes + per-point offsets to the instance centre, clustered for thing classes.

Training: class-balanced CE on the semantic logits (as SegHead) + L1 between the predicted offset and
(instance centre - point) on labelled thing points with an instance id; the centre of an instance is the
mean of its points.
Inference: points predicted as a thing class are shifted by their offsets; the shifted points of each
thing class are clustered greedily (densest unassigned point first, every unassigned point within
``cluster_radius`` of it joins its cluster); clusters smaller than ``min_cluster_points`` get instance 0.
Stuff points get instance 0. Instance ids are unique per frame across classes, starting at 1.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F
from scipy.spatial import cKDTree

from .seg_head import SegHead, seg_loss

SEMANTICKITTI_THING_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8)


class PanopticHead(nn.Module):
    """feats (N, in_dim) -> {'sem_logits': (N, C), 'offsets': (N, 3)}."""

    def __init__(self, in_dim: int, num_classes: int = 20, thing_classes=SEMANTICKITTI_THING_CLASSES,
                 hidden: int = 64, ignore_index: int = 0, offset_weight: float = 1.0,
                 cluster_radius: float = 0.8, min_cluster_points: int = 5):
        super().__init__()
        self.semantic = SegHead(in_dim, num_classes, hidden=0, ignore_index=ignore_index)
        self.offset = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                    nn.Linear(hidden, 3))
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.thing_classes = tuple(int(c) for c in thing_classes)
        is_thing = torch.zeros(num_classes, dtype=torch.bool)
        is_thing[list(self.thing_classes)] = True
        self.register_buffer('is_thing', is_thing, persistent=False)
        self.offset_weight = float(offset_weight)
        self.cluster_radius = float(cluster_radius)
        self.min_cluster_points = int(min_cluster_points)

    def forward(self, feats: torch.Tensor) -> dict:
        return {'sem_logits': self.semantic(feats), 'offsets': self.offset(feats)}

    def loss(self, out: dict, xyz: torch.Tensor, labels: torch.Tensor, instance_ids: torch.Tensor,
             batch_idx: torch.Tensor, class_weights: torch.Tensor | None = None) -> dict:
        """xyz (N, 3), labels (N,), instance_ids (N,), batch_idx (N,) -> {'loss', 'semantic', 'offset'}."""
        sem = seg_loss(out['sem_logits'], labels, class_weights, self.ignore_index)
        target, valid = instance_offset_targets(xyz, labels.long(), instance_ids.long(), batch_idx.long(),
                                                self.is_thing)
        if bool(valid.any()):
            off = F.l1_loss(out['offsets'][valid], target[valid], reduction='mean')
        else:
            off = out['offsets'].sum() * 0.0
        return {'loss': sem + self.offset_weight * off, 'semantic': sem.detach(), 'offset': off.detach()}

    @torch.no_grad()
    def predict(self, out: dict, xyz: torch.Tensor) -> tuple:
        """One frame: -> (sem (N,) int64 np, instance ids (N,) int64 np)."""
        sem = self.semantic.predict(out['sem_logits']).cpu().numpy()
        shifted = (xyz[:, :3] + out['offsets']).detach().cpu().numpy()
        inst = cluster_instances(shifted, sem, self.thing_classes, self.cluster_radius, self.min_cluster_points)
        return sem, inst


def instance_offset_targets(xyz, labels, instance_ids, batch_idx, is_thing):
    """-> (N, 3) offset from each point to its instance's mean, (N,) bool valid (thing, instance > 0)."""
    valid = is_thing.to(labels.device)[labels] & (instance_ids > 0)
    target = torch.zeros_like(xyz[:, :3])
    if not bool(valid.any()):
        return target, valid
    key = (batch_idx[valid] << 32) | instance_ids[valid]
    uniq, inv = torch.unique(key, return_inverse=True)
    sums = xyz.new_zeros(len(uniq), 3).index_add_(0, inv, xyz[valid, :3])
    counts = xyz.new_zeros(len(uniq)).index_add_(0, inv, xyz.new_ones(inv.shape[0]))
    centres = sums / counts[:, None]
    target[valid] = centres[inv] - xyz[valid, :3]
    return target, valid


def cluster_instances(shifted: np.ndarray, sem: np.ndarray, thing_classes, radius: float,
                      min_points: int = 1) -> np.ndarray:
    """Greedy density-seeded radius clustering of shifted thing points, per class.

    shifted: (N, 3) points moved by their predicted centre offsets; sem: (N,) predicted classes.
    Returns (N,) int64 instance ids: 0 for stuff and for clusters below ``min_points``, else 1, 2, ...
    """
    if radius <= 0:
        raise ValueError(f'cluster radius must be positive, got {radius}')
    inst = np.zeros(len(sem), np.int64)
    next_id = 1
    for c in thing_classes:
        idx = np.where(sem == c)[0]
        if len(idx) == 0:
            continue
        pts = shifted[idx]
        tree = cKDTree(pts)
        neigh = tree.query_ball_point(pts, r=radius)
        density = np.array([len(n) for n in neigh])
        assigned = np.zeros(len(idx), bool)
        for seed in np.argsort(-density, kind='stable'):
            if assigned[seed]:
                continue
            members = [m for m in neigh[seed] if not assigned[m]]
            assigned[members] = True
            if len(members) >= min_points:
                inst[idx[members]] = next_id
                next_id += 1
    return inst
