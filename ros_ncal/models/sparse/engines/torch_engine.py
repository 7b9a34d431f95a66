"""Default engine: PyTorch, CPU and CUDA.

On CPU with float32 / float64 (the usual case) each pass is one call into the native kernels of
:mod:`.native`: output-stationary rows of a CSR built once per kernel map, no atomics, one OpenMP region,
bitwise the same result for any thread count, and faster with more threads. Elsewhere (CUDA, autocast
half precision, or no C++ compiler) it is gather - matmul - ``index_add_`` per kernel offset in plain
PyTorch. A custom autograd Function computes the backward pass over the same kernel map (the input gradient
is a transposed pass, the weight gradient one reduction per offset). On CUDA ``index_add_`` accumulates with
atomics (run-to-run differences at float rounding level).
"""
from __future__ import annotations

from typing import Tuple

import torch

from . import native
from ..kernel_map import KernelMap, downsample_map, submanifold_map, upsample_map
from ..tensor import SparseTensor


def _pairs(kmap: KernelMap) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All pairs grouped by offset: kptr (K+1,) int64, in_rows, out_rows (P,) int32 (cached on the map)."""
    entry = kmap.derived.get('pairs')
    if entry is None:
        with torch.no_grad():
            sizes = torch.tensor([int(i.numel()) for i in kmap.in_idx], dtype=torch.int64)
            kptr = torch.cat([sizes.new_zeros(1), torch.cumsum(sizes, 0)])
            in_all = torch.cat(kmap.in_idx).to(device='cpu', dtype=torch.int32)
            out_all = torch.cat(kmap.out_idx).to(device='cpu', dtype=torch.int32)
        entry = kmap.derived['pairs'] = (kptr, in_all, out_all)
    return entry


def _csr(kmap: KernelMap, by_out: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs sorted by destination row (output rows when by_out, else input rows): rowptr (R+1,) int64,
    col (P,) int32 source rows, koff (P,) int32 offsets (cached on the map).

    A submanifold map is its own mirror (pair (i, o) at offset k <=> (o, i) at K-1-k), so its input-sorted
    CSR is the output-sorted one with mirrored offsets; a map where every destination row has exactly one
    pair (the fine side of a stride-2 map) is inverted with a scatter instead of a sort."""
    name = 'csr_out' if by_out else 'csr_in'
    entry = kmap.derived.get(name)
    if entry is not None:
        return entry
    mirror = kmap.derived.get('mirror', False)
    if mirror and not by_out:
        rowptr, col, koff = _csr(kmap, by_out=True)
        entry = (rowptr, col, (kmap.num_offsets - 1) - koff)
    else:
        kptr, in_all, out_all = _pairs(kmap)
        dst, src = (out_all, in_all) if by_out else (in_all, out_all)
        n_dst = kmap.n_out if by_out else kmap.n_in
        with torch.no_grad():
            koff = torch.repeat_interleave(torch.arange(kptr.numel() - 1, dtype=torch.int32), kptr.diff())
            counts = torch.bincount(dst, minlength=n_dst)
            if dst.numel() == n_dst and bool((counts == 1).all()):
                order = torch.empty_like(dst, dtype=torch.int64).scatter_(
                    0, dst.long(), torch.arange(dst.numel()))
            else:
                order = torch.sort(dst, stable=True).indices
            rowptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
            entry = (rowptr, src[order].contiguous(), koff[order].contiguous())
    kmap.derived[name] = entry
    return entry


def _native_conv(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap, transpose: bool) -> torch.Tensor:
    """sum_k scatter(out_k, feats[in_k] @ W[k]) with the native kernels (CPU, float32 / float64); with
    transpose=True the map runs backwards: sum_k scatter(in_k, feats[out_k] @ W[k])."""
    rowptr, col, koff = _csr(kmap, by_out=not transpose)
    return native.conv_csr(rowptr, col, koff, feats, weight)


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
    the input gradient is one transposed pass over the same kernel map (one buffer, not one per offset).
    transpose=True runs the map backwards (a transposed convolution onto the map's input set)."""

    @staticmethod
    def forward(ctx, feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap, transpose: bool) -> torch.Tensor:
        ctx.save_for_backward(feats, weight)
        ctx.kmap, ctx.transpose = kmap, transpose
        if native.supports(feats, weight):
            return _native_conv(feats, weight, kmap, transpose)
        if transpose:
            kmap = KernelMap(kmap.out_idx, kmap.in_idx, kmap.identity, kmap.n_out, kmap.n_in)
        return _scatter_conv(feats, weight, kmap, False)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        feats, weight = ctx.saved_tensors
        kmap: KernelMap = ctx.kmap
        transpose: bool = ctx.transpose
        # autocast may have run the forward in half precision; the backward runs in the inputs' precision
        dtype = torch.promote_types(feats.dtype, weight.dtype)
        feats, weight = feats.to(dtype), weight.to(dtype)
        grad_out = grad_out.to(dtype).contiguous()
        grad_feats = grad_weight = None
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if native.supports(feats, weight, grad_out):
            if need_x:  # the transposed pass with transposed weights
                rowptr, col, koff = _csr(kmap, by_out=transpose)
                grad_feats = native.conv_csr(rowptr, col, koff, grad_out, weight.transpose(1, 2))
            if need_w:
                kptr, in_rows, out_rows = _pairs(kmap)
                ia, ib = (out_rows, in_rows) if transpose else (in_rows, out_rows)
                grad_weight = native.weight_grad(kptr, ia, ib, feats, grad_out)
            return grad_feats, grad_weight, None, None
        if transpose:
            kmap = KernelMap(kmap.out_idx, kmap.in_idx, kmap.identity, kmap.n_out, kmap.n_in)
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
        return grad_feats, grad_weight, None, None


def apply_kernel_map(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """feats: (n_in, Cin), weight: (K, Cin, Cout) -> (n_out, Cout): sum_k scatter(out_k, feats[in_k] @ W[k])."""
    if weight.shape[0] != kmap.num_offsets:
        raise ValueError(f'weight has {weight.shape[0]} kernel offsets but the kernel map has {kmap.num_offsets}')
    if feats.shape[0] != kmap.n_in:
        raise ValueError(f'feats has {feats.shape[0]} rows but the kernel map expects {kmap.n_in}')
    return _KernelMapConv.apply(feats, weight, kmap, False)


def apply_kernel_map_transposed(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """feats: (n_out, Cin) on the map's output set, weight: (K, Cin, Cout) -> (n_in, Cout):
    sum_k scatter(in_k, feats[out_k] @ W[k]) (a transposed convolution over the same map)."""
    if weight.shape[0] != kmap.num_offsets:
        raise ValueError(f'weight has {weight.shape[0]} kernel offsets but the kernel map has {kmap.num_offsets}')
    if feats.shape[0] != kmap.n_out:
        raise ValueError(f'feats has {feats.shape[0]} rows but the transposed kernel map expects {kmap.n_out}')
    return _KernelMapConv.apply(feats, weight, kmap, True)


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
