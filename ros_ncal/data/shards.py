"""Append-only WebDataset-style tar shards of Samples, crash-safe, streamable across DDP ranks and workers.

Layout of a dataset directory::

    manifest.json          schema version, sensors, class names, per-shard sample counts, total
    shard-000000.tar       committed shards (complete, fsynced, atomically renamed)
    shard-000001.tar
    .shard-000002.tar.tmp  a shard being written (never read; a leftover after a crash is reported and ignored)
    .writer.lock           held (flock) by the one live ShardWriter

Each sample is a group of tar members sharing a key (the global sample number, 9 digits)::

    000000042.meta.json        K, T_cam_lidar, stamps, frame ids, image size, point count, meta dict
    000000042.points.npy       (N, 4) float32
    000000042.image.png|.jpg   RGB (PNG lossless, or JPEG at ``jpeg_quality``)
    000000042.labels.npy       optional (N,) int32 point_labels
    000000042.instances.npy    optional (N,) int32 instance_ids
    000000042.boxes.npy        optional (M, 7) float32
    000000042.box_labels.npy   optional (M,) int32
    000000042.pixel_labels.png optional (H, W) uint16 PNG

Durability (``durability='sample'``, the default): every ``append`` commits. The open shard is rewritten
as ``<its committed bytes> + <new sample>`` into a temporary file, which is fsynced and atomically
``os.replace``-d over ``shard-XXXXXX.tar``, then the directory is fsynced and the manifest rewritten the
same way. When ``append`` returns the sample is on disk and visible; a crash at any moment loses at most
the sample in flight and never exposes a torn shard. The price is re-copying the open shard on each
append (about (samples_per_shard + 1) / 2 times the data for a full shard), so the default shard is
small (4 samples). ``durability='shard'`` streams samples into the temporary file and commits only full
shards (and the last one on ``close``): one copy of the data, but a crash loses the unfinished shard;
meant for offline conversion that can simply be rerun (``ncal prepare``).

Reading never trusts the manifest alone: shards are listed on disk and each is checked structurally
(tar headers intact, member sizes within the file, every sample group complete and meta.json parseable).
A torn or corrupt shard, a stray temporary file or a manifest/disk disagreement is reported in
``ShardDataset.skipped`` / ``ShardDataset.notes`` with a warning; a sample that fails to decode at
iteration time is skipped and reported the same way. Nothing here crashes the whole read.
"""
from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import random
import re
import tarfile
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image

from .sample import Sample

SCHEMA_VERSION = 1
MANIFEST_NAME = 'manifest.json'
LOCK_NAME = '.writer.lock'
SHARD_RE = re.compile(r'^shard-(\d{6})\.tar$')
TMP_SUFFIX = '.tmp'
KEY_DIGITS = 9
_BLOCK = tarfile.BLOCKSIZE  # 512
_EOF = b'\0' * (2 * _BLOCK)

REQUIRED_MEMBERS = ('meta.json', 'points.npy')
IMAGE_MEMBERS = ('image.png', 'image.jpg')
OPTIONAL_MEMBERS = ('labels.npy', 'instances.npy', 'boxes.npy', 'box_labels.npy', 'pixel_labels.png')


class ShardError(RuntimeError):
    """A dataset directory or shard that cannot be written or read as asked."""


class DatasetLockedError(ShardError):
    """Another live ShardWriter holds the dataset directory."""


# ----------------------------------------------------------------------------------------------------------- encoding

def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _png_bytes(img: Image.Image, compress_level: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format='PNG', compress_level=compress_level)
    return buf.getvalue()


def encode_sample(sample: Sample, image_format: str = 'png', jpeg_quality: int = 95,
                  png_compress_level: int = 1) -> dict[str, bytes]:
    """Sample -> {member suffix: bytes} (the members of one tar group, without the key)."""
    if image_format not in ('png', 'jpg'):
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    H, W = sample.image_hw
    optional = []
    members: dict[str, bytes] = {'points.npy': _npy_bytes(sample.points)}
    img = Image.fromarray(sample.image)
    if image_format == 'png':
        members['image.png'] = _png_bytes(img, png_compress_level)
    else:
        buf = io.BytesIO()
        img.save(buf, format='JPEG', quality=int(jpeg_quality))
        members['image.jpg'] = buf.getvalue()
    if sample.point_labels is not None:
        members['labels.npy'] = _npy_bytes(sample.point_labels.astype(np.int32))
        optional.append('labels.npy')
    if sample.instance_ids is not None:
        members['instances.npy'] = _npy_bytes(sample.instance_ids.astype(np.int32))
        optional.append('instances.npy')
    if sample.boxes is not None:
        members['boxes.npy'] = _npy_bytes(sample.boxes.astype(np.float32))
        members['box_labels.npy'] = _npy_bytes(sample.box_labels.astype(np.int32))
        optional += ['boxes.npy', 'box_labels.npy']
    if sample.pixel_labels is not None:
        pl = sample.pixel_labels
        if pl.size and (pl.min() < 0 or pl.max() > 65535):
            raise ValueError(f'pixel_labels: values must lie in [0, 65535] for a uint16 PNG, '
                             f'got [{pl.min()}, {pl.max()}]')
        members['pixel_labels.png'] = _png_bytes(Image.fromarray(pl.astype(np.uint16)), png_compress_level)
        optional.append('pixel_labels.png')
    meta = {
        'K': sample.K.tolist(),
        'T_cam_lidar': sample.T_cam_lidar.tolist(),
        'stamp_ns': int(sample.stamp_ns),
        'image_stamp_ns': int(sample.image_stamp_ns),
        'frame_ids': list(sample.frame_ids),
        'image_hw': [H, W],
        'num_points': sample.num_points,
        'num_boxes': 0 if sample.boxes is None else int(len(sample.boxes)),
        'image_member': 'image.png' if image_format == 'png' else 'image.jpg',
        'optional_members': optional,
        'crc32': {name: zlib.crc32(data) for name, data in members.items()},
        'meta': sample.meta,
    }
    try:
        members['meta.json'] = json.dumps(meta, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f'Sample.meta is not JSON-serialisable (finite numbers, str, list, dict only): {exc}') from exc
    return members


def _load_npy(data: bytes, name: str) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def decode_sample(members: dict[str, bytes]) -> Sample:
    """{member suffix: bytes} -> validated Sample. Raises ShardError naming what is missing or inconsistent."""
    for req in REQUIRED_MEMBERS:
        if req not in members:
            raise ShardError(f'sample group lacks {req}')
    meta = json.loads(members['meta.json'])
    image_member = meta.get('image_member', 'image.png')
    if image_member not in members:
        raise ShardError(f'sample group lacks {image_member}')
    for opt in meta.get('optional_members', []):
        if opt not in members:
            raise ShardError(f'sample group lacks {opt} announced by meta.json')
    for name, crc in meta.get('crc32', {}).items():
        if name in members and zlib.crc32(members[name]) != crc:
            raise ShardError(f'{name}: checksum mismatch (corrupted bytes)')
    with Image.open(io.BytesIO(members[image_member])) as im:
        im.load()
        image = np.asarray(im.convert('RGB'))
    if list(image.shape[:2]) != list(meta['image_hw']):
        raise ShardError(f'image is {image.shape[:2]} but meta.json says {meta["image_hw"]}')
    points = _load_npy(members['points.npy'], 'points.npy')
    if points.ndim != 2 or len(points) != meta['num_points']:
        raise ShardError(f'points.npy has shape {points.shape}, meta.json says {meta["num_points"]} points')
    kw: dict[str, Any] = {}
    if 'labels.npy' in members:
        kw['point_labels'] = _load_npy(members['labels.npy'], 'labels.npy')
    if 'instances.npy' in members:
        kw['instance_ids'] = _load_npy(members['instances.npy'], 'instances.npy')
    if 'boxes.npy' in members:
        kw['boxes'] = _load_npy(members['boxes.npy'], 'boxes.npy')
        kw['box_labels'] = _load_npy(members['box_labels.npy'], 'box_labels.npy') if 'box_labels.npy' in members else None
    if 'pixel_labels.png' in members:
        with Image.open(io.BytesIO(members['pixel_labels.png'])) as im:
            im.load()
            kw['pixel_labels'] = np.asarray(im).astype(np.int32)
    return Sample(points=points, image=image, K=np.asarray(meta['K']), T_cam_lidar=np.asarray(meta['T_cam_lidar']),
                  stamp_ns=meta['stamp_ns'], image_stamp_ns=meta['image_stamp_ns'],
                  frame_ids=tuple(meta['frame_ids']), meta=meta.get('meta', {}), **kw)


def _tar_group_bytes(key: str, members: dict[str, bytes], mtime: float) -> bytes:
    """The raw tar bytes (headers + padded data, no end-of-archive) of one sample group; meta.json last."""
    out = bytearray()
    order = [m for m in members if m != 'meta.json'] + ['meta.json']  # meta last: a complete group ends with it
    for suffix in order:
        data = members[suffix]
        info = tarfile.TarInfo(f'{key}.{suffix}')
        info.size = len(data)
        info.mtime = int(mtime)
        info.mode = 0o644
        out += info.tobuf(format=tarfile.USTAR_FORMAT)
        out += data
        pad = (-len(data)) % _BLOCK
        if pad:
            out += b'\0' * pad
    return bytes(out)


# --------------------------------------------------------------------------------------------------- fs primitives

def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; on any failure (ENOSPC, EIO) the temporary file is removed."""
    tmp = path.with_name(f'.{path.name}{TMP_SUFFIX}')
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(path.parent)


def shard_name(index: int) -> str:
    return f'shard-{index:06d}.tar'


def read_manifest(root: str | Path) -> dict | None:
    """The manifest dict, or None when absent. Raises ShardError when present but unreadable."""
    p = Path(root) / MANIFEST_NAME
    if not p.exists():
        return None
    try:
        m = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ShardError(f'{p}: unreadable manifest ({exc})') from exc
    if not isinstance(m, dict) or 'schema_version' not in m:
        raise ShardError(f'{p}: not a ros_ncal manifest (no schema_version)')
    if m['schema_version'] > SCHEMA_VERSION:
        raise ShardError(f'{p}: schema_version {m["schema_version"]} is newer than this code ({SCHEMA_VERSION})')
    return m


# ----------------------------------------------------------------------------------------------------------- writer

class ShardWriter:
    """Append Samples to a shard dataset directory (created if missing, appended to if it exists).

    root: dataset directory.
    samples_per_shard: maximum samples in one shard (>= 1).
    image_format: 'png' (lossless) or 'jpg' (``jpeg_quality``).
    class_names: JSON-serialisable class names (e.g. {'points': [...], 'boxes': [...]}); stored in the manifest.
    sensors: JSON-serialisable sensor description (frames, topics, models); stored in the manifest.
    durability: 'sample' (each append is durable and visible on return) or 'shard' (commit full shards only).
    source: free-form string recorded in the manifest (e.g. 'kitti', 'collector').

    Only one live writer per directory (an flock on ``.writer.lock``; released by the OS if the process dies).
    Reopening continues the shard and sample numbering; a leftover temporary file of a crashed writer is
    reported (``self.recovered``) and removed. Use as a context manager or call ``close()``.
    """

    def __init__(self, root: str | Path, samples_per_shard: int = 4, image_format: str = 'png',
                 jpeg_quality: int = 95, class_names: Any = None, sensors: Any = None,
                 durability: str = 'sample', source: str | None = None, png_compress_level: int = 1):
        if samples_per_shard < 1:
            raise ValueError(f'samples_per_shard must be >= 1, got {samples_per_shard}')
        if image_format not in ('png', 'jpg'):
            raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
        if not 1 <= int(jpeg_quality) <= 100:
            raise ValueError(f'jpeg_quality must be in [1, 100], got {jpeg_quality}')
        if durability not in ('sample', 'shard'):
            raise ValueError(f"durability must be 'sample' or 'shard', got {durability!r}")
        self.root = Path(root)
        self.samples_per_shard = int(samples_per_shard)
        self.image_format = image_format
        self.jpeg_quality = int(jpeg_quality)
        self.png_compress_level = int(png_compress_level)
        self.durability = durability
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(str(self.root / LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise DatasetLockedError(f'{self.root}: another ShardWriter is writing this dataset') from exc
            raise
        self._closed = False
        self.recovered: list[str] = []
        # the open shard: index, committed byte length (without EOF), samples in it, tmp file for 'shard' mode
        self._open_index: int | None = None
        self._open_len = 0
        self._open_count = 0
        self._tmp_file = None
        self.manifest_stale = False
        try:
            self._open_existing(class_names, sensors, source)
        except BaseException:
            self._release_lock()
            raise

    # -- set-up
    def _open_existing(self, class_names: Any, sensors: Any, source: str | None) -> None:
        for tmp in sorted(self.root.glob(f'.*{TMP_SUFFIX}')):
            self.recovered.append(f'{tmp.name}: removed temporary file of an interrupted writer')
            tmp.unlink()
        if self.recovered:
            warnings.warn(f'{self.root}: ' + '; '.join(self.recovered), RuntimeWarning, stacklevel=3)
        manifest = read_manifest(self.root)
        # disk is the truth for numbering: count what each committed shard really holds
        scans = {p.name: scan_shard(p) for p in sorted(self.root.glob('shard-*.tar')) if SHARD_RE.match(p.name)}
        good = {n: s for n, s in scans.items() if s.error is None}
        bad = {n: s.error for n, s in scans.items() if s.error is not None}
        if bad:
            warnings.warn(f'{self.root}: unreadable shards left untouched (readers skip them): {bad}',
                          RuntimeWarning, stacklevel=3)
        indices = [int(SHARD_RE.match(n).group(1)) for n in scans]
        self._next_shard = max(indices) + 1 if indices else 0
        max_key = max((max(int(k) for k in s.keys) for s in good.values() if s.keys), default=-1)
        self._next_key = max_key + 1
        self._shard_counts = {n: len(s.keys) for n, s in good.items()}
        if manifest is not None:
            if class_names is not None and manifest.get('class_names') not in (None, _json_roundtrip(class_names)):
                raise ShardError(f'{self.root}: class_names differ from the existing manifest '
                                 f'({manifest.get("class_names")!r}); write to a new directory')
            if sensors is not None and manifest.get('sensors') not in (None, _json_roundtrip(sensors)):
                raise ShardError(f'{self.root}: sensors differ from the existing manifest '
                                 f'({manifest.get("sensors")!r}); write to a new directory')
            class_names = manifest.get('class_names') if class_names is None else class_names
            sensors = manifest.get('sensors') if sensors is None else sensors
            source = manifest.get('source') if source is None else source
            self._created = manifest.get('created_unix', time.time())
        else:
            self._created = time.time()
        self.class_names = _json_roundtrip(class_names)
        self.sensors = _json_roundtrip(sensors)
        self.source = source
        self._write_manifest()

    # -- public API
    @property
    def num_samples(self) -> int:
        """Samples committed in this directory (all writers), plus the ones buffered in 'shard' mode."""
        return sum(self._shard_counts.values()) + (self._open_count if self._tmp_file is not None else 0)

    def append(self, sample: Sample) -> str:
        """Write one Sample; returns its key. In 'sample' durability it is durable and visible on return."""
        if self._closed:
            raise ShardError('append on a closed ShardWriter')
        if not isinstance(sample, Sample):
            raise TypeError(f'append expects a Sample, got {type(sample).__name__}')
        members = encode_sample(sample, self.image_format, self.jpeg_quality, self.png_compress_level)
        key = f'{self._next_key:0{KEY_DIGITS}d}'
        group = _tar_group_bytes(key, members, time.time())
        if self._open_index is None:
            self._open_index = self._next_shard
            self._next_shard += 1
            self._open_len = 0
            self._open_count = 0
        if self.durability == 'sample':
            self._commit_grown_shard(group)
        else:
            self._stream_into_tmp(group)
        self._next_key += 1
        if self._open_count >= self.samples_per_shard:
            self._finish_open_shard()
        return key

    def flush(self) -> None:
        """Commit what is buffered ('shard' durability), and a manifest that an earlier failure left stale."""
        if self._tmp_file is not None:
            self._commit_tmp()
        elif self.manifest_stale:
            self._write_manifest()
            self.manifest_stale = False

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._release_lock()

    def __enter__(self) -> 'ShardWriter':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        try:
            if not self._closed:
                self._release_lock()
        except Exception:
            pass

    # -- internals
    def _paths(self) -> tuple[Path, Path]:
        final = self.root / shard_name(self._open_index)
        return final, self.root / f'.{final.name}{TMP_SUFFIX}'

    def _commit_grown_shard(self, group: bytes) -> None:
        """A failure before the rename (ENOSPC, EIO) removes the temporary file and leaves the committed
        shard as it was; a failure of the manifest after it is kept for the next append (the sample is
        durable: readers trust the shards on disk, ``manifest_stale`` says the manifest lags)."""
        final, tmp = self._paths()
        try:
            with open(tmp, 'wb') as out:
                if self._open_len:
                    with open(final, 'rb') as prev:
                        remaining = self._open_len
                        while remaining:
                            chunk = prev.read(min(remaining, 1 << 22))
                            if not chunk:
                                raise ShardError(f'{final}: shorter than the {self._open_len} bytes committed')
                            out.write(chunk)
                            remaining -= len(chunk)
                out.write(group)
                out.write(_EOF)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        _fsync_dir(self.root)
        self._open_len += len(group)
        self._open_count += 1
        self._shard_counts[final.name] = self._open_count
        try:
            self._write_manifest()
            self.manifest_stale = False
        except OSError:
            self.manifest_stale = True

    def _stream_into_tmp(self, group: bytes) -> None:
        final, tmp = self._paths()
        if self._tmp_file is None:
            self._tmp_file = open(tmp, 'wb')
        self._tmp_file.write(group)
        self._open_len += len(group)
        self._open_count += 1

    def _commit_tmp(self) -> None:
        final, tmp = self._paths()
        f = self._tmp_file
        f.write(_EOF)
        f.flush()
        os.fsync(f.fileno())
        f.close()
        self._tmp_file = None
        os.replace(tmp, final)
        _fsync_dir(self.root)
        self._shard_counts[final.name] = self._open_count
        self._write_manifest()
        self._open_index = None

    def _finish_open_shard(self) -> None:
        if self._tmp_file is not None:
            self._commit_tmp()
        self._open_index = None
        self._open_len = 0
        self._open_count = 0

    def _write_manifest(self) -> None:
        shards = {n: self._shard_counts[n] for n in sorted(self._shard_counts)}
        manifest = {
            'schema_version': SCHEMA_VERSION,
            'format': 'ros_ncal webdataset-style tar shards',
            'source': self.source,
            'sensors': self.sensors,
            'class_names': self.class_names,
            'image_format': self.image_format,
            'shards': shards,
            'total': int(sum(shards.values())),
            'created_unix': self._created,
            'updated_unix': time.time(),
        }
        _atomic_write_bytes(self.root / MANIFEST_NAME, json.dumps(manifest, indent=1).encode())

    def _release_lock(self) -> None:
        if getattr(self, '_lock_fd', None) is not None:
            if self._tmp_file is not None:
                self._tmp_file.close()
                self._tmp_file = None
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None


def _json_roundtrip(x: Any) -> Any:
    """Round-trip through JSON so comparisons with a loaded manifest are like for like (tuples -> lists)."""
    return None if x is None else json.loads(json.dumps(x))


# ------------------------------------------------------------------------------------------------------ shard scan

@dataclass
class ShardScan:
    """What a structural check found in one shard file.

    keys: complete sample keys in file order; members: key -> {suffix: (data offset, size)}; error: None when usable.
    """

    path: Path
    keys: list[str] = field(default_factory=list)
    members: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    error: str | None = None


def scan_shard(path: str | Path) -> ShardScan:
    """Read the tar headers of a shard (not the data) and check that it is whole. Never raises."""
    path = Path(path)
    scan = ShardScan(path)
    try:
        size = path.stat().st_size
        groups: dict[str, dict[str, tuple[int, int]]] = {}
        order: list[str] = []
        with tarfile.open(path, mode='r:') as tf:
            for info in tf:
                if not info.isfile():
                    continue
                if info.offset_data + info.size > size:
                    raise ShardError(f'member {info.name} runs past the end of the file (truncated)')
                name = info.name.rsplit('/', 1)[-1]
                key, dot, suffix = name.partition('.')
                if not dot:
                    raise ShardError(f'member {info.name!r} has no suffix')
                if key not in groups:
                    groups[key] = {}
                    order.append(key)
                groups[key][suffix] = (info.offset_data, info.size)
            end = tf.offset
        with open(path, 'rb') as fh:
            fh.seek(end)
            if fh.read(2 * _BLOCK) != _EOF:
                raise ShardError('no end-of-archive marker after the last member (truncated or torn)')
        if not order:
            raise ShardError('no samples')
        for key in order:
            g = groups[key]
            missing = [m for m in REQUIRED_MEMBERS if m not in g]
            if not any(m in g for m in IMAGE_MEMBERS):
                missing.append('image.png|image.jpg')
            if missing:
                raise ShardError(f'sample {key} lacks {", ".join(missing)}')
        scan.keys, scan.members = order, groups
    except (OSError, tarfile.TarError, ShardError, EOFError, ValueError) as exc:
        scan.error = f'{type(exc).__name__}: {exc}'
    return scan


def read_members(path: Path, members: dict[str, tuple[int, int]], fh=None) -> dict[str, bytes]:
    """Read the given members' bytes from a shard file (``fh``: an already open binary handle, optional)."""
    own = fh is None
    if own:
        fh = open(path, 'rb')
    try:
        out = {}
        for suffix, (offset, size) in members.items():
            fh.seek(offset)
            data = fh.read(size)
            if len(data) != size:
                raise ShardError(f'{path.name}: member {suffix} truncated')
            out[suffix] = data
        return out
    finally:
        if own:
            fh.close()


# ---------------------------------------------------------------------------------------------------------- reader

@dataclass
class SkipRecord:
    """Something a reader left out, and why."""

    what: str
    reason: str


class ShardDataset:
    """Read a shard dataset directory.

    root: the directory ShardWriter wrote.
    shuffle_buffer: 0 for file order; > 0 shuffles samples through a buffer of that size (seeded).
    shuffle_shards: permute the shard order each epoch (same permutation on every rank, so splits stay disjoint).
    seed: base seed for shard and buffer shuffling; call ``set_epoch(e)`` to vary it per epoch.

    ``skipped``: SkipRecords for torn/corrupt shards, stray temp files and samples that failed to decode.
    ``notes``: manifest/disk disagreements that did not lose data (e.g. a shard newer than the manifest).
    ``len(ds)`` counts samples in usable shards; ``ds[i]`` decodes sample i (index over usable shards).
    """

    def __init__(self, root: str | Path, shuffle_buffer: int = 0, shuffle_shards: bool = False, seed: int = 0,
                 warn: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ShardError(f'{self.root}: dataset directory not found')
        self.shuffle_buffer = int(shuffle_buffer)
        self.shuffle_shards = bool(shuffle_shards)
        self.seed = int(seed)
        self.epoch = 0
        self.skipped: list[SkipRecord] = []
        self.notes: list[str] = []
        try:
            self.manifest = read_manifest(self.root) or {}
        except ShardError as exc:
            self.manifest = {}
            self.notes.append(f'{exc}; reading shards from disk only')
        if not self.manifest:
            self.notes.append('no manifest; shards listed from disk')
        for tmp in sorted(self.root.glob(f'.*{TMP_SUFFIX}')):
            self.skipped.append(SkipRecord(tmp.name, 'temporary file of an unfinished or interrupted write (ignored)'))
        self.shards: list[ShardScan] = []
        on_disk = sorted(p for p in self.root.glob('shard-*.tar') if SHARD_RE.match(p.name))
        for p in on_disk:
            scan = scan_shard(p)
            if scan.error is not None:
                self.skipped.append(SkipRecord(p.name, scan.error))
            else:
                self.shards.append(scan)
        listed = self.manifest.get('shards', {}) or {}
        disk_names = {p.name for p in on_disk}
        for name, count in listed.items():
            if name not in disk_names:
                self.notes.append(f'{name}: in the manifest ({count} samples) but not on disk')
        for scan in self.shards:
            n = listed.get(scan.path.name)
            if n is None and listed is not None and self.manifest:
                self.notes.append(f'{scan.path.name}: on disk ({len(scan.keys)} samples) but not in the manifest '
                                  '(written after the last manifest update); used')
            elif n is not None and n != len(scan.keys):
                self.notes.append(f'{scan.path.name}: manifest says {n} samples, disk holds {len(scan.keys)}; '
                                  'using disk')
        self._index = [(si, key) for si, s in enumerate(self.shards) for key in s.keys]
        if warn and self.skipped:
            warnings.warn(f'{self.root}: skipped ' + '; '.join(f'{r.what} ({r.reason})' for r in self.skipped),
                          RuntimeWarning, stacklevel=2)

    # -- metadata
    @property
    def class_names(self) -> Any:
        return self.manifest.get('class_names')

    @property
    def sensors(self) -> Any:
        return self.manifest.get('sensors')

    def __len__(self) -> int:
        return len(self._index)

    @property
    def num_shards(self) -> int:
        return len(self.shards)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # -- access
    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(f'sample index {i} out of range for {len(self)} samples')
        si, key = self._index[i]
        scan = self.shards[si]
        return decode_sample(read_members(scan.path, scan.members[key]))

    def key_of(self, i: int) -> tuple[str, str]:
        """(shard file name, sample key) of sample i."""
        si, key = self._index[i]
        return self.shards[si].path.name, key

    def shard_order(self) -> list[int]:
        order = list(range(len(self.shards)))
        if self.shuffle_shards:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        return order

    @staticmethod
    def _check_split(rank: int, world_size: int, worker_id: int, num_workers: int) -> None:
        if not (0 <= rank < world_size and 0 <= worker_id < num_workers):
            raise ValueError(f'bad split rank={rank}/{world_size} worker={worker_id}/{num_workers}')

    def shards_for(self, rank: int = 0, world_size: int = 1, worker_id: int = 0, num_workers: int = 1) -> list[int]:
        """Indices of the shards that (rank, worker) reads: round-robin over ranks, then over that rank's workers
        (disjoint, covering; a rank's share does not depend on its number of workers)."""
        self._check_split(rank, world_size, worker_id, num_workers)
        return self.shard_order()[rank::world_size][worker_id::num_workers]

    def indices_for(self, rank: int = 0, world_size: int = 1, worker_id: int = 0, num_workers: int = 1,
                    even: bool = False) -> list[int]:
        """Sample indices of (rank, worker) for the per-sample split: every world_size-th sample of the (shard
        order, or with shuffle_shards a seeded per-epoch permutation of all samples), then every num_workers-th
        of those. even: pad each rank's list by wrapping around so all ranks get ceil(N / world_size) samples
        (as torch's DistributedSampler; a few samples repeat) -- what DDP needs to keep ranks in step."""
        self._check_split(rank, world_size, worker_id, num_workers)
        order = [i for si in self.shard_order() for i in self._shard_sample_range(si)]
        if self.shuffle_shards:
            random.Random(self.seed * 1_000_003 + self.epoch + 17).shuffle(order)
        if even and order:
            per_rank = -(-len(order) // world_size)
            order = (order * (1 + per_rank * world_size // len(order)))[:per_rank * world_size]
        return order[rank::world_size][worker_id::num_workers]

    def _shard_sample_range(self, si: int) -> range:
        if not hasattr(self, '_shard_start'):
            starts, n = [], 0
            for s in self.shards:
                starts.append(n)
                n += len(s.keys)
            self._shard_start = starts
        return range(self._shard_start[si], self._shard_start[si] + len(self.shards[si].keys))

    def iter_split(self, rank: int = 0, world_size: int = 1, worker_id: int = 0, num_workers: int = 1,
                   split: str = 'shard', even: bool = False) -> Iterator[Sample]:
        """Samples of (rank, worker). split='shard': whole shards per slot (sequential reads; needs at least as
        many shards as slots); split='sample': every k-th sample via the index (balanced to within one sample,
        works with few shards). even=True implies split='sample'. Through the shuffle buffer when set."""
        if split not in ('shard', 'sample'):
            raise ValueError(f"split must be 'shard' or 'sample', got {split!r}")
        if even or split == 'sample':
            stream = self._iter_indices(self.indices_for(rank, world_size, worker_id, num_workers, even))
        else:
            stream = self._iter_shard_list(self.shards_for(rank, world_size, worker_id, num_workers))
        if self.shuffle_buffer > 0:
            rng = random.Random(((self.seed * 1_000_003 + self.epoch) * 65_537 + rank) * 4_099 + worker_id)
            stream = _shuffled(stream, self.shuffle_buffer, rng)
        yield from stream

    def iter_shards(self, rank: int = 0, world_size: int = 1, worker_id: int = 0,
                    num_workers: int = 1) -> Iterator[Sample]:
        """Samples of this (rank, worker)'s shards (split='shard'); through the shuffle buffer when set."""
        return self.iter_split(rank, world_size, worker_id, num_workers, split='shard')

    def __iter__(self) -> Iterator[Sample]:
        return self.iter_shards()

    def _iter_indices(self, indices: Sequence[int]) -> Iterator[Sample]:
        for i in indices:
            si, key = self._index[i]
            scan = self.shards[si]
            try:
                sample = decode_sample(read_members(scan.path, scan.members[key]))
            except Exception as exc:  # a bad sample must not end the epoch
                self._report(f'{scan.path.name}:{key}', f'{type(exc).__name__}: {exc}')
                continue
            yield sample

    def _iter_shard_list(self, shard_ids: Sequence[int]) -> Iterator[Sample]:
        for si in shard_ids:
            scan = self.shards[si]
            try:
                fh = open(scan.path, 'rb')
            except OSError as exc:
                self._report(scan.path.name, f'cannot open: {exc}')
                continue
            with fh:
                for key in scan.keys:
                    try:
                        sample = decode_sample(read_members(scan.path, scan.members[key], fh))
                    except Exception as exc:  # a bad sample must not end the epoch
                        self._report(f'{scan.path.name}:{key}', f'{type(exc).__name__}: {exc}')
                        continue
                    yield sample

    def _report(self, what: str, reason: str) -> None:
        self.skipped.append(SkipRecord(what, reason))
        warnings.warn(f'{self.root}: skipped {what} ({reason})', RuntimeWarning, stacklevel=3)


def _shuffled(stream: Iterator[Sample], size: int, rng: random.Random) -> Iterator[Sample]:
    buf: list[Sample] = []
    for item in stream:
        if len(buf) < size:
            buf.append(item)
            continue
        j = rng.randrange(len(buf))
        buf[j], item = item, buf[j]
        yield item
    rng.shuffle(buf)
    yield from buf


def _torch_iterable_base():
    import torch.utils.data
    return torch.utils.data.IterableDataset


class ShardIterableDataset(_torch_iterable_base()):
    """torch IterableDataset over a shard dataset: each DDP rank and DataLoader worker reads a disjoint part.

    Rank and world size come from torch.distributed when it is initialised (else 0 / 1); worker id and count
    from ``torch.utils.data.get_worker_info()``. split: 'shard' (whole shards per slot), 'sample' (every k-th
    sample, balanced) or 'auto' ('shard' when there are at least 4 shards per rank, else 'sample'; decided
    from the world size alone so that ``len()`` agrees with iteration). even=True gives every rank exactly ceil(N / world_size) samples (wrapping; for DDP).
    ``transform``: optional callable Sample -> anything. Use ``collate_fn=ros_ncal.data.collate_samples``.
    ``len()`` is this rank's sample count (all of its workers together).
    """

    def __init__(self, root: str | Path, shuffle_buffer: int = 0, shuffle_shards: bool = False, seed: int = 0,
                 transform=None, split: str = 'auto', even: bool = False):
        super().__init__()
        if split not in ('auto', 'shard', 'sample'):
            raise ValueError(f"split must be 'auto', 'shard' or 'sample', got {split!r}")
        self.dataset = ShardDataset(root, shuffle_buffer=shuffle_buffer, shuffle_shards=shuffle_shards, seed=seed)
        self.transform = transform
        self.split_mode = split
        self.even = bool(even)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    @staticmethod
    def split() -> tuple[int, int, int, int]:
        """(rank, world_size, worker_id, num_workers) of the calling process."""
        import torch.distributed as dist
        import torch.utils.data
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank, world, wid, nw

    def _mode(self, world_size: int) -> str:
        if self.even:
            return 'sample'
        if self.split_mode == 'auto':
            return 'shard' if self.dataset.num_shards >= 4 * world_size else 'sample'
        return self.split_mode

    def __iter__(self):
        rank, world, wid, nw = self.split()
        mode = self._mode(world)
        if mode == 'shard' and self.dataset.num_shards < world * nw and wid == 0 and rank == 0:
            warnings.warn(f'{self.dataset.num_shards} shards for {world * nw} rank x worker slots: '
                          "some slots read nothing (use split='sample')", RuntimeWarning, stacklevel=2)
        for s in self.dataset.iter_split(rank, world, wid, nw, split=mode, even=self.even):
            yield self.transform(s) if self.transform is not None else s

    def __len__(self) -> int:
        rank, world, _, _ = self.split()
        if self._mode(world) == 'sample':
            return len(self.dataset.indices_for(rank, world, even=self.even))
        return sum(len(self.dataset.shards[i].keys) for i in self.dataset.shards_for(rank, world))
