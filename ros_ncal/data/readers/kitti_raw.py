"""KITTI raw drives (synced layout) -> Samples.

A drive folder ``<day>/<day>_drive_XXXX_sync/`` holds ``image_0X/data/*.png`` and
``velodyne_points/data/*.bin``; the day's ``calib_cam_to_cam.txt`` / ``calib_velo_to_cam.txt`` (and
``calib_imu_to_velo.txt``) lie one level up. Each frame becomes one Sample: the full cloud, the rectified
colour image, K = P_rect_0X[:, :3] and T_cam_lidar (Velodyne -> rectified camera X, the chain
P_rect_0X @ R_rect_00 @ [R|T] of :func:`ros_ncal.data.kitti_files.read_kitti_raw_calib`, the same convention
as the KITTI object reader). Stamps come from ``velodyne_points/timestamps.txt`` and
``image_0X/timestamps.txt`` when present, else frame i is at ``start + i / hz`` (synced KITTI raw is ~10 Hz).
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..kitti_files import read_image_rgb, read_kitti_raw_calib, read_velodyne
from ..sample import InvalidSampleError, Sample
from ..shards import SkipRecord

FALLBACK_START_NS = 1_700_000_000_000_000_000


@dataclass
class KittiRawReaderConfig:
    """camera: 2 (image_02, left colour) or 3 (image_03, right colour); hz: frame rate of synthesized stamps;
    start_ns: first synthesized stamp (None = midnight UTC of the day in the folder name, else 1.7e18);
    frame_ids: (lidar, camera) of the Samples (None = ('velodyne', 'camera<camera>_optical'), as the object reader)."""

    camera: int = 2
    hz: float = 10.0
    start_ns: int | None = None
    frame_ids: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.camera not in (0, 1, 2, 3):
            raise ValueError(f'camera must be 0-3 (image_0X), got {self.camera}')
        if self.frame_ids is None:
            self.frame_ids = ('velodyne', f'camera{self.camera}_optical')
        self.frame_ids = tuple(self.frame_ids)


@dataclass
class KittiRawDrive:
    """A resolved drive: folders, calibration and per-frame stamps. frames: sorted frame names ('0000000000')."""

    drive_dir: Path
    calib_dir: Path
    image_dir: Path
    velodyne_dir: Path
    calib: dict
    frames: list[str]
    stamps_ns: list[int]
    image_stamps_ns: list[int]
    stamps_source: str          # 'timestamps.txt' | 'synthesized at <hz> Hz'

    @property
    def name(self) -> str:
        return self.drive_dir.name


def _parse_timestamps(path: Path) -> list[int]:
    """KITTI raw timestamps.txt ('2011-09-26 13:02:25.964389445' per line) -> ns since the epoch (UTC)."""
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        m = re.fullmatch(r'(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?', line)
        if m is None:
            raise ValueError(f'{path}:{lineno}: expected "YYYY-MM-DD HH:MM:SS.fffffffff", got {line[:40]!r}')
        sec = _dt.datetime.strptime(m.group(1), '%Y-%m-%d %H:%M:%S').replace(tzinfo=_dt.timezone.utc).timestamp()
        out.append(int(sec) * 1_000_000_000 + int((m.group(2) or '0').ljust(9, '0')))
    return out


def _day_start_ns(name: str) -> int:
    m = re.match(r'(\d{4})_(\d{2})_(\d{2})', name)
    if m is None:
        return FALLBACK_START_NS
    try:
        day = _dt.datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), tzinfo=_dt.timezone.utc)
    except ValueError:
        return FALLBACK_START_NS
    return int(day.timestamp()) * 1_000_000_000


def open_kitti_raw_drive(drive_dir: str | Path, cfg: KittiRawReaderConfig | None = None) -> KittiRawDrive:
    """Resolve a drive folder (calib files in it or one level up). Raises FileNotFoundError / ValueError."""
    cfg = cfg or KittiRawReaderConfig()
    if cfg.hz <= 0:
        raise ValueError(f'hz must be positive, got {cfg.hz}')
    d = Path(drive_dir)
    image_dir = d / f'image_{cfg.camera:02d}' / 'data'
    velo_dir = d / 'velodyne_points' / 'data'
    for p in (image_dir, velo_dir):
        if not p.is_dir():
            drives = sorted(x.name for x in d.glob('*_sync') if x.is_dir()) if d.is_dir() else []
            hint = (f'a day folder? pass one of its drive folders: {drives[:5]}' if drives
                    else 'is this a KITTI raw *_sync drive folder?')
            raise FileNotFoundError(f'{d}: no {p.relative_to(d)}/ folder ({hint})')
    calib_dir = d if (d / 'calib_cam_to_cam.txt').is_file() else d.parent
    calib = read_kitti_raw_calib(calib_dir, cfg.camera)
    scans = sorted(p.stem for p in velo_dir.glob('*.bin'))
    if not scans:
        raise ValueError(f'{velo_dir}: no .bin scans')
    # KITTI raw names frames by their index in the drive: the index sets the synthesized stamp
    index = {s: int(s) if s.isdigit() else i for i, s in enumerate(scans)}
    velo_ts, img_ts = d / 'velodyne_points' / 'timestamps.txt', d / f'image_{cfg.camera:02d}' / 'timestamps.txt'
    if velo_ts.is_file():
        lidar = _parse_timestamps(velo_ts)
        image = _parse_timestamps(img_ts) if img_ts.is_file() else lidar
        if max(index.values()) >= min(len(lidar), len(image)):
            raise ValueError(f'{velo_ts}: {len(lidar)} stamps for frame index up to {max(index.values())}')
        stamps = [lidar[index[s]] for s in scans]
        image_stamps = [image[index[s]] for s in scans]
        source = 'timestamps.txt'
    else:
        start = _day_start_ns(d.parent.name if calib_dir != d else d.name) if cfg.start_ns is None else cfg.start_ns
        period = 1e9 / cfg.hz
        stamps = [int(start + round(index[s] * period)) for s in scans]
        image_stamps = list(stamps)
        source = f'synthesized at {cfg.hz:g} Hz'
    return KittiRawDrive(d, calib_dir, image_dir, velo_dir, calib, scans, stamps, image_stamps, source)


def read_kitti_raw_frame(drive: KittiRawDrive, i: int, cfg: KittiRawReaderConfig | None = None) -> Sample:
    """Frame number ``i`` (position in ``drive.frames``) -> Sample. Raises OSError / ValueError naming the file."""
    cfg = cfg or KittiRawReaderConfig()
    name = drive.frames[i]
    img_path = drive.image_dir / f'{name}.png'
    if not img_path.is_file():
        raise FileNotFoundError(f'missing image file {img_path}')
    points = read_velodyne(drive.velodyne_dir / f'{name}.bin')
    finite = np.isfinite(points).all(axis=1)
    image = read_image_rgb(img_path)
    hw = tuple(int(v) for v in drive.calib['image_hw'])
    if hw != (0, 0) and image.shape[:2] != hw:
        raise ValueError(f'{img_path}: image is {image.shape[1]}x{image.shape[0]}, calib S_rect says {hw[1]}x{hw[0]} '
                         '(not a rectified image of this camera?)')
    meta = {'source': 'kitti_raw', 'drive': drive.name, 'frame': name, 'index': i, 'camera': f'image_{cfg.camera:02d}',
            'stamps': drive.stamps_source, 'dropped_nonfinite_points': int((~finite).sum())}
    return Sample(points=points[finite], image=image, K=drive.calib['K'], T_cam_lidar=drive.calib['T_cam_lidar'],
                  stamp_ns=drive.stamps_ns[i], image_stamp_ns=drive.image_stamps_ns[i], frame_ids=cfg.frame_ids,
                  meta=meta)


def iter_kitti_raw_samples(drive_dir: str | Path, cfg: KittiRawReaderConfig | None = None,
                           frames: slice | None = None) -> Iterator[Sample | SkipRecord]:
    """Samples of a drive in frame order (``frames``: a slice of the frame list), a SkipRecord for each frame
    that cannot be read."""
    cfg = cfg or KittiRawReaderConfig()
    drive = open_kitti_raw_drive(drive_dir, cfg)
    for i in range(len(drive.frames))[frames or slice(None)]:
        try:
            yield read_kitti_raw_frame(drive, i, cfg)
        except (OSError, ValueError, InvalidSampleError) as exc:
            yield SkipRecord(drive.frames[i], f'{type(exc).__name__}: {exc}')
