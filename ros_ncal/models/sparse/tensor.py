"""Sparse voxel tensor: integer coordinates, features, tensor stride and a shared kernel-map cache.

Coordinates are voxel indices on the grid of the tensor's own stride: a tensor at stride ``s`` has
coordinates ``floor(c1 / s)`` of the stride-1 coordinates ``c1`` (downsampling halves them with a floor).
Every coordinate set is packed into one int64 key per voxel (see :func:`pack_keys`); neighbour
lookup is ``searchsorted`` on the sorted keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Hashable, Optional, Tuple

import torch

# Key layout (int64): batch in bits 48..62, x in 32..47, y in 16..31, z in 0..15; x, y, z offset by 2**15.
COORD_BITS = 16
COORD_OFFSET = 1 << (COORD_BITS - 1)
# Neighbour offsets are added directly to keys, so coordinates keep this margin from the field limits.
COORD_MARGIN = 64
COORD_LIMIT = COORD_OFFSET - COORD_MARGIN
MAX_BATCH = (1 << 15) - 1


def check_coords(coords: torch.Tensor) -> None:
    """Validate coords: (V, 4) integer [b, x, y, z]; raise ValueError naming the problem."""
    if not isinstance(coords, torch.Tensor):
        raise TypeError(f'coords must be a torch.Tensor, got {type(coords).__name__}')
    if coords.dim() != 2 or coords.shape[1] != 4:
        raise ValueError(f'coords must have shape (V, 4) [b, x, y, z], got {tuple(coords.shape)}')
    if coords.dtype not in (torch.int32, torch.int64):
        raise ValueError(f'coords must be int32 or int64, got {coords.dtype}')
    if coords.shape[0] == 0:
        raise ValueError('sparse tensor has zero voxels (empty point cloud or everything filtered out)')
    b = coords[:, 0]
    xyz = coords[:, 1:]
    if int(b.min()) < 0 or int(b.max()) > MAX_BATCH:
        raise ValueError(f'batch indices must lie in [0, {MAX_BATCH}], got [{int(b.min())}, {int(b.max())}]')
    lo, hi = int(xyz.min()), int(xyz.max())
    if lo <= -COORD_LIMIT or hi >= COORD_LIMIT:
        raise ValueError(f'voxel coordinates span [{lo}, {hi}], outside the supported (-{COORD_LIMIT}, {COORD_LIMIT}); '
                         'increase voxel_size or crop the cloud')


def pack_keys(coords: torch.Tensor) -> torch.Tensor:
    """coords: (V, 4) int [b, x, y, z] -> (V,) int64 keys; key(c + d) == key(c) + offset_key(d) in range."""
    c = coords.to(torch.int64)
    return ((c[:, 0] << (3 * COORD_BITS)) | ((c[:, 1] + COORD_OFFSET) << (2 * COORD_BITS))
            | ((c[:, 2] + COORD_OFFSET) << COORD_BITS) | (c[:, 3] + COORD_OFFSET))


def unpack_keys(keys: torch.Tensor) -> torch.Tensor:
    """keys: (V,) int64 -> coords (V, 4) int64 [b, x, y, z]; inverse of :func:`pack_keys`."""
    mask = (1 << COORD_BITS) - 1
    b = keys >> (3 * COORD_BITS)
    x = ((keys >> (2 * COORD_BITS)) & mask) - COORD_OFFSET
    y = ((keys >> COORD_BITS) & mask) - COORD_OFFSET
    z = (keys & mask) - COORD_OFFSET
    return torch.stack([b, x, y, z], dim=1)


def offset_keys(offsets: torch.Tensor) -> torch.Tensor:
    """offsets: (K, 3) int spatial deltas -> (K,) int64 key deltas (valid for coordinates within COORD_LIMIT)."""
    o = offsets.to(torch.int64)
    return (o[:, 0] << (2 * COORD_BITS)) + (o[:, 1] << COORD_BITS) + o[:, 2]


@dataclass
class CoordinateSet:
    """One coordinate set of a batch at one stride: coords (V, 4) int64 and sorted keys."""
    coords: torch.Tensor
    keys: torch.Tensor          # (V,) int64, keys of coords in row order
    sorted_keys: torch.Tensor   # (V,) int64 ascending
    order: Optional[torch.Tensor]  # (V,) long: row index of sorted_keys[i]; None when rows are already sorted

    @classmethod
    def from_coords(cls, coords: torch.Tensor) -> 'CoordinateSet':
        with torch.no_grad():
            coords = coords.to(torch.int64)
            keys = pack_keys(coords)
            if keys.numel() < 2 or bool((keys[1:] > keys[:-1]).all()):
                return cls(coords, keys, keys, None)
            sorted_keys, order = torch.sort(keys)
            if bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
                raise ValueError('sparse tensor has duplicate coordinates; voxelize the points first')
            return cls(coords, keys, sorted_keys, order)

    def lookup(self, query: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """query: (M,) int64 keys -> (found (M,) bool, row (M,) long, valid where found)."""
        n = self.sorted_keys.numel()
        pos = torch.searchsorted(self.sorted_keys, query)
        pos_c = pos.clamp_(max=n - 1)
        found = self.sorted_keys[pos_c] == query
        row = pos_c if self.order is None else self.order[pos_c]
        return found, row


@dataclass
class KernelMapCache:
    """Per-batch cache shared by every SparseTensor derived from one voxelization.

    Holds coordinate sets per stride (``('coords', stride)``) and kernel maps keyed by
    ``('kmap', stride, kernel, dilation, kind)``; layers at one stride reuse the same maps.
    """
    entries: Dict[Hashable, Any] = field(default_factory=dict)

    def get(self, key: Hashable) -> Any:
        return self.entries.get(key)

    def put(self, key: Hashable, value: Any) -> Any:
        self.entries[key] = value
        return value

    def clear(self) -> None:
        self.entries.clear()


class SparseTensor:
    """coords: (V, 4) int64 [b, x, y, z] on the stride-``stride`` grid; feats: (V, C) float.

    ``cache`` is shared (by reference) with every tensor produced from this one by layers.
    """

    def __init__(self, coords: torch.Tensor, feats: torch.Tensor, stride: int = 1,
                 cache: Optional[KernelMapCache] = None, batch_size: Optional[int] = None,
                 check: bool = True):
        if check:
            check_coords(coords)
            if not isinstance(feats, torch.Tensor) or feats.dim() != 2:
                raise ValueError(f'feats must be a (V, C) tensor, got {getattr(feats, "shape", type(feats))}')
            if feats.shape[0] != coords.shape[0]:
                raise ValueError(f'feats has {feats.shape[0]} rows but coords has {coords.shape[0]}')
            if feats.device != coords.device:
                raise ValueError(f'feats on {feats.device} but coords on {coords.device}')
            if int(stride) < 1:
                raise ValueError(f'stride must be a positive integer, got {stride}')
        self.coords = coords.to(torch.int64)
        self.feats = feats
        self.stride = int(stride)
        self.cache = cache if cache is not None else KernelMapCache()
        self._batch_size = batch_size
        if self.cache.get(('coords', self.stride)) is None:
            self.cache.put(('coords', self.stride), CoordinateSet.from_coords(self.coords))

    @property
    def coordinate_set(self) -> CoordinateSet:
        cs = self.cache.get(('coords', self.stride))
        if cs is None or cs.coords.shape[0] != self.coords.shape[0]:
            cs = self.cache.put(('coords', self.stride), CoordinateSet.from_coords(self.coords))
        return cs

    @property
    def batch_size(self) -> int:
        if self._batch_size is None:
            self._batch_size = int(self.coords[:, 0].max()) + 1
        return self._batch_size

    @property
    def num_voxels(self) -> int:
        return int(self.coords.shape[0])

    @property
    def device(self) -> torch.device:
        return self.feats.device

    def replace_feats(self, feats: torch.Tensor) -> 'SparseTensor':
        """Same coordinates, stride and cache with new feats (V, C')."""
        if feats.shape[0] != self.coords.shape[0]:
            raise ValueError(f'replacement feats have {feats.shape[0]} rows, expected {self.coords.shape[0]}')
        out = SparseTensor.__new__(SparseTensor)
        out.coords, out.feats, out.stride, out.cache, out._batch_size = (
            self.coords, feats, self.stride, self.cache, self._batch_size)
        return out

    def __repr__(self) -> str:
        return (f'SparseTensor(voxels={self.num_voxels}, channels={self.feats.shape[1]}, stride={self.stride}, '
                f'dtype={self.feats.dtype}, device={self.device})')
