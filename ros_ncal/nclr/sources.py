"""Where pretraining Samples come from: synthetic world, dataset shards, KITTI object folders, KITTI raw
drives and rosbag2 recordings (mixable). Real recordings train self-supervised: only their recorded
extrinsic is used, as the truth the pretext perturbation hides."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np

from ros_ncal.data.sample import Sample


class CachedSource:
    """A finite list of Samples behind a loader function, with a bounded LRU cache."""

    def __init__(self, name: str, length: int, load: Callable[[int], Sample], cache_size: int = 512):
        if length <= 0:
            raise ValueError(f'data source {name!r} has no samples')
        self.name, self.length, self._load, self._cache_size = name, length, load, cache_size
        self._cache: OrderedDict[int, Sample] = OrderedDict()

    def __len__(self) -> int:
        return self.length

    def get(self, i: int) -> Sample:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        s = self._load(i)
        self._cache[i] = s
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return s


class ShardsSource(CachedSource):
    """A shard dataset; with ``refresh_every`` > 0 it rescans the folder every that many draws, so a
    dataset that is still being written (e.g. by ``ncal prepare`` or the collector) grows under training."""

    def __init__(self, path: str, cache_size: int = 1024, refresh_every: int = 0):
        self.path, self.refresh_every, self._draws = path, int(refresh_every), 0
        self._open()
        super().__init__(f'shards:{path}', len(self.ds), lambda i: self.ds[i], cache_size)

    def _open(self) -> None:
        from ros_ncal.data.shards import ShardDataset
        self.ds = ShardDataset(self.path)
        self.length = len(self.ds)

    def get(self, i: int) -> Sample:
        self._draws += 1
        if self.refresh_every and self._draws % self.refresh_every == 0:
            self._open()  # shard order is stable (sorted names), so cached indices stay valid
        return super().get(i)


def _index_range(spec: dict, n: int, what: str) -> list[int]:
    """spec 'frames': [a, b] (half-open, a contiguous block: neighbouring frames of a drive are near copies,
    so held-out frames must be a separate block) or null for all n."""
    fr = spec.get('frames')
    if fr is None:
        return list(range(n))
    if len(fr) != 2 or not 0 <= int(fr[0]) < int(fr[1]) <= n:
        raise ValueError(f'{what}: frames must be [a, b] with 0 <= a < b <= {n}, got {fr}')
    return list(range(int(fr[0]), int(fr[1])))


def build_source(spec: dict) -> CachedSource:
    """spec: {'kind': 'synthetic', 'indices': [a, b], 'config': yaml-or-null}
    | {'kind': 'shards', 'path': DIR, 'refresh_every': 0} | {'kind': 'kitti', 'root': DIR, 'frames': [...] or null}
    | {'kind': 'kitti_raw', 'drive': DRIVE_DIR, 'frames': [a, b] or null}
    | {'kind': 'rosbag', 'path': BAG, 'frames': [a, b] or null} (the bag's readable pairs, in time order)."""
    kind = spec.get('kind')
    if kind == 'synthetic':
        from ros_ncal.data.synthetic import SyntheticWorld
        from ros_ncal.data.synthetic.config import load_config
        cfg = load_config(spec['config']) if spec.get('config') else None
        world = SyntheticWorld(cfg)
        a, b = spec.get('indices', [0, 1000])
        return CachedSource(f'synthetic[{a}:{b}]', b - a, lambda i: world.sample(a + i), spec.get('cache', 256))
    if kind == 'shards':
        return ShardsSource(spec['path'], spec.get('cache', 1024), spec.get('refresh_every', 0))
    if kind == 'kitti':
        from ros_ncal.data.readers.kitti import kitti_frames, read_kitti_frame
        root = Path(spec['root'])
        frames = spec.get('frames') or kitti_frames(root)
        return CachedSource(f'kitti:{root}', len(frames), lambda i: read_kitti_frame(root, frames[i]), 64)
    if kind == 'kitti_raw':
        from ros_ncal.data.readers.kitti_raw import open_kitti_raw_drive, read_kitti_raw_frame
        drive = open_kitti_raw_drive(spec['drive'])
        idx = _index_range(spec, len(drive.frames), f"kitti_raw source {spec['drive']}")
        return CachedSource(f"kitti_raw:{drive.name}[{idx[0]}:{idx[-1] + 1}]", len(idx),
                            lambda i: read_kitti_raw_frame(drive, idx[i]), spec.get('cache', 128))
    if kind == 'rosbag':
        from ros_ncal.data.readers.rosbag import iter_rosbag_samples
        samples = [s for s in iter_rosbag_samples(spec['path']) if isinstance(s, Sample)]
        idx = _index_range(spec, len(samples), f"rosbag source {spec['path']}")
        samples = [samples[i] for i in idx]
        return CachedSource(f"rosbag:{spec['path']}", len(samples), lambda i: samples[i], len(samples) or 1)
    raise ValueError(f"unknown data source kind {kind!r} (synthetic, shards, kitti, kitti_raw, rosbag)")


class MixedSource:
    """Draws samples from several sources with weights; each DDP rank sees a disjoint index subset."""

    def __init__(self, specs: list[dict], rank: int = 0, world_size: int = 1):
        if not specs:
            raise ValueError('no data sources configured')
        self.sources = [build_source(s) for s in specs]
        w = np.array([float(s.get('weight', 1.0)) for s in specs])
        self.p = w / w.sum()
        self.rank, self.world = rank, world_size

    def draw(self, rng: np.random.Generator) -> Sample:
        src = self.sources[rng.choice(len(self.sources), p=self.p)]
        n = len(src)
        own = np.arange(self.rank, n, self.world) if n >= self.world else np.arange(n)
        return src.get(int(rng.choice(own)))
