"""Sparse layers (nn.Module) over :class:`SparseTensor`, dispatching to a sparse engine."""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .engines import get_engine
from .tensor import SparseTensor


def _init_kernel(weight: torch.Tensor) -> None:
    """Kaiming-uniform for ReLU networks: weight (K, Cin, Cout), fan_in = K * Cin, bound sqrt(6 / fan_in)."""
    fan_in = weight.shape[0] * weight.shape[1]
    bound = math.sqrt(6.0 / fan_in)
    with torch.no_grad():
        weight.uniform_(-bound, bound)


class _SparseConvBase(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_offsets: int, bias: bool, engine: str):
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f'channels must be positive, got in={in_channels}, out={out_channels}')
        self.in_channels, self.out_channels, self.engine = int(in_channels), int(out_channels), engine
        self.weight = nn.Parameter(torch.empty(num_offsets, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        _init_kernel(self.weight)

    def _check(self, x: SparseTensor) -> None:
        if not isinstance(x, SparseTensor):
            raise TypeError(f'{type(self).__name__} expects a SparseTensor, got {type(x).__name__}')
        if x.feats.shape[1] != self.in_channels:
            raise ValueError(f'{type(self).__name__} expects {self.in_channels} input channels, '
                             f'got {x.feats.shape[1]}')

    def _add_bias(self, y: SparseTensor) -> SparseTensor:
        return y if self.bias is None else y.replace_feats(y.feats + self.bias)

    def extra_repr(self) -> str:
        return f'{self.in_channels}, {self.out_channels}, offsets={self.weight.shape[0]}, engine={self.engine}'


class SubMConv3d(_SparseConvBase):
    """Submanifold conv: output sites = input sites. weight (k**3, Cin, Cout) in dense conv3d offset order."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                 bias: bool = False, engine: str = 'torch'):
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f'kernel_size must be odd, got {kernel_size}')
        super().__init__(in_channels, out_channels, kernel_size ** 3, bias, engine)
        self.kernel_size, self.dilation = int(kernel_size), int(dilation)

    def forward(self, x: SparseTensor) -> SparseTensor:
        self._check(x)
        y = get_engine(self.engine).submanifold_conv(x, self.weight, self.kernel_size, self.dilation)
        return self._add_bias(y)


class SparseDownConv3d(_SparseConvBase):
    """Kernel 2, stride 2 conv: output coords unique(floor(coords / 2)), stride doubles. weight (8, Cin, Cout)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False, engine: str = 'torch'):
        super().__init__(in_channels, out_channels, 8, bias, engine)

    def forward(self, x: SparseTensor) -> SparseTensor:
        self._check(x)
        return self._add_bias(get_engine(self.engine).downsample_conv(x, self.weight))


class SparseUpConv3d(_SparseConvBase):
    """Transposed kernel 2, stride 2 conv back onto the finer coordinate set this tensor came from."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False, engine: str = 'torch'):
        super().__init__(in_channels, out_channels, 8, bias, engine)

    def forward(self, x: SparseTensor) -> SparseTensor:
        self._check(x)
        return self._add_bias(get_engine(self.engine).upsample_conv(x, self.weight))


class SparseBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over voxel features. With fewer than 2 voxels in training it normalises with the running
    statistics (a batch statistic of one value is undefined) instead of raising."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        f = x.feats
        if self.training and f.shape[0] < 2:
            y = F.batch_norm(f, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        else:
            y = super().forward(f)
        return x.replace_feats(y)


class SparseSyncBatchNorm(nn.SyncBatchNorm):
    """SyncBatchNorm over voxel features for DDP on GPUs (statistics over all ranks' voxels). Same parameter
    names as SparseBatchNorm; outside distributed training it behaves like SparseBatchNorm."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        f = x.feats
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if self.training and f.shape[0] < 2 and not distributed:
            y = F.batch_norm(f, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        else:
            y = super().forward(f)
        return x.replace_feats(y)


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Replace SparseBatchNorm by SparseSyncBatchNorm and dense BatchNorm by nn.SyncBatchNorm, in place where
    possible; state_dict names and values are kept. (torch's nn.SyncBatchNorm.convert_sync_batchnorm would turn
    SparseBatchNorm into a plain SyncBatchNorm that cannot take a SparseTensor.)"""
    from torch.nn.modules.batchnorm import _BatchNorm
    if isinstance(module, _BatchNorm) and not isinstance(module, nn.SyncBatchNorm):
        cls = SparseSyncBatchNorm if isinstance(module, SparseBatchNorm) else nn.SyncBatchNorm
        new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                  process_group)
        if module.affine:
            with torch.no_grad():
                new.weight = module.weight
                new.bias = module.bias
        new.running_mean = module.running_mean
        new.running_var = module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        new_child = convert_sync_batchnorm(child, process_group)
        if new_child is not child:
            module.add_module(name, new_child)
    return module


class SparseReLU(nn.Module):
    def __init__(self, inplace: bool = True):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feats(F.relu(x.feats, inplace=self.inplace))


class SparseLinear(nn.Linear):
    """Per-voxel linear layer (equal to a kernel-1 conv with bias)."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace_feats(super().forward(x.feats))


def cat_feats(a: SparseTensor, b: SparseTensor) -> SparseTensor:
    """Channel concatenation of two tensors on the same coordinate set (skip connections)."""
    if a.stride != b.stride or a.num_voxels != b.num_voxels:
        raise ValueError(f'cannot concatenate sparse tensors at stride {a.stride}/{b.stride} '
                         f'with {a.num_voxels}/{b.num_voxels} voxels')
    return a.replace_feats(torch.cat([a.feats, b.feats], dim=1))
