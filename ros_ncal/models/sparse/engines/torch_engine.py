"""Default engine: pure PyTorch gather - matmul - index_add_ per kernel offset (CPU and CUDA).

Autograd differentiates through the gathers and index_add_, so no custom backward is needed.
On CPU the result is deterministic; on CUDA ``index_add_`` accumulates with atomics (run-to-run
differences at float rounding level).
"""
from __future__ import annotations

import torch

from ..kernel_map import KernelMap, downsample_map, submanifold_map, upsample_map
from ..tensor import SparseTensor


def apply_kernel_map(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """feats: (n_in, Cin), weight: (K, Cin, Cout) -> (n_out, Cout): sum_k scatter(out_k, feats[in_k] @ W[k])."""
    if weight.shape[0] != kmap.num_offsets:
        raise ValueError(f'weight has {weight.shape[0]} kernel offsets but the kernel map has {kmap.num_offsets}')
    if kmap.identity >= 0:
        out = feats @ weight[kmap.identity]
    else:
        out = feats.new_zeros(kmap.n_out, weight.shape[2])
    for k in range(kmap.num_offsets):
        if k == kmap.identity or kmap.in_idx[k].numel() == 0:
            continue
        out.index_add_(0, kmap.out_idx[k], feats.index_select(0, kmap.in_idx[k]) @ weight[k])
    return out


class TorchEngine:
    """Sparse convolution ops on :class:`SparseTensor` in plain PyTorch."""
    name = 'torch'

    def submanifold_conv(self, x: SparseTensor, weight: torch.Tensor, kernel_size: int = 3,
                         dilation: int = 1) -> SparseTensor:
        """weight: (k**3, Cin, Cout) -> same coordinates, feats (V, Cout)."""
        if kernel_size == 1:
            return x.replace_feats(x.feats @ weight[0])
        kmap = submanifold_map(x, kernel_size, dilation)
        return x.replace_feats(apply_kernel_map(x.feats, weight, kmap))

    def downsample_conv(self, x: SparseTensor, weight: torch.Tensor) -> SparseTensor:
        """Kernel 2, stride 2. weight: (8, Cin, Cout) -> tensor at stride 2 * x.stride."""
        coarse, kmap = downsample_map(x)
        feats = apply_kernel_map(x.feats, weight, kmap)
        return SparseTensor(coarse, feats, stride=2 * x.stride, cache=x.cache, batch_size=x._batch_size,
                            check=False)

    def upsample_conv(self, x: SparseTensor, weight: torch.Tensor) -> SparseTensor:
        """Transposed kernel 2, stride 2 onto the cached finer set. weight: (8, Cin, Cout)."""
        fine, kmap = upsample_map(x)
        feats = x.feats.new_zeros(kmap.n_in, weight.shape[2])
        for k in range(8):
            if kmap.in_idx[k].numel():
                feats.index_add_(0, kmap.in_idx[k], x.feats.index_select(0, kmap.out_idx[k]) @ weight[k])
        return SparseTensor(fine, feats, stride=x.stride // 2, cache=x.cache, batch_size=x._batch_size,
                            check=False)
