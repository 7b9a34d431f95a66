"""Helpers shared by several test modules (test modules never import each other).

Fixtures shared by several modules live in conftest.py; the ROS graph harness in node_harness.py.
"""
from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import numpy as np

from ros_ncal.data.sample import Sample

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / 'config' / 'nclr' / 'tiny_test.yaml'   # the smallest NCLR config: tests train and load it in seconds


def wait_for(pred, timeout_s: float = 20.0, period_s: float = 0.02) -> bool:
    """Poll ``pred()`` until it holds (True) or ``timeout_s`` passed (then its last value, as a bool)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(period_s)
    return bool(pred())


def make_sample(i: int, n: int = 200, hw=(24, 32), labels=True) -> Sample:
    rng = np.random.default_rng(i)
    H, W = hw
    kw = {}
    if labels:
        kw = dict(point_labels=rng.integers(0, 19, n), instance_ids=rng.integers(0, 4, n),
                  boxes=np.array([[5 + i, 1, -1, 4, 2, 1.5, 0.3]]), box_labels=[i % 3],
                  pixel_labels=rng.integers(0, 300, (H, W)))
    return Sample(points=rng.normal(size=(n + i, 4)).astype(np.float32) if not labels else
                  rng.normal(size=(n, 4)).astype(np.float32),
                  image=rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                  K=np.array([[40.0, 0, W / 2], [0, 40.0, H / 2], [0, 0, 1]]),
                  T_cam_lidar=np.array([[0, -1, 0, 0.1], [0, 0, -1, -0.2], [1, 0, 0, -0.3], [0, 0, 0, 1.0]]),
                  stamp_ns=1_000_000 * i, image_stamp_ns=1_000_000 * i + 7, frame_ids=('velo', 'cam2_optical'),
                  meta={'index': i, 'source': 'test'}, **kw)


class DiskFull:
    """Injects ENOSPC into os.fsync / os.write-level flushes of files under ``root`` while ``full`` is set
    (what a full filesystem answers when the data reaches it); other files are untouched."""

    def __init__(self, monkeypatch, root: Path):
        self.root = str(Path(root).resolve())
        self.full = False
        self.hits = 0
        real_fsync = os.fsync

        def fsync(fd):
            if self.full:
                try:
                    path = os.readlink(f'/proc/self/fd/{fd}')
                except OSError:
                    path = ''
                if path.startswith(self.root) and not os.path.isdir(path):
                    self.hits += 1
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            return real_fsync(fd)
        monkeypatch.setattr(os, 'fsync', fsync)
