"""Models: sparse conv engine, MinkUNet, ResNet(+FPN) image backbone, registry and checkpoints."""
from .checkpoint import (CHECKPOINT_SCHEMA_VERSION, CheckpointError, build_from_checkpoint,  # noqa: F401
                         load_checkpoint, save_checkpoint)
from .minkunet import MinkUNet  # noqa: F401
from .registry import build_model, load_model_config, register, registered_models  # noqa: F401
from .resnet import LoadReport, ResNet, ResNetFPN  # noqa: F401
from .sparse import SparseTensor, devoxelize, get_engine, voxelize  # noqa: F401
