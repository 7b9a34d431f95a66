"""Point cloud -> sparse voxel tensor (and voxel features back to points)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from .tensor import COORD_LIMIT, KernelMapCache, SparseTensor, pack_keys, unpack_keys

POOLING_MODES = ('mean', 'first')


def voxelize(points: torch.Tensor, batch_idx: torch.Tensor, voxel_size: float, pooling: str = 'mean',
             features: Optional[torch.Tensor] = None, batch_size: Optional[int] = None
             ) -> Tuple[SparseTensor, torch.Tensor]:
    """Quantize points onto a voxel grid and pool their features per voxel.

    points: (N, C>=3) float, columns 0..2 are x, y, z in metres.
    batch_idx: (N,) long, sample index of each point.
    voxel_size: edge length in metres (> 0).
    pooling: 'mean' (average of the voxel's points) or 'first' (the lowest-index point of the voxel).
    features: optional (N, F) per-point features to pool; defaults to ``points`` itself.
    Returns (SparseTensor with coords (V, 4) int64 [b, x, y, z] at stride 1 sorted by key and
    feats (V, F)), point2voxel (N,) long so that ``voxel_feats[point2voxel]`` scatters back to points.
    """
    if not isinstance(points, torch.Tensor) or not isinstance(batch_idx, torch.Tensor):
        raise TypeError('points and batch_idx must be torch tensors')
    if points.dim() != 2 or points.shape[1] < 3:
        raise ValueError(f'points must have shape (N, C>=3) with x, y, z first, got {tuple(points.shape)}')
    if points.shape[0] == 0:
        raise ValueError('cannot voxelize an empty point cloud (zero points gives zero voxels)')
    if batch_idx.shape != (points.shape[0],):
        raise ValueError(f'batch_idx must have shape ({points.shape[0]},), got {tuple(batch_idx.shape)}')
    if not float(voxel_size) > 0:
        raise ValueError(f'voxel_size must be positive, got {voxel_size}')
    if pooling not in POOLING_MODES:
        raise ValueError(f'pooling must be one of {POOLING_MODES}, got {pooling!r}')
    feats = points if features is None else features
    if feats.dim() != 2 or feats.shape[0] != points.shape[0]:
        raise ValueError(f'features must have shape ({points.shape[0]}, F), got {tuple(feats.shape)}')
    with torch.no_grad():
        xyz = points[:, :3]
        if not bool(torch.isfinite(xyz).all()):
            raise ValueError('points contain non-finite coordinates (NaN or inf)')
        grid = torch.floor(xyz.double() / float(voxel_size))
        if grid.numel() and float(grid.abs().max()) >= COORD_LIMIT:
            raise ValueError(f'voxel coordinates reach {int(grid.abs().max())} (limit {COORD_LIMIT}); '
                             'increase voxel_size or crop the cloud')
        coords = torch.cat([batch_idx.to(torch.int64)[:, None], grid.to(torch.int64)], dim=1)
        if int(coords[:, 0].min()) < 0:
            raise ValueError('batch_idx must be non-negative')
        keys = pack_keys(coords)
        unique_keys, point2voxel, counts = torch.unique(keys, sorted=True, return_inverse=True,
                                                        return_counts=True)
        voxel_coords = unpack_keys(unique_keys)
    n_vox = unique_keys.shape[0]
    if pooling == 'mean':
        summed = torch.zeros(n_vox, feats.shape[1], dtype=feats.dtype, device=feats.device)
        summed = summed.index_add(0, point2voxel, feats)
        voxel_feats = summed / counts.to(feats.dtype)[:, None]
    else:
        idx = torch.arange(points.shape[0], device=points.device)
        first = torch.full((n_vox,), points.shape[0], dtype=torch.long, device=points.device)
        first = first.scatter_reduce(0, point2voxel, idx, reduce='amin', include_self=True)
        voxel_feats = feats[first]
    st = SparseTensor(voxel_coords, voxel_feats, stride=1, cache=KernelMapCache(), batch_size=batch_size,
                      check=False)
    return st, point2voxel


def devoxelize(voxel_feats: torch.Tensor, point2voxel: torch.Tensor) -> torch.Tensor:
    """voxel_feats: (V, C), point2voxel: (N,) long -> per-point feats (N, C) (differentiable gather)."""
    return voxel_feats[point2voxel]


def batch_points(points_list: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """List of (Ni, C) clouds -> concatenated points (N, C) and batch_idx (N,) long (empty clouds allowed)."""
    if len(points_list) == 0:
        raise ValueError('points_list is empty: need at least one point cloud')
    cols = {int(p.shape[1]) for p in points_list}
    if len(cols) != 1:
        raise ValueError(f'all clouds must have the same number of columns, got {sorted(cols)}')
    device = points_list[0].device
    batch_idx = torch.cat([torch.full((p.shape[0],), i, dtype=torch.long, device=device)
                           for i, p in enumerate(points_list)])
    return torch.cat(list(points_list), dim=0), batch_idx
