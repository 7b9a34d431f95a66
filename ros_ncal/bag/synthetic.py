"""Synthetic drive -> rosbag2 with a deliberately WRONG nominal extrinsic (the demo's test bag).

``write_synthetic_bag(out_dir, spec)`` renders ``spec.n_frames`` consecutive frames of
``SyntheticWorld(cfg, T_cam_lidar=wrong).drive(spec.drive_seed, n)`` into ``out_dir/<name>`` with the
topics and frames of the KITTI bags (:class:`ros_ncal.bag.BagTopics`). ``/tf_static`` carries the
wrong nominal; the truth goes to ``out_dir/<name>.truth.json`` beside the bag, never into a message.

The wrong nominal is the true ``T_cam_lidar`` with its rotation turned by exactly ``error_deg`` about
a seeded random axis (``R = R_err @ R_true``) and its translation moved by exactly ``error_m`` along a
seeded random direction, so :func:`ros_ncal.geometry.pose_error` (nominal vs truth) reads exactly
(``error_deg``, ``error_m``).

Rendering costs seconds per frame, so a bag whose truth file records the same parameters (and the
same synthetic config contents) is reused instead of rendered again.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ros_ncal.geometry import pose_error

from .perturbed import read_truth, truth_path, wrong_extrinsic, write_truth  # noqa: F401 (read_truth re-exported)
from .topics import BagTopics
from .writer import STORAGE_SUFFIX, BagFrame, SensorBagWriter

DEFAULT_START_NS = 1_700_000_000_000_000_000   # drive stamps start at 0; a zero stamp is invalid on ROS
TRUTH_SCHEMA = 1


@dataclass
class SyntheticBagSpec:
    """What to render. ``config``: synthetic world YAML ('' = config/synthetic.yaml)."""
    config: str = ''
    drive_seed: int = 3
    n_frames: int = 30
    error_deg: float = 5.0
    error_m: float = 0.3
    error_seed: int = 0
    storage: str = 'mcap'
    start_ns: int = DEFAULT_START_NS

    def validate(self) -> 'SyntheticBagSpec':
        if self.n_frames < 1:
            raise ValueError(f'synthetic bag: n_frames must be >= 1, got {self.n_frames}')
        if not 0.0 <= self.error_deg < 180.0:
            raise ValueError(f'synthetic bag: error_deg must be in [0, 180), got {self.error_deg}')
        if self.error_m < 0.0:
            raise ValueError(f'synthetic bag: error_m must be >= 0, got {self.error_m}')
        if self.storage not in STORAGE_SUFFIX:
            raise ValueError(f'synthetic bag: storage must be one of {sorted(STORAGE_SUFFIX)}, got {self.storage!r}')
        if self.start_ns <= 0:
            raise ValueError(f'synthetic bag: start_ns must be > 0, got {self.start_ns}')
        return self


def _config_digest(config_path: Path) -> str:
    return hashlib.sha256(config_path.read_bytes()).hexdigest()[:16]


def _resolve_config(spec: SyntheticBagSpec) -> Path:
    from ros_ncal.data.synthetic.config import DEFAULT_CONFIG_PATH
    path = Path(spec.config) if spec.config else Path(DEFAULT_CONFIG_PATH)
    if not path.is_file():
        raise FileNotFoundError(f'synthetic config not found: {path}')
    return path


def _cache_key(spec: SyntheticBagSpec, config_path: Path, topics: BagTopics) -> dict:
    return {'schema': TRUTH_SCHEMA, 'spec': {**asdict(spec), 'config': str(config_path.resolve())},
            'config_sha256_16': _config_digest(config_path), 'topics': asdict(topics)}


def write_synthetic_bag(out_dir: str | Path, spec: SyntheticBagSpec | None = None, name: str = 'synthetic_drive',
                        topics: BagTopics | None = None, reuse: bool = True, log=None) -> tuple[Path, dict, dict]:
    """Render (or reuse) the synthetic drive bag -> (bag directory, per-topic counts, truth dict).

    truth dict keys: ``T_cam_lidar_true``, ``T_cam_lidar_nominal`` (4x4 lists), ``error_deg``,
    ``error_m`` (measured nominal vs truth), ``key`` (the parameters), ``counts``, ``stamps_ns``,
    ``render_s``, ``reused`` (bool).
    """
    from ros_ncal.data.synthetic import SyntheticWorld, camera_extrinsic, load_synthetic_config
    spec = (spec or SyntheticBagSpec()).validate()
    topics = topics or BagTopics()
    config_path = _resolve_config(spec)
    out_dir = Path(out_dir)
    bag_dir = out_dir / name
    key = _cache_key(spec, config_path, topics)
    tpath = truth_path(bag_dir)
    if reuse and tpath.is_file() and bag_dir.is_dir():
        try:
            truth = json.loads(tpath.read_text())
        except json.JSONDecodeError:
            truth = {}
        storage_file = bag_dir / f'{name}{STORAGE_SUFFIX[spec.storage]}'
        if truth.get('key') == key and storage_file.is_file():
            truth['reused'] = True
            return bag_dir, dict(truth['counts']), truth
    cfg = load_synthetic_config(config_path)
    T_true = camera_extrinsic(cfg.camera)
    T_wrong = wrong_extrinsic(T_true, spec.error_deg, spec.error_m, spec.error_seed)
    if bag_dir.exists():
        shutil.rmtree(bag_dir)
    tpath.unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = SyntheticWorld(cfg, T_cam_lidar=T_wrong)
    t0 = time.monotonic()
    stamps = []
    with SensorBagWriter(bag_dir, spec.storage, topics) as writer:
        for k, sample in enumerate(world.drive(spec.drive_seed, spec.n_frames)):
            true_in_sample = np.asarray(sample.meta.get('T_cam_lidar_true', sample.T_cam_lidar))
            if not np.allclose(true_in_sample, T_true, atol=1e-9):
                raise RuntimeError('synthetic world rendered with an extrinsic other than camera_extrinsic(cfg)')
            stamp = spec.start_ns + int(sample.stamp_ns)
            image_stamp = spec.start_ns + int(sample.image_stamp_ns if sample.image_stamp_ns is not None
                                              else sample.stamp_ns)
            writer.write_frame(BagFrame(points=sample.points, image=sample.image, K=sample.K,
                                        T_cam_lidar=sample.T_cam_lidar, stamp_ns=stamp, image_stamp_ns=image_stamp))
            stamps.append(stamp)
            if log is not None and ((k + 1) % 5 == 0 or k + 1 == spec.n_frames):
                log(f'rendered synthetic frame {k + 1}/{spec.n_frames} ({time.monotonic() - t0:.1f} s)')
        counts = dict(writer.counts)
    rot, trans = pose_error(T_wrong, T_true)
    truth = {'source': 'synthetic', 'key': key, 'T_cam_lidar_true': T_true.tolist(),
             'T_cam_lidar_nominal': T_wrong.tolist(),
             'error_deg': rot, 'error_m': trans, 'counts': counts, 'stamps_ns': stamps,
             'image_size': [int(cfg.camera.width), int(cfg.camera.height)],
             'render_s': round(time.monotonic() - t0, 2), 'frame_rate_hz': float(cfg.frame_rate_hz)}
    write_truth(bag_dir, truth)   # written last: its presence marks a complete bag
    truth['reused'] = False
    return bag_dir, counts, truth
