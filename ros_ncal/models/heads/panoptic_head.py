"""Panoptic head: semantic classes + per-point offsets to the instance centre, clustered for thing classes.

Training: class-balanced CE on the semantic logits (as SegHead) + L1 between the predicted offset and
(instance centre - point) on labelled thing points with an instance id; the centre of an instance is the
mean of its points.
Inference: points predicted as a thing class are shifted by their offsets; the shifted points of each
thing class are clustered by connected components of occupied grid cells of side ``cluster_radius``
(see cluster_instances); clusters smaller than ``min_cluster_points`` get instance 0.
Stuff points get instance 0. Instance ids are unique per frame across classes, starting at 1.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .seg_head import SegHead, seg_loss

SEMANTICKITTI_THING_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8)


class PanopticHead(nn.Module):
    """feats (N, in_dim) -> {'sem_logits': (N, C), 'offsets': (N, 3)}."""

    def __init__(self, in_dim: int, num_classes: int = 20, thing_classes=SEMANTICKITTI_THING_CLASSES,
                 hidden: int = 64, ignore_index: int = 0, offset_weight: float = 1.0,
                 cluster_radius: float = 0.5, min_cluster_points: int = 5):
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
    """Grid connected components of shifted thing points, per class.

    shifted: (N, 3) points moved by their predicted centre offsets; sem: (N,) predicted classes.
    The shifted points of one class are binned into cubic cells of side ``radius``; occupied cells that
    touch (26-neighbourhood) form one instance. Points of one object collapse near its centre, so two
    objects stay apart when their predicted centres are more than about 2 x radius apart. Linear in N
    (sort + searchsorted over the 27 neighbour offsets, scipy connected components), unlike greedy or
    mean-shift clustering, whose cost explodes when an untrained head collapses many points together.
    Returns (N,) int64 instance ids: 0 for stuff and for clusters below ``min_points``, else 1, 2, ...
    """
    if radius <= 0:
        raise ValueError(f'cluster radius must be positive, got {radius}')
    if len(shifted) != len(sem):
        raise ValueError(f'{len(shifted)} shifted points but {len(sem)} semantic labels')
    inst = np.zeros(len(sem), np.int64)
    next_id = 1
    offsets = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], np.int64)
    for c in thing_classes:
        idx = np.flatnonzero(sem == c)
        if len(idx) == 0:
            continue
        cells = np.floor(shifted[idx] / radius).astype(np.int64)
        cells -= cells.min(0) - 1
        dims = cells.max(0) + 2
        keys = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
        ukeys, point_cell = np.unique(keys, return_inverse=True)
        ucells = np.stack([ukeys // (dims[1] * dims[2]), (ukeys // dims[2]) % dims[1], ukeys % dims[2]], 1)
        rows, cols = [], []
        for off in offsets:
            nb = ucells + off
            nkeys = (nb[:, 0] * dims[1] + nb[:, 1]) * dims[2] + nb[:, 2]
            pos = np.searchsorted(ukeys, nkeys)
            pos = np.minimum(pos, len(ukeys) - 1)
            hit = ukeys[pos] == nkeys
            rows.append(np.flatnonzero(hit))
            cols.append(pos[hit])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(len(ukeys), len(ukeys)))
        _, comp = connected_components(graph, directed=False)
        point_comp = comp[point_cell]
        sizes = np.bincount(point_comp)
        keep = sizes >= max(min_points, 1)
        new_ids = np.zeros(len(sizes), np.int64)
        new_ids[keep] = np.arange(next_id, next_id + int(keep.sum()))
        inst[idx] = new_ids[point_comp]
        next_id += int(keep.sum())
    return inst
