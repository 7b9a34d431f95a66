"""MinkUNet (14 / 18 / 34) on the project's sparse engine: per-point features from raw point clouds.

Layout (the common torchsparse / SegContrast MinkUNet): a stem of two submanifold 3x3x3 convs, four
encoder stages (kernel-2 stride-2 conv, then residual BasicBlocks), four decoder stages (transposed
kernel-2 stride-2 conv, concat with the encoder skip of that stride, residual BasicBlocks), a per-voxel
linear to ``out_dim``, gathered back to the points.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .registry import register
from .sparse import (SparseBatchNorm, SparseDownConv3d, SparseReLU, SparseTensor, SparseUpConv3d,
                     SubMConv3d, batch_points, cat_feats, voxelize)
from .sparse.voxelize import POOLING_MODES

# Residual blocks per stage (4 encoder stages then 4 decoder stages).
DEPTH_BLOCKS: Dict[int, Tuple[int, ...]] = {
    14: (1, 1, 1, 1, 1, 1, 1, 1),
    18: (2, 2, 2, 2, 2, 2, 2, 2),
    34: (2, 3, 4, 6, 2, 2, 2, 2),
}
# stem, 4 encoder stages, 4 decoder stages.
DEFAULT_CHANNELS: Tuple[int, ...] = (32, 32, 64, 128, 256, 256, 128, 96, 96)
# Which point columns feed the network, and how many channels each mode gives.
INPUT_FEATURES: Dict[str, Tuple[int, ...]] = {
    'intensity': (3,),
    'xyz_intensity': (0, 1, 2, 3),
    'xyz': (0, 1, 2),
    'ones': (),
}


@dataclass
class MinkUNetOutput:
    """Everything one MinkUNet pass produces, for heads that work per voxel and per point.

    point_feats: (N, out_dim) per input point (concatenated over the batch, input order).
    voxels: stride-1 SparseTensor, coords (V, 4) [b, x, y, z] and feats (V, out_dim).
    point2voxel: (N,) long, voxel row of each point; batch_idx: (N,) long.
    voxel_xyz: (V, 3) mean x, y, z (metres) of the points in each voxel (a better 3D location than the centre).
    """
    point_feats: torch.Tensor
    voxels: SparseTensor
    point2voxel: torch.Tensor
    batch_idx: torch.Tensor
    voxel_xyz: torch.Tensor

    def split(self, counts: Sequence[int]) -> List[torch.Tensor]:
        """Per-sample point features for clouds of ``counts`` points."""
        return list(torch.split(self.point_feats, [int(c) for c in counts], dim=0))


class BasicBlock(nn.Module):
    """conv3-BN-ReLU-conv3-BN + shortcut (kernel-1 conv + BN when channels change), ReLU."""

    def __init__(self, cin: int, cout: int, engine: str = 'torch'):
        super().__init__()
        self.conv1 = SubMConv3d(cin, cout, 3, engine=engine)
        self.bn1 = SparseBatchNorm(cout)
        self.conv2 = SubMConv3d(cout, cout, 3, engine=engine)
        self.bn2 = SparseBatchNorm(cout)
        self.relu = SparseReLU()
        self.downsample = None if cin == cout else nn.Sequential(SubMConv3d(cin, cout, 1, engine=engine),
                                                                 SparseBatchNorm(cout))

    def forward(self, x: SparseTensor) -> SparseTensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out.replace_feats(out.feats + identity.feats))


def _conv_bn_relu(conv: nn.Module, cout: int) -> nn.Sequential:
    return nn.Sequential(conv, SparseBatchNorm(cout), SparseReLU())


@register('MinkUNet')
class MinkUNet(nn.Module):
    """Sparse residual U-Net giving per-point features.

    in_channels: input feature channels per point (must match ``input_features``: 'intensity' -> 1,
        'xyz_intensity' -> 4, 'xyz' -> 3, 'ones' -> 1).
    out_dim: per-point output dimension (final per-voxel linear layer).
    depth: 14, 18 or 34 (blocks per stage in DEPTH_BLOCKS); ``blocks`` overrides it.
    width: channel multiplier on ``channels`` (default DEFAULT_CHANNELS); 0.25 gives a tiny CPU model.
    voxel_size: metres; pooling: 'mean' or 'first' point features per voxel.
    """

    def __init__(self, in_channels: int = 1, out_dim: int = 64, depth: int = 14, width: float = 1.0,
                 voxel_size: float = 0.1, input_features: str = 'intensity', pooling: str = 'mean',
                 channels: Sequence[int] = DEFAULT_CHANNELS, blocks: Optional[Sequence[int]] = None,
                 engine: str = 'torch'):
        super().__init__()
        if blocks is None:
            if depth not in DEPTH_BLOCKS:
                raise ValueError(f'MinkUNet depth must be one of {sorted(DEPTH_BLOCKS)}, got {depth}')
            blocks = DEPTH_BLOCKS[depth]
        if len(blocks) != 8 or min(blocks) < 1:
            raise ValueError(f'blocks must list 8 positive counts (4 encoder, 4 decoder stages), got {blocks}')
        if len(channels) != 9:
            raise ValueError(f'channels must list 9 values (stem, 4 encoder, 4 decoder), got {channels}')
        if input_features not in INPUT_FEATURES:
            raise ValueError(f'input_features must be one of {sorted(INPUT_FEATURES)}, got {input_features!r}')
        expected_in = max(1, len(INPUT_FEATURES[input_features]))
        if in_channels != expected_in:
            raise ValueError(f'input_features={input_features!r} gives {expected_in} channels, '
                             f'but in_channels={in_channels}')
        if not width > 0:
            raise ValueError(f'width must be positive, got {width}')
        if not voxel_size > 0:
            raise ValueError(f'voxel_size must be positive, got {voxel_size}')
        if pooling not in POOLING_MODES:
            raise ValueError(f'pooling must be one of {POOLING_MODES}, got {pooling!r}')
        if int(out_dim) < 1:
            raise ValueError(f'out_dim must be positive, got {out_dim}')
        self.in_channels, self.out_dim, self.depth, self.width = int(in_channels), int(out_dim), depth, float(width)
        self.voxel_size, self.input_features, self.pooling, self.engine = (
            float(voxel_size), input_features, pooling, engine)
        cs = [max(1, int(round(c * width))) for c in channels]
        self.channels, self.blocks = tuple(cs), tuple(int(b) for b in blocks)

        self.stem = nn.Sequential(_conv_bn_relu(SubMConv3d(in_channels, cs[0], 3, engine=engine), cs[0]),
                                  _conv_bn_relu(SubMConv3d(cs[0], cs[0], 3, engine=engine), cs[0]))
        self.encoder = nn.ModuleList()
        cin = cs[0]
        for i in range(4):
            layers = [_conv_bn_relu(SparseDownConv3d(cin, cin, engine=engine), cin)]
            for j in range(self.blocks[i]):
                layers.append(BasicBlock(cin if j == 0 else cs[i + 1], cs[i + 1], engine=engine))
            self.encoder.append(nn.Sequential(*layers))
            cin = cs[i + 1]
        skip_channels = [cs[3], cs[2], cs[1], cs[0]]
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in range(4):
            cout = cs[5 + i]
            self.up.append(_conv_bn_relu(SparseUpConv3d(cin, cout, engine=engine), cout))
            layers = [BasicBlock((cout + skip_channels[i]) if j == 0 else cout, cout, engine=engine)
                      for j in range(self.blocks[4 + i])]
            self.decoder.append(nn.Sequential(*layers))
            cin = cout
        self.head = nn.Linear(cin, out_dim)
        self.feature_dim = cin  # channels before the final linear

    # ----------------------------------------------------------------- inputs
    def point_features(self, points: torch.Tensor) -> torch.Tensor:
        """points: (N, C>=3) [x, y, z, intensity, ...] -> (N, in_channels) input features."""
        cols = INPUT_FEATURES[self.input_features]
        dtype = self.head.weight.dtype  # float64 clouds (from numpy) feed a float32 network
        if not cols:
            return points.new_ones(points.shape[0], 1, dtype=dtype)
        if points.shape[1] <= max(cols):
            raise ValueError(f'input_features={self.input_features!r} needs point columns {cols}, '
                             f'but points have {points.shape[1]} columns')
        return points[:, list(cols)].to(dtype)

    def voxelize(self, points: torch.Tensor, batch_idx: torch.Tensor,
                 batch_size: Optional[int] = None) -> Tuple[SparseTensor, torch.Tensor]:
        """(N, C) points + (N,) batch_idx -> (stride-1 SparseTensor, point2voxel (N,))."""
        return voxelize(points, batch_idx, self.voxel_size, self.pooling, features=self.point_features(points),
                        batch_size=batch_size)

    # ----------------------------------------------------------------- network
    def forward_sparse(self, x: SparseTensor) -> SparseTensor:
        """Stride-1 SparseTensor with in_channels feats -> SparseTensor (same coords) with out_dim feats."""
        x0 = self.stem(x)
        skips = [x0]
        y = x0
        for stage in self.encoder:
            y = stage(y)
            skips.append(y)
        for i in range(4):
            y = self.up[i](y)
            y = self.decoder[i](cat_feats(y, skips[3 - i]))
        return y.replace_feats(self.head(y.feats))

    def forward_batched(self, points: torch.Tensor, batch_idx: torch.Tensor, batch_size: Optional[int] = None,
                        ) -> Tuple[torch.Tensor, SparseTensor]:
        """points: (N, C) float, batch_idx: (N,) long -> (per-point feats (N, out_dim), voxel SparseTensor)."""
        x, point2voxel = self.voxelize(points, batch_idx, batch_size)
        y = self.forward_sparse(x)
        return y.feats[point2voxel], y

    def encode(self, points: Union[Sequence[torch.Tensor], torch.Tensor],
               batch_idx: Optional[torch.Tensor] = None) -> MinkUNetOutput:
        """Like forward, returning a MinkUNetOutput (point and voxel features, point2voxel, voxel_xyz)."""
        batch_size = None
        if isinstance(points, torch.Tensor):
            if batch_idx is None:
                batch_idx = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
        else:
            batch_size = len(points)
            points, batch_idx = batch_points(list(points))
        x, point2voxel = self.voxelize(points, batch_idx, batch_size)
        y = self.forward_sparse(x)
        with torch.no_grad():
            counts = torch.bincount(point2voxel, minlength=x.num_voxels).clamp_(min=1)
            xyz = points[:, :3].detach()
            voxel_xyz = xyz.new_zeros(x.num_voxels, 3).index_add_(0, point2voxel, xyz) / counts[:, None].to(xyz.dtype)
        return MinkUNetOutput(y.feats[point2voxel], y, point2voxel, batch_idx, voxel_xyz)

    def forward(self, points: Union[Sequence[torch.Tensor], torch.Tensor],
                batch_idx: Optional[torch.Tensor] = None, return_voxels: bool = False):
        """points_list: list of (Ni, C) clouds -> list of (Ni, out_dim) per-point features (Ni may be 0).

        With a tensor ``points`` (N, C) and ``batch_idx`` (N,), returns (N, out_dim) instead.
        ``return_voxels=True`` also returns the voxel-level output SparseTensor.
        """
        if isinstance(points, torch.Tensor):
            if batch_idx is None:
                batch_idx = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
            feats, voxels = self.forward_batched(points, batch_idx)
            return (feats, voxels) if return_voxels else feats
        points_list: List[torch.Tensor] = list(points)
        flat, bidx = batch_points(points_list)
        feats, voxels = self.forward_batched(flat, bidx, batch_size=len(points_list))
        out = list(torch.split(feats, [int(p.shape[0]) for p in points_list], dim=0))
        return (out, voxels) if return_voxels else out
