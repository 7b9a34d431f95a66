"""One file per checkpoint: weights + the config that built them + schema version + content hash, written
atomically.

Integrity: ``save_checkpoint`` stores ``content_sha256``, a SHA-256 over a canonical walk of everything
else in the payload (every tensor's dtype, shape and raw bytes; config and extra values; dict keys in
order). ``load_checkpoint`` recomputes it and raises :class:`CheckpointError` on a mismatch, so flipped
bytes in the weights never load silently (torch's zip reader does not check the entries' CRCs). Schema 1
files (written before the hash existed) still load, with a warning that corruption cannot be detected;
:func:`rehash_checkpoint` upgrades one in place.
"""
from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

CHECKPOINT_SCHEMA_VERSION = 2       # 2: content_sha256 (verified at load); 1: no hash (legacy, loads with a warning)
CHECKPOINT_FORMAT = 'ros_ncal.checkpoint'
HASH_KEY = 'content_sha256'
HASHED_SINCE_VERSION = 2


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
    """A checkpoint file is missing, unreadable, corrupt (content hash mismatch), or not a ros_ncal checkpoint
    of a supported schema."""


def _feed(h, obj: Any) -> None:
    """Update hash ``h`` with a canonical, type-tagged encoding of ``obj`` (what a weights-only load returns)."""
    if obj is None:
        h.update(b'N')
    elif isinstance(obj, bool):
        h.update(b'B1' if obj else b'B0')
    elif isinstance(obj, int):
        _tagged(h, b'I', str(obj).encode())
    elif isinstance(obj, float):
        _tagged(h, b'F', obj.hex().encode())
    elif isinstance(obj, str):
        _tagged(h, b'S', obj.encode('utf-8', 'surrogatepass'))
    elif isinstance(obj, (bytes, bytearray)):
        _tagged(h, b'Y', bytes(obj))
    elif isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.layout != torch.strided or t.is_quantized:
            raise TypeError(f'checkpoint hash: unsupported tensor layout {t.layout}')
        t = t.cpu().contiguous()
        _tagged(h, b'T', f'{t.dtype}|{tuple(t.shape)}'.encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        if a.dtype.hasobject:
            raise TypeError('checkpoint hash: object arrays are not supported')
        _tagged(h, b'A', f'{a.dtype.str}|{a.shape}'.encode())
        h.update(memoryview(a).cast('B'))
    elif isinstance(obj, np.generic):
        _feed(h, np.asarray(obj))
    elif isinstance(obj, Mapping):
        _tagged(h, b'D', str(len(obj)).encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        _tagged(h, b'L' if isinstance(obj, list) else b'U', str(len(obj)).encode())
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, (torch.dtype, torch.device)):
        _tagged(h, b'O', str(obj).encode())
    else:
        raise TypeError(f'checkpoint hash: cannot store a {type(obj).__name__} (use tensors, arrays, numbers, '
                        'strings, lists, tuples, dicts)')


def _tagged(h, tag: bytes, data: bytes) -> None:
    h.update(tag + struct.pack('<Q', len(data)) + data)


def content_hash(payload: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint payload without its ``content_sha256`` entry (the value stored in it)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != HASH_KEY})
    return h.hexdigest()


def save_checkpoint(path: Union[str, Path], model_state: Mapping[str, torch.Tensor],
                    config: Optional[Mapping[str, Any]] = None, extra: Optional[Mapping[str, Any]] = None) -> Path:
    """Write {format, schema_version, config, model_state, extra} to ``path`` atomically.

    model_state: a state_dict (tensors are moved to CPU); config: the model config ({'type': ..., ...})
    that ``build_model`` accepts; extra: anything else picklable-safe (optimizer state, epoch, metrics).
    Written to a temporary file in the same folder, fsynced, then ``os.replace``d: a crash leaves either
    the old file or the new one, never a partial file. The payload carries ``content_sha256``
    (:func:`content_hash`), verified by :func:`load_checkpoint`.
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
    payload[HASH_KEY] = content_hash(payload)
    _write_atomic(path, payload)
    return path


def _write_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    # mkstemp makes the file 0600; keep the mode of the file replaced, else a readable 0644 (installed assets)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=str(path.parent))
    try:
        os.fchmod(fd, mode)
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


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = 'cpu') -> Dict[str, Any]:
    """Read a checkpoint written by save_checkpoint -> dict with config, model_state, extra, schema_version.

    Weights-only unpickling (no code runs). Raises CheckpointError when the file is missing, unreadable,
    foreign, of a newer schema, or corrupt (its content hash does not match); a schema-1 file (no hash)
    loads with a RuntimeWarning.
    """
    payload = _read_payload(path, map_location)
    version = payload['schema_version']
    if version >= HASHED_SINCE_VERSION:
        verify_content_hash(payload, path)
    else:
        warnings.warn(f'{path}: checkpoint schema {version} carries no content hash, so corruption cannot be '
                      'detected; re-save it with ros_ncal.models.checkpoint.rehash_checkpoint', RuntimeWarning,
                      stacklevel=2)
    return payload


def _read_payload(path: Union[str, Path], map_location) -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'checkpoint not found: {path}')
    try:
        payload = torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f'cannot read checkpoint {path} (corrupt, truncated or not a torch file): '
                              f'{first}') from exc
    if not isinstance(payload, dict) or payload.get('format') != CHECKPOINT_FORMAT:
        raise CheckpointError(f'{path} is not a ros_ncal checkpoint (no format marker)')
    version = payload.get('schema_version')
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= CHECKPOINT_SCHEMA_VERSION:
        raise CheckpointError(f'{path}: checkpoint schema version {version!r} is not supported '
                              f'(1..{CHECKPOINT_SCHEMA_VERSION})')
    return payload


def verify_content_hash(payload: Mapping[str, Any], path: Union[str, Path] = '<checkpoint>') -> str:
    """Recompute the payload's content hash; CheckpointError unless it equals the stored one. Returns it."""
    stored = payload.get(HASH_KEY)
    if not isinstance(stored, str):
        raise CheckpointError(f'{path}: checkpoint schema {payload.get("schema_version")} must carry a '
                              f'{HASH_KEY}, found {type(stored).__name__}: the file is damaged')
    try:
        actual = content_hash(payload)
    except TypeError as exc:
        raise CheckpointError(f'{path}: cannot verify the checkpoint: {exc}') from exc
    if actual != stored:
        raise CheckpointError(f'{path}: checkpoint is corrupt: content hash mismatch (stored sha256 {stored[:16]}..., '
                              f'contents {actual[:16]}...); restore the file from its source or retrain')
    return actual


def rehash_checkpoint(src: Union[str, Path], dst: Union[str, Path, None] = None) -> Path:
    """Re-save a checkpoint (e.g. a schema-1 file without hash) in the current schema, tensors unchanged.

    dst: where to write (default: replace ``src`` atomically). A schema-2 file is verified first, so a
    corrupt file is never blessed with a fresh hash.
    """
    payload = _read_payload(src, 'cpu')
    if payload['schema_version'] >= HASHED_SINCE_VERSION:
        verify_content_hash(payload, src)
    return save_checkpoint(dst if dst is not None else src, payload['model_state'], payload.get('config'),
                           payload.get('extra'))


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
