"""One file per checkpoint: weights + the config that built them + schema version, written atomically."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

CHECKPOINT_SCHEMA_VERSION = 1
CHECKPOINT_FORMAT = 'ros_ncal.checkpoint'


@dataclass
class LoadReport:
    """Result of loading a state_dict: which keys matched, which were missing / unexpected / mis-shaped."""
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    shape_mismatch: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.shape_mismatch

    def __str__(self) -> str:
        return (f'loaded {len(self.loaded)} tensors; missing {len(self.missing)}; unexpected {len(self.unexpected)}; '
                f'shape mismatch {len(self.shape_mismatch)}'
                + (f' (first missing: {self.missing[:3]})' if self.missing else '')
                + (f' (mismatched: {self.shape_mismatch[:3]})' if self.shape_mismatch else ''))



def load_state_dict_report(module: nn.Module, state_dict: Dict[str, torch.Tensor],
                           ignore_prefixes: Sequence[str] = (), strict: bool = False) -> LoadReport:
    """Copy matching tensors into module; return a LoadReport. strict=True raises ValueError if not report.ok."""
    own = module.state_dict()
    report = LoadReport()
    to_load = {}
    for k, v in state_dict.items():
        if any(k.startswith(p) for p in ignore_prefixes):
            continue
        if k not in own:
            report.unexpected.append(k)
        elif tuple(own[k].shape) != tuple(v.shape):
            report.shape_mismatch.append(f'{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}')
        else:
            to_load[k] = v
            report.loaded.append(k)
    report.missing = [k for k in own if k not in to_load and not k.endswith('num_batches_tracked')]
    if strict and not report.ok:
        raise ValueError(f'pretrained weights do not match the model: {report}')
    module.load_state_dict(to_load, strict=False)
    return report


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


def load_weights_into(module: nn.Module, source: Union[str, Path, Mapping[str, torch.Tensor]], prefix: str = '',
                      strict: bool = False, map_location: Union[str, torch.device] = 'cpu') -> LoadReport:
    """Load the part of a checkpoint under ``prefix`` into ``module`` (e.g. a pretrained 3D backbone into a
    fine-tuning model: ``load_weights_into(model.backbone, 'pretrain.pt', prefix='backbone3d.')``).

    source: a checkpoint path (save_checkpoint format) or a state_dict. Returns a LoadReport;
    ``strict=True`` raises ValueError when tensors are missing or mis-shaped.
    """
    if isinstance(source, Mapping):
        state = dict(source)
    else:
        state = load_checkpoint(source, map_location)['model_state']
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise CheckpointError(f'no weights under prefix {prefix!r} in the checkpoint')
    return load_state_dict_report(module, state, strict=strict)
