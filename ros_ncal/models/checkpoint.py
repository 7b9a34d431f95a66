"""One file per checkpoint: weights + the config that built them + schema version, written atomically."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch

CHECKPOINT_SCHEMA_VERSION = 1
CHECKPOINT_FORMAT = 'ros_ncal.checkpoint'


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or not a ros_ncal checkpoint of a supported schema."""


def save_checkpoint(path: Union[str, Path], model_state: Mapping[str, torch.Tensor],
                    config: Optional[Mapping[str, Any]] = None, extra: Optional[Mapping[str, Any]] = None) -> Path:
    """Write {format, schema_version, config, model_state, extra} to ``path`` atomically.

    model_state: a state_dict (tensors are moved to CPU); config: the model config ({'type': ..., ...})
    that ``build_model`` accepts; extra: anything else picklable-safe (optimizer state, epoch, metrics).
    Written to a temporary file in the same folder, fsynced, then ``os.replace``d: a crash leaves either
    the old file or the new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        'format': CHECKPOINT_FORMAT,
        'schema_version': CHECKPOINT_SCHEMA_VERSION,
        'config': dict(config) if config is not None else None,
        'model_state': {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in model_state.items()},
        'extra': dict(extra) if extra is not None else {},
    }
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=str(path.parent))
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(str(path.parent), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = 'cpu') -> Dict[str, Any]:
    """Read a checkpoint written by save_checkpoint -> dict with config, model_state, extra, schema_version."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'checkpoint not found: {path}')
    try:
        payload = torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / foreign files
        raise CheckpointError(f'cannot read checkpoint {path}: {exc}') from exc
    if not isinstance(payload, dict) or payload.get('format') != CHECKPOINT_FORMAT:
        raise CheckpointError(f'{path} is not a ros_ncal checkpoint (no format marker)')
    version = payload.get('schema_version')
    if not isinstance(version, int) or version > CHECKPOINT_SCHEMA_VERSION:
        raise CheckpointError(f'{path}: checkpoint schema version {version!r} is newer than supported '
                              f'({CHECKPOINT_SCHEMA_VERSION})')
    return payload


def build_from_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = 'cpu',
                          strict: bool = True):
    """Rebuild the model from the stored config and load its weights; returns (model, payload)."""
    from .registry import build_model
    payload = load_checkpoint(path, map_location)
    if not payload.get('config'):
        raise CheckpointError(f'{path}: checkpoint stores no model config; cannot rebuild the model')
    model = build_model(payload['config'])
    model.load_state_dict(payload['model_state'], strict=strict)
    return model.to(map_location), payload
