"""Sample sources for ``ncal eval-calib``: KITTI object folders, KITTI raw drives, rosbag2 recordings, the synthetic
world, dataset shards."""
from __future__ import annotations

import os
from pathlib import Path

from ros_ncal.data.sample import Sample

_SHARED_DATA = Path(__file__).resolve().parents[2].parent / 'shared' / 'data'
DEFAULT_KITTI_DIR = Path(os.environ.get('NCAL_SHARED_DATA', _SHARED_DATA)) / 'kitti_object'
DEFAULT_KITTI_RAW_DRIVE = (Path(os.environ.get('NCAL_SHARED_DATA', _SHARED_DATA)) / 'kitti_raw' / '2011_09_26'
                           / '2011_09_26_drive_sfnd_sync')


def parse_frame_range(text: str | None, n: int) -> range:
    """'a:b' (half-open), 'a:' or None -> a range within [0, n); ValueError naming the text otherwise."""
    if not text:
        return range(n)
    try:
        a, b = (text.split(':') + [''])[:2]
        r = range(int(a) if a else 0, int(b) if b else n)
    except ValueError:
        raise ValueError(f'frame range {text!r}: expected A:B') from None
    if not (0 <= r.start < r.stop <= n):
        raise ValueError(f'frame range {text!r}: must lie within 0:{n} and be non-empty')
    return r


def load_kitti_raw_samples(drive_dir: str | Path = DEFAULT_KITTI_RAW_DRIVE, frames: str | None = None,
                           step: int = 1) -> tuple[list[Sample], list[str]]:
    """Frames ``frames`` ('a:b') of a KITTI raw drive, every ``step``-th -> (samples, ids 'drive/0000000057')."""
    from ros_ncal.data.readers.kitti_raw import open_kitti_raw_drive, read_kitti_raw_frame
    drive = open_kitti_raw_drive(drive_dir)
    idx = list(parse_frame_range(frames, len(drive.frames)))[::max(1, step)]
    return [read_kitti_raw_frame(drive, i) for i in idx], [f'{drive.name}/{drive.frames[i]}' for i in idx]


def load_rosbag_samples(path: str | Path, frames: str | None = None) -> tuple[list[Sample], list[str]]:
    """The readable camera-LiDAR pairs of a rosbag2 recording, in time order -> (samples, ids 'bag/i').
    A truth file beside the bag (``<bag>.truth.json``: T_cam_lidar) becomes the samples' nominal, so the
    evaluation perturbs the truth, never the bag's own /tf_static."""
    import json

    import numpy as np

    from ros_ncal.data.readers.rosbag import iter_rosbag_samples
    p = Path(path)
    samples = [s for s in iter_rosbag_samples(p) if isinstance(s, Sample)]
    if not samples:
        raise FileNotFoundError(f'{p}: no readable camera-LiDAR pairs')
    truth = p.parent / f'{p.name.rstrip("/")}.truth.json'
    if truth.is_file():
        T = np.asarray(json.loads(truth.read_text())['T_cam_lidar'], dtype=np.float64)
        samples = [s.replace(T_cam_lidar=T) for s in samples]
    idx = list(parse_frame_range(frames, len(samples)))
    return [samples[i] for i in idx], [f'{p.name}/{i}' for i in idx]


def load_kitti_samples(kitti_dir: str | Path = DEFAULT_KITTI_DIR, splits: tuple[str, ...] = ('training', 'testing'),
                       max_frames: int | None = None) -> tuple[list[Sample], list[str]]:
    """Frames of the split folders (sorted) -> (samples, ids like 'training/000000'). Unreadable frames are skipped."""
    from ros_ncal.data.readers.kitti import KittiReaderConfig, iter_kitti_samples
    from ros_ncal.data.shards import SkipRecord
    cfg = KittiReaderConfig(require_labels=False)
    samples, ids = [], []
    for split in splits:
        d = Path(kitti_dir) / split
        if not d.is_dir():
            continue
        for s in iter_kitti_samples(d, cfg):
            if isinstance(s, SkipRecord):
                continue
            samples.append(s)
            ids.append(f'{split}/{s.meta.get("frame", len(ids))}')
            if max_frames is not None and len(samples) >= max_frames:
                return samples, ids
    if not samples:
        raise FileNotFoundError(f'no readable KITTI frames under {kitti_dir} (splits {splits})')
    return samples, ids


def load_synthetic_samples(n: int, config_path: str | Path | None = None) -> tuple[list[Sample], list[str]]:
    """The first ``n`` samples of the synthetic world (config/synthetic.yaml by default)."""
    try:
        from ros_ncal.data.synthetic import SyntheticWorld, load_synthetic_config
    except ImportError as exc:
        raise RuntimeError(f'synthetic data is not available: {exc}') from exc
    world = SyntheticWorld(load_synthetic_config(config_path))
    return [world.sample(i) for i in range(n)], [f'synthetic/{i}' for i in range(n)]


def load_shard_samples(root: str | Path, n: int | None = None) -> tuple[list[Sample], list[str]]:
    """The first ``n`` samples of a dataset directory of shards (ros_ncal.data.shards)."""
    from ros_ncal.data.shards import ShardDataset
    ds = ShardDataset(root)
    count = len(ds) if n is None else min(n, len(ds))
    if count == 0:
        raise FileNotFoundError(f'{root}: no samples in the dataset shards')
    return [ds[i] for i in range(count)], [f'{Path(root).name}/{i}' for i in range(count)]
