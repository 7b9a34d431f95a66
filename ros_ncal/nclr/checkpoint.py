"""The full NCLR model on disk: written by pretraining, read by the calibrator.

The checkpoint is the models' checkpoint format (:mod:`ros_ncal.models.checkpoint`: weights, the config
that built them, a content hash) with config ``{'type': NCLR_MODEL_TYPE, 'nclr': NCLRConfig.to_dict()}``.
It lives in ``nclr`` (not in ``train``) so that inference never imports the training code.
"""
from __future__ import annotations

from pathlib import Path

from ros_ncal.models.checkpoint import load_checkpoint, save_checkpoint

from .config import NCLRConfig
from .network import NCLRNet

NCLR_MODEL_TYPE = 'NCLRNet'


def save_nclr(model: NCLRNet, cfg: NCLRConfig, path: Path, extra: dict | None = None) -> Path:
    """Full NCLR model + the config that built it (loaded by the calibrator)."""
    return save_checkpoint(path, model.state_dict(), {'type': NCLR_MODEL_TYPE, 'nclr': cfg.to_dict()}, extra or {})


def load_nclr(path: str | Path, map_location='cpu') -> tuple[NCLRNet, NCLRConfig, dict]:
    """-> (NCLRNet with the saved weights, its NCLRConfig, the checkpoint payload)."""
    payload = load_checkpoint(path, map_location)
    conf = payload.get('config') or {}
    if conf.get('type') != NCLR_MODEL_TYPE:
        raise ValueError(f'{path} is not an NCLR model checkpoint (type {conf.get("type")!r})')
    cfg = NCLRConfig.from_dict(conf['nclr'])
    model = NCLRNet(cfg.network)
    model.load_state_dict(payload['model_state'])
    return model, cfg, payload
