"""Read any rosbag2 (mcap or sqlite3; a bag directory or a storage file) with ``rosbags``, without ROS.

Lives in ``data`` (the Sample readers use it); :mod:`ros_ncal.bag` (writing bags) re-exports it.

The storage FILE(s) are opened, not the directory: opening a directory whose metadata.yaml
QoS differs from the storage file can yield 0 messages silently (docs/design.md, rosbag2 files). When a
metadata.yaml exists, its message counts are compared with the storage file's index and a
mismatch is reported in :class:`BagSummary` (``metadata_mismatch``) and raised by
:func:`read_messages` when ``check_counts`` is set and fewer messages came out than indexed.
"""
from __future__ import annotations

import contextlib
import sqlite3
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator, NamedTuple

STORAGE_SUFFIXES = ('.mcap', '.db3')


class BagCountMismatchError(RuntimeError):
    """A bag yielded a different number of messages than its index / metadata announce."""


class BagReadError(ValueError):
    """A bag cannot be read: corrupt (e.g. an MCAP chunk whose CRC-32 does not match), truncated, or a file
    that is not a rosbag2 storage file. The message names the file."""


# what rosbags / the CDR decoder raise on damaged bytes (rosbags' own error types are added at first use);
# MemoryError / OverflowError: a damaged length field asks for an absurd allocation
_DAMAGE = (struct.error, EOFError, UnicodeDecodeError, IndexError, KeyError, ValueError, MemoryError,
           OverflowError, sqlite3.DatabaseError)


@contextlib.contextmanager
def _bag_errors(path, what: str = 'read'):
    """Turn the reader's exceptions for damaged bytes into one BagReadError naming ``path``."""
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag2 import ReaderError
    try:
        yield
    except BagReadError:
        raise
    except (ReaderError, AnyReaderError, *_DAMAGE) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BagReadError(f'{path}: cannot {what} the bag (corrupt or truncated?): {text}') from exc


class BagMessage(NamedTuple):
    """Unpacks as (topic, msgtype, stamp_ns, msg)."""
    topic: str
    msgtype: str
    stamp_ns: int  # log (receive) time in the bag
    msg: object    # deserialized rosbags dataclass


@dataclass
class BagSummary:
    storage_files: list[Path]
    topics: dict[str, str]  # topic -> msgtype
    counts: dict[str, int]  # topic -> messages in the storage index
    start_ns: int  # log time of the first message
    end_ns: int    # log time of the last message
    metadata_counts: dict[str, int] | None = None
    metadata_mismatch: list[str] = field(default_factory=list)
    offered_qos: dict[str, list[str]] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    @property
    def message_count(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict:
        return {'storage_files': [str(p) for p in self.storage_files], 'topics': self.topics, 'counts': self.counts,
                'message_count': self.message_count, 'start_ns': self.start_ns, 'end_ns': self.end_ns,
                'duration_s': self.duration_s, 'metadata_counts': self.metadata_counts,
                'metadata_mismatch': self.metadata_mismatch, 'offered_qos': self.offered_qos}

    def format(self) -> str:
        lines = [f'files:     {", ".join(str(p) for p in self.storage_files)}',
                 f'duration:  {self.duration_s:.3f} s', f'messages:  {self.message_count}']
        width = max([len(t) for t in self.topics] + [5])
        for topic in sorted(self.topics):
            qos = f'  qos: {"; ".join(self.offered_qos.get(topic, []))}' if self.offered_qos.get(topic) else ''
            lines.append(f'  {topic:<{width}}  {self.counts.get(topic, 0):>6}  {self.topics[topic]}{qos}')
        for m in self.metadata_mismatch:
            lines.append(f'WARNING: {m}')
        return '\n'.join(lines)


def resolve_storage_files(path: str | Path) -> list[Path]:
    """A bag directory (metadata.yaml and/or storage files) or a storage file -> storage file list."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'bag not found: {path}')
    if path.is_file():
        if path.suffix not in STORAGE_SUFFIXES:
            raise ValueError(f'{path}: not a rosbag2 storage file (expected {STORAGE_SUFFIXES})')
        return [path]
    meta = _read_metadata(path)
    files: list[Path] = []
    if meta is not None:
        files = [path / rel for rel in meta.get('relative_file_paths', [])]
        files = [f for f in files if f.exists()]
    if not files:
        files = sorted(p for p in path.iterdir() if p.suffix in STORAGE_SUFFIXES)
    if not files:
        raise ValueError(f'{path}: no .mcap or .db3 storage file in this directory')
    return files


def _read_metadata(bag_dir: Path) -> dict | None:
    meta_path = bag_dir / 'metadata.yaml'
    if not meta_path.exists():
        return None
    import yaml
    try:
        data = yaml.safe_load(meta_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BagReadError(f'{meta_path}: not valid YAML ({" ".join(str(exc).split())})') from exc
    if not isinstance(data, dict):
        raise BagReadError(f'{meta_path}: expected a mapping, got {type(data).__name__}')
    return data.get('rosbag2_bagfile_information', data)


def _metadata_counts(bag_dir: Path) -> tuple[dict[str, int] | None, dict[str, list[str]]]:
    meta = _read_metadata(bag_dir)
    if meta is None:
        return None, {}
    counts: dict[str, int] = {}
    qos: dict[str, list[str]] = {}
    for entry in meta.get('topics_with_message_count', []):
        tm = entry.get('topic_metadata', {})
        counts[tm.get('name', '?')] = counts.get(tm.get('name', '?'), 0) + int(entry.get('message_count', 0))
        raw = tm.get('offered_qos_profiles', '')
        profiles = yaml_load_list(raw)
        qos[tm.get('name', '?')] = [_describe_qos(p) for p in profiles]
    return counts, qos


def yaml_load_list(raw) -> list:
    if isinstance(raw, list):
        return raw
    if not raw:
        return []
    import yaml
    try:
        out = yaml.safe_load(raw)
    except yaml.YAMLError:
        return []
    return out if isinstance(out, list) else []


def _describe_qos(p) -> str:
    if not isinstance(p, dict):
        return str(p)
    dur = {1: 'transient_local', 2: 'volatile'}.get(p.get('durability'), p.get('durability'))
    rel = {1: 'reliable', 2: 'best_effort'}.get(p.get('reliability'), p.get('reliability'))
    return f'{rel}/{dur}/depth={p.get("depth")}'


def bag_summary(path: str | Path) -> BagSummary:
    """Topics, types, counts (from the storage file index), time span; metadata.yaml cross-check."""
    from rosbags.highlevel import AnyReader
    path = Path(path)
    files = resolve_storage_files(path)
    bag_dir = path if path.is_dir() else path.parent
    with _bag_errors(path, 'open'), AnyReader(files, default_typestore=_default_typestore()) as reader:
        topics: dict[str, str] = {}
        counts: dict[str, int] = {}
        for c in reader.connections:
            topics[c.topic] = c.msgtype
            counts[c.topic] = counts.get(c.topic, 0) + int(c.msgcount)
        # rosbags' end_time is one ns after the last message; keep the last message's log time.
        start, end = (reader.start_time, reader.end_time - 1) if reader.message_count else (0, 0)
    meta_counts, qos = _metadata_counts(bag_dir)
    mismatch = []
    if meta_counts is not None and meta_counts:
        for topic in sorted(set(meta_counts) | set(counts)):
            if meta_counts.get(topic, 0) != counts.get(topic, 0):
                mismatch.append(f'{topic}: metadata.yaml says {meta_counts.get(topic, 0)} messages, '
                                f'storage file has {counts.get(topic, 0)}')
    return BagSummary(storage_files=files, topics=topics, counts=counts, start_ns=int(start), end_ns=int(end),
                      metadata_counts=meta_counts, metadata_mismatch=mismatch, offered_qos=qos)


@lru_cache(maxsize=1)
def typestore():
    """The rosbags type store: ROS 2 Kilted, or the newest ROS 2 store this rosbags has."""
    from rosbags.typesys import Stores, get_typestore
    for name in ('ROS2_KILTED', 'ROS2_JAZZY', 'ROS2_HUMBLE'):
        if hasattr(Stores, name):
            return get_typestore(getattr(Stores, name))
    raise RuntimeError('rosbags has no ROS 2 type store')


def _default_typestore():
    return typestore()


def read_messages(path: str | Path, topics: list[str] | tuple[str, ...] | None = None,
                  check_counts: bool = True) -> Iterator[BagMessage]:
    """Yield BagMessage(topic, msgtype, log stamp_ns, deserialized msg) in log-time order.

    topics: only these (None = all). check_counts: raise BagCountMismatchError at the end when
    fewer messages came out than the storage index announces for the selected topics.
    Damaged bytes (an MCAP chunk CRC mismatch, a truncated file, an undecodable message) raise
    BagReadError naming the file.
    """
    from rosbags.highlevel import AnyReader
    files = resolve_storage_files(path)
    with _bag_errors(path, 'open'):
        reader = AnyReader(files, default_typestore=_default_typestore())
        reader.open()
    try:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        if topics is not None:
            absent = sorted(set(topics) - {c.topic for c in reader.connections})
            if absent:
                raise ValueError(f'{path}: topic(s) {absent} not in bag; has {sorted({c.topic for c in reader.connections})}')
        expected = sum(int(c.msgcount) for c in conns)
        n = 0
        stream = reader.messages(connections=conns)
        while True:
            with _bag_errors(path):
                item = next(stream, None)
                if item is None:
                    break
                conn, stamp, raw = item
                msg = reader.deserialize(raw, conn.msgtype)
            n += 1
            yield BagMessage(conn.topic, conn.msgtype, int(stamp), msg)
    finally:
        reader.close()
    if check_counts and n != expected:
        raise BagCountMismatchError(f'{path}: read {n} messages, the storage index announces {expected}')
