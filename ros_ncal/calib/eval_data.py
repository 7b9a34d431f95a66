"""Sample sources for ``ncal eval-calib``: KITTI object folders, the synthetic world, dataset shards."""
from __future__ import annotations

import os
from pathlib import Path

from ros_ncal.data.sample import Sample

_SHARED_DATA = Path(__file__).resolve().parents[2].parent / 'shared' / 'data'
DEFAULT_KITTI_DIR = Path(os.environ.get('NCAL_SHARED_DATA', _SHARED_DATA)) / 'kitti_object'


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
