"""Sparse voxel tensors, voxelization, kernel maps, sparse conv engines and layers."""
from .engines import ENGINE_NAMES, EngineUnavailableError, available_engines, get_engine  # noqa: F401
from .kernel_map import (KernelMap, build_downsample_map, build_submanifold_map, downsample_map,  # noqa: F401
                         kernel_offsets, submanifold_map, upsample_map)
from .nn import (SparseBatchNorm, SparseDownConv3d, SparseLinear, SparseReLU, SparseSyncBatchNorm,  # noqa: F401
                 SparseUpConv3d, SubMConv3d, cat_feats, convert_sync_batchnorm)
from .tensor import CoordinateSet, KernelMapCache, SparseTensor, pack_keys, unpack_keys  # noqa: F401
from .voxelize import batch_points, devoxelize, voxelize  # noqa: F401
