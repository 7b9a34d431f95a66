"""Where pretraining Samples come from: synthetic world, dataset shards, KITTI folders (mixable)."""
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


def build_source(spec: dict) -> CachedSource:
    """spec: {'kind': 'synthetic', 'indices': [a, b], 'config': yaml-or-null}
    | {'kind': 'shards', 'path': DIR, 'refresh_every': 0} | {'kind': 'kitti', 'root': DIR, 'frames': [...] or null}."""
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
    raise ValueError(f"unknown data source kind {kind!r} (synthetic, shards, kitti)")


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
