"""Kernel maps: for each kernel offset, the (input row, output row) pairs a sparse convolution touches.

Built under ``torch.no_grad`` with int64 keys and ``searchsorted`` on sorted keys, then cached in the
tensor's :class:`KernelMapCache` so every layer at the same stride reuses them.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch

from .tensor import CoordinateSet, SparseTensor, offset_keys, pack_keys, unpack_keys


@dataclass
class KernelMap:
    """in_idx[k], out_idx[k]: (M_k,) long row pairs for kernel offset k (dense weight order, last axis fastest).

    identity: the offset whose map is ``in == out == arange(n_out)`` (the centre of a submanifold kernel),
    or -1. n_in / n_out: number of rows of the input / output coordinate sets.
    derived: layouts an engine derives from the pairs once and reuses (e.g. the native kernels' CSR).
    """
    in_idx: List[torch.Tensor]
    out_idx: List[torch.Tensor]
    identity: int
    n_in: int
    n_out: int
    derived: Dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_offsets(self) -> int:
        return len(self.in_idx)

    def num_pairs(self) -> int:
        return sum(int(i.numel()) for i in self.in_idx)


def kernel_offsets(kernel_size: int, dilation: int = 1, device=None) -> torch.Tensor:
    """(k**3, 3) int64 spatial offsets of an odd, centred kernel in dense conv3d weight order."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f'submanifold kernel_size must be odd and >= 1, got {kernel_size}')
    r = kernel_size // 2
    rng = range(-r, r + 1)
    offs = torch.tensor(list(itertools.product(rng, rng, rng)), dtype=torch.int64, device=device)
    return offs * int(dilation)


@torch.no_grad()
def build_submanifold_map(cs: CoordinateSet, kernel_size: int, dilation: int = 1) -> KernelMap:
    """Submanifold map: output sites = input sites; pair (j, i) when coords[j] == coords[i] + offset."""
    n = cs.coords.shape[0]
    device = cs.coords.device
    K = kernel_size ** 3
    center = K // 2
    arange = torch.arange(n, device=device)
    in_idx: List[torch.Tensor] = [None] * K  # type: ignore[list-item]
    out_idx: List[torch.Tensor] = [None] * K  # type: ignore[list-item]
    in_idx[center], out_idx[center] = arange, arange
    dkeys = offset_keys(kernel_offsets(kernel_size, dilation, device))
    # offset k and its mirror K-1-k have swapped pairs: look up only the first half.
    for k in range(center):
        found, rows = cs.lookup(cs.keys + dkeys[k])
        out_rows = arange[found]
        in_rows = rows[found]
        in_idx[k], out_idx[k] = in_rows, out_rows
        in_idx[K - 1 - k], out_idx[K - 1 - k] = out_rows, in_rows
    kmap = KernelMap(in_idx, out_idx, center, n, n)
    kmap.derived['mirror'] = True  # pair (i, o) at offset k <=> (o, i) at offset K-1-k
    return kmap


@torch.no_grad()
def build_downsample_map(cs: CoordinateSet) -> Tuple[torch.Tensor, KernelMap]:
    """Kernel 2, stride 2: coarse coords = unique(floor(coords / 2)) (sorted by key).

    Each fine voxel feeds exactly one coarse voxel through offset (x & 1, y & 1, z & 1).
    Returns coarse coords (V', 4) int64 and the map (in = fine rows, out = coarse rows).
    """
    c = cs.coords
    coarse = torch.cat([c[:, :1], c[:, 1:] >> 1], dim=1)
    ukeys, inverse = torch.unique(pack_keys(coarse), sorted=True, return_inverse=True)
    parity = c[:, 1:] & 1
    offset_id = parity[:, 0] * 4 + parity[:, 1] * 2 + parity[:, 2]
    in_idx, out_idx = [], []
    for k in range(8):
        rows = torch.nonzero(offset_id == k, as_tuple=True)[0]
        in_idx.append(rows)
        out_idx.append(inverse[rows])
    return unpack_keys(ukeys), KernelMap(in_idx, out_idx, -1, c.shape[0], ukeys.shape[0])


def submanifold_map(x: SparseTensor, kernel_size: int, dilation: int = 1) -> KernelMap:
    """Cached submanifold map of x's coordinate set."""
    key = ('kmap', x.stride, int(kernel_size), int(dilation), 'subm')
    kmap = x.cache.get(key)
    if kmap is None or kmap.n_out != x.num_voxels:
        kmap = x.cache.put(key, build_submanifold_map(x.coordinate_set, kernel_size, dilation))
    return kmap


def downsample_map(x: SparseTensor) -> Tuple[torch.Tensor, KernelMap]:
    """Cached (coarse coords, map) for a kernel-2 stride-2 convolution of x."""
    key = ('kmap', x.stride, 2, 1, 'down')
    entry = x.cache.get(key)
    if entry is None or entry[1].n_in != x.num_voxels:
        entry = x.cache.put(key, build_downsample_map(x.coordinate_set))
        x.cache.put(('coords', 2 * x.stride), CoordinateSet.from_coords(entry[0]))
    return entry


def upsample_map(x: SparseTensor) -> Tuple[torch.Tensor, KernelMap]:
    """(fine coords at stride x.stride // 2, map) for a transposed kernel-2 stride-2 conv back onto the cached set."""
    if x.stride < 2 or x.stride % 2:
        raise ValueError(f'cannot upsample a tensor at stride {x.stride}: need an even stride >= 2')
    fine = x.cache.get(('coords', x.stride // 2))
    entry = x.cache.get(('kmap', x.stride // 2, 2, 1, 'down'))
    if fine is None or entry is None or entry[1].n_out != x.num_voxels:
        raise ValueError(f'no finer coordinate set at stride {x.stride // 2} in the cache: transposed convolution '
                         'only maps back onto coordinates this tensor was downsampled from')
    return fine.coords, entry[1]
