"""Packaged checkpoints (installed with the package, ``package_data`` in setup.py): the one place that knows
where they are. The nodes, ``ncal calibrate`` and ``ncal demo`` take their defaults from here."""
from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
NCLR_CALIB = ASSETS_DIR / 'nclr_calib.pt'         # the learned calibrator (calibrator node, ncal calibrate)
NCLR_BACKBONE = ASSETS_DIR / 'nclr_backbone.pt'   # its pretrained 3D backbone, for fine-tuning
SEG = ASSETS_DIR / 'seg.pt'                       # segmenter node
DET = ASSETS_DIR / 'det.pt'                       # detector node


def asset_path(name: str) -> Path:
    """``ASSETS_DIR / name`` (whether it exists is the caller's question)."""
    return ASSETS_DIR / name
