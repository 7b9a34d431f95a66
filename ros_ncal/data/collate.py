"""Batching Samples of variable point counts and image sizes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .sample import Sample


@dataclass
class Batch:
    """A batch of B samples.

    points: (sum N_i, 4) float32; batch_idx: (sum N_i,) int64 sample index of each point.
    images: (B, 3, H, W) float32 in [0, 1], zero-padded bottom/right to the largest size.
    image_hw: (B, 2) int64 valid (H, W) of each image before padding.
    K, T_cam_lidar: (B, 3, 3), (B, 4, 4) float64.
    point_labels / instance_ids: (sum N_i,) int64 or None when any sample lacks them.
    boxes: list of (M_i, 7) float32 tensors; box_labels: list of (M_i,) int64 (None when absent).
    samples: the source Samples (for metadata).
    """

    points: torch.Tensor
    batch_idx: torch.Tensor
    images: torch.Tensor
    image_hw: torch.Tensor
    K: torch.Tensor
    T_cam_lidar: torch.Tensor
    point_labels: torch.Tensor | None
    instance_ids: torch.Tensor | None
    boxes: list | None
    box_labels: list | None
    samples: list

    def __len__(self) -> int:
        return len(self.samples)

    def to(self, device) -> 'Batch':
        def mv(x):
            if isinstance(x, torch.Tensor):
                return x.to(device, non_blocking=True)
            if isinstance(x, list):
                return [mv(v) for v in x]
            return x
        return Batch(**{k: (mv(v) if k != 'samples' else v) for k, v in self.__dict__.items()})


def collate_samples(samples: list[Sample]) -> Batch:
    """Concatenate clouds with a batch index column; pad images to a common size."""
    if not samples:
        raise ValueError('collate_samples: empty list')
    pts = [torch.from_numpy(s.points) for s in samples]
    batch_idx = torch.cat([torch.full((len(p),), i, dtype=torch.int64) for i, p in enumerate(pts)])
    H = max(s.image.shape[0] for s in samples)
    W = max(s.image.shape[1] for s in samples)
    images = torch.zeros((len(samples), 3, H, W), dtype=torch.float32)
    for i, s in enumerate(samples):
        h, w = s.image.shape[:2]
        images[i, :, :h, :w] = torch.from_numpy(s.image).permute(2, 0, 1).float() / 255.0

    def cat_opt(name):
        vals = [getattr(s, name) for s in samples]
        if any(v is None for v in vals):
            return None
        return torch.from_numpy(np.concatenate(vals)).long()

    has_boxes = all(s.boxes is not None for s in samples)
    return Batch(
        points=torch.cat(pts),
        batch_idx=batch_idx,
        images=images,
        image_hw=torch.tensor([s.image.shape[:2] for s in samples], dtype=torch.int64),
        K=torch.from_numpy(np.stack([s.K for s in samples])),
        T_cam_lidar=torch.from_numpy(np.stack([s.T_cam_lidar for s in samples])),
        point_labels=cat_opt('point_labels'),
        instance_ids=cat_opt('instance_ids'),
        boxes=[torch.from_numpy(s.boxes) for s in samples] if has_boxes else None,
        box_labels=[torch.from_numpy(s.box_labels).long() for s in samples] if has_boxes else None,
        samples=list(samples),
    )
