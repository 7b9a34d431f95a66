"""Turning PretextItems into network tensors."""
from __future__ import annotations

import numpy as np
import torch

from .pretext import PretextItem


def items_to_batch(items: list[PretextItem], device: torch.device | str = 'cpu') -> dict:
    """-> dict: 'points' list of (Ni, 4) float32, 'images' (B, 3, H, W) float in [0, 1] (all items share
    the network image size), 'uv_gt' list (Ni, 2), 'overlap_gt' list (Ni,) bool, 'K' (B, 3, 3) float64,
    'T_gt' (B, 4, 4) float64, 'T_in_lidar' (B, 4, 4) float64."""
    shapes = {it.image.shape for it in items}
    if len(shapes) != 1:
        raise ValueError(f'all items must share the network image size, got {shapes}')
    dev = torch.device(device)
    images = torch.from_numpy(np.stack([it.image for it in items])).permute(0, 3, 1, 2).float().div(255.0)
    return {
        'points': [torch.from_numpy(it.points).to(dev) for it in items],
        'images': images.to(dev),
        'uv_gt': [torch.from_numpy(np.nan_to_num(it.uv_gt, nan=-1e4)).to(dev) for it in items],
        'overlap_gt': [torch.from_numpy(it.overlap_gt).to(dev) for it in items],
        'K': torch.from_numpy(np.stack([it.K for it in items])).to(dev),
        'T_gt': torch.from_numpy(np.stack([it.T_cam_in for it in items])).to(dev),
        'T_in_lidar': torch.from_numpy(np.stack([it.T_in_lidar for it in items])).to(dev),
    }
