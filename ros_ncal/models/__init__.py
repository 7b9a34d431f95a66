"""Models: sparse conv engine, MinkUNet, ResNet(+FPN) image backbone, registry and checkpoints."""
from .checkpoint import (CHECKPOINT_SCHEMA_VERSION, CheckpointError, LoadReport, build_from_checkpoint,  # noqa: F401
                         load_checkpoint, load_weights_into, save_checkpoint)
from .minkunet import MinkUNet, MinkUNetOutput  # noqa: F401
from .registry import build_model, load_model_config, register, registered_models  # noqa: F401
from .resnet import ResNet, ResNetFPN  # noqa: F401
from .sparse import SparseTensor, convert_sync_batchnorm, devoxelize, get_engine, voxelize  # noqa: F401
