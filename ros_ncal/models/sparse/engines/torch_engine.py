"""Default engine: pure PyTorch gather - matmul - index_add_ per kernel offset (CPU and CUDA).

A custom autograd Function computes the backward pass over the same kernel map (the input gradient is a
transposed pass, the weight gradient one matmul per offset). On CPU the result is deterministic; on CUDA
``index_add_`` accumulates with atomics (run-to-run differences at float rounding level).
"""
from __future__ import annotations

import torch

from ..kernel_map import KernelMap, downsample_map, submanifold_map, upsample_map
from ..tensor import SparseTensor


def _scatter_conv(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap, transpose: bool) -> torch.Tensor:
    """sum_k scatter(out_k, feats[in_k] @ W[k]); with transpose=True the map runs backwards (out -> in)
    and W[k] is transposed: the gradient wrt feats of the forward call."""
    src_idx, dst_idx = (kmap.out_idx, kmap.in_idx) if transpose else (kmap.in_idx, kmap.out_idx)
    n_dst = kmap.n_in if transpose else kmap.n_out
    w = weight.transpose(1, 2) if transpose else weight
    out = feats @ w[kmap.identity] if kmap.identity >= 0 else None
    for k in range(kmap.num_offsets):
        if k == kmap.identity or src_idx[k].numel() == 0:
            continue
        contrib = feats.index_select(0, src_idx[k]) @ w[k]
        if out is None:  # dtype from the matmul (autocast may make it half precision)
            out = contrib.new_zeros(n_dst, w.shape[2])
        out.index_add_(0, dst_idx[k], contrib.to(out.dtype))
    if out is None:
        out = feats.new_zeros(n_dst, w.shape[2])
    return out


class _KernelMapConv(torch.autograd.Function):
    """Sparse conv with a hand-written backward: no per-offset gathered copies are kept for backward, and
    the input gradient is one transposed pass over the same kernel map (one buffer, not one per offset)."""

    @staticmethod
    def forward(ctx, feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
        ctx.save_for_backward(feats, weight)
        ctx.kmap = kmap
        return _scatter_conv(feats, weight, kmap, transpose=False)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        feats, weight = ctx.saved_tensors
        kmap: KernelMap = ctx.kmap
        # autocast may have run the forward in half precision; the backward runs in the inputs' precision
        dtype = torch.promote_types(feats.dtype, weight.dtype)
        feats, weight = feats.to(dtype), weight.to(dtype)
        grad_out = grad_out.to(dtype).contiguous()
        grad_feats = grad_weight = None
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if need_w:
            grad_weight = torch.zeros_like(weight)
        if need_x:
            if kmap.identity >= 0:
                grad_feats = grad_out @ weight[kmap.identity].T
            else:
                grad_feats = feats.new_zeros(kmap.n_in, weight.shape[1])
        for k in range(kmap.num_offsets):
            if kmap.in_idx[k].numel() == 0:
                continue
            if k == kmap.identity:
                if need_w:
                    grad_weight[k] = feats.T @ grad_out
                continue
            g = grad_out.index_select(0, kmap.out_idx[k])
            if need_w:
                grad_weight[k] = feats.index_select(0, kmap.in_idx[k]).T @ g
            if need_x:
                grad_feats.index_add_(0, kmap.in_idx[k], g @ weight[k].T)
        return grad_feats, grad_weight, None


def apply_kernel_map(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """feats: (n_in, Cin), weight: (K, Cin, Cout) -> (n_out, Cout): sum_k scatter(out_k, feats[in_k] @ W[k])."""
    if weight.shape[0] != kmap.num_offsets:
        raise ValueError(f'weight has {weight.shape[0]} kernel offsets but the kernel map has {kmap.num_offsets}')
    if feats.shape[0] != kmap.n_in:
        raise ValueError(f'feats has {feats.shape[0]} rows but the kernel map expects {kmap.n_in}')
    return _KernelMapConv.apply(feats, weight, kmap)


def apply_kernel_map_transposed(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """feats: (n_out, Cin) on the map's output set, weight: (K, Cin, Cout) -> (n_in, Cout):
    sum_k scatter(in_k, feats[out_k] @ W[k]) (a transposed convolution over the same map)."""
    if weight.shape[0] != kmap.num_offsets:
        raise ValueError(f'weight has {weight.shape[0]} kernel offsets but the kernel map has {kmap.num_offsets}')
    swapped = KernelMap(kmap.out_idx, kmap.in_idx, kmap.identity, kmap.n_out, kmap.n_in)
    return _KernelMapConv.apply(feats, weight, swapped)


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
        feats = apply_kernel_map_transposed(x.feats, weight, kmap)
        return SparseTensor(fine, feats, stride=x.stride // 2, cache=x.cache, batch_size=x._batch_size,
                            check=False)
