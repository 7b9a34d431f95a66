"""SemanticKITTI sequences -> LiDAR-only scans (points + 19-class labels + instances), and camera Samples
when the KITTI odometry images and calibration are available.

A ``.label`` file is uint32 per point: lower 16 bits the SemanticKITTI semantic id, upper 16 bits the
instance id. Semantic ids are remapped with the benchmark learning map to training ids 1..19, 0 = ignore
(ros_ncal.data.labels). SemanticKITTI itself ships no images: a scan becomes a camera Sample only with the
odometry ``image_2/`` folder and a ``calib.txt`` (P2 and Tr) or a YAML file giving K and T_cam_lidar.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..kitti_files import read_image_rgb, read_velodyne
from ..labels import remap_semantickitti
from ..sample import InvalidSampleError, Sample
from ..shards import SkipRecord


class MissingCameraDataError(FileNotFoundError):
    """Camera Samples were asked for scans that come without images or calibration."""


def read_semantickitti_scan(bin_path: str | Path, label_path: str | Path | None = None):
    """-> points (N, 4) float32, labels (N,) int32 training ids 0..19 (or None), instances (N,) int32 (or None).

    Raises ValueError when the label count does not match the point count, or the .bin/.label is truncated.
    Non-finite points are kept here (the caller decides); Samples drop them together with their labels.
    """
    points = read_velodyne(bin_path)
    if label_path is None:
        return points, None, None
    label_path = Path(label_path)
    size = label_path.stat().st_size
    if size % 4:
        raise ValueError(f'{label_path}: size {size} bytes is not a multiple of 4 (uint32 per point): truncated?')
    raw = np.fromfile(label_path, dtype='<u4')
    if len(raw) != len(points):
        raise ValueError(f'{label_path}: {len(raw)} labels for {len(points)} points in {bin_path}')
    semantic = remap_semantickitti((raw & 0xFFFF).astype(np.int64))
    instances = (raw >> 16).astype(np.int32)
    return points, semantic, instances


def semantickitti_scans(sequence_dir: str | Path) -> list[str]:
    """Scan ids ('000000', ...) of a sequence folder that have a velodyne file."""
    vdir = Path(sequence_dir) / 'velodyne'
    if not vdir.is_dir():
        raise FileNotFoundError(f'{sequence_dir}: no velodyne/ folder (expected sequences/XX/velodyne/*.bin)')
    return sorted(p.stem for p in vdir.glob('*.bin'))


def iter_semantickitti_scans(sequence_dir: str | Path) -> Iterator[tuple[str, np.ndarray, np.ndarray | None,
                                                                          np.ndarray | None] | SkipRecord]:
    """LiDAR-only iteration for segmentation: (scan id, points (N, 4), labels (N,) or None, instances or None)
    per scan of ``sequences/XX`` (labels from ``labels/<id>.label`` when present); a SkipRecord for a bad scan."""
    seq = Path(sequence_dir)
    for scan in semantickitti_scans(seq):
        label_path = seq / 'labels' / f'{scan}.label'
        try:
            points, labels, inst = read_semantickitti_scan(seq / 'velodyne' / f'{scan}.bin',
                                                           label_path if label_path.exists() else None)
        except (OSError, ValueError) as exc:
            yield SkipRecord(scan, f'{type(exc).__name__}: {exc}')
            continue
        yield scan, points, labels, inst


def read_odometry_calib(path: str | Path) -> dict[str, np.ndarray]:
    """KITTI odometry calib.txt (P0..P3, Tr) or a YAML with 'K' (3x3) and 'T_cam_lidar' (4x4)
    -> {'K', 'T_cam_lidar'} for camera 2 (P2's horizontal offset folded into the translation)."""
    path = Path(path)
    if path.suffix in ('.yaml', '.yml'):
        import yaml
        d = yaml.safe_load(path.read_text()) or {}
        for key in ('K', 'T_cam_lidar'):
            if key not in d:
                raise ValueError(f'{path}: missing {key}')
        return {'K': np.asarray(d['K'], dtype=np.float64).reshape(3, 3),
                'T_cam_lidar': np.asarray(d['T_cam_lidar'], dtype=np.float64).reshape(4, 4)}
    vals: dict[str, np.ndarray] = {}
    for line in path.read_text().splitlines():
        if ':' in line:
            k, v = line.split(':', 1)
            vals[k.strip()] = np.array([float(x) for x in v.split()])
    for key in ('P2', 'Tr'):
        if key not in vals or vals[key].size != 12:
            raise ValueError(f'{path}: missing or malformed {key} (KITTI odometry calib.txt needs P2 and Tr)')
    P2 = vals['P2'].reshape(3, 4)
    K = P2[:, :3].copy()
    T = np.eye(4)
    T[:3, :] = vals['Tr'].reshape(3, 4)
    offset = np.eye(4)
    offset[:3, 3] = np.linalg.solve(K, P2[:, 3])
    T = offset @ T
    U, _, Vt = np.linalg.svd(T[:3, :3])
    T[:3, :3] = U @ Vt
    return {'K': K, 'T_cam_lidar': T}


@dataclass
class SemanticKittiReaderConfig:
    """calib: path to calib.txt / YAML (default: <sequence>/calib.txt); image_dir: default <sequence>/image_2."""

    calib: str | None = None
    image_dir: str | None = None
    frame_ids: tuple[str, str] = ('velodyne', 'camera2_optical')


def iter_semantickitti_samples(sequence_dir: str | Path, cfg: SemanticKittiReaderConfig | None = None
                               ) -> Iterator[Sample | SkipRecord]:
    """Camera Samples with point labels for a sequence that has images + calibration.

    Raises MissingCameraDataError up front when the sequence has no images or no calibration (as the
    shared SemanticKITTI sample): use read_semantickitti_scan for LiDAR-only work.
    """
    cfg = cfg or SemanticKittiReaderConfig()
    seq = Path(sequence_dir)
    scans = semantickitti_scans(seq)
    calib_path = Path(cfg.calib) if cfg.calib else seq / 'calib.txt'
    image_dir = Path(cfg.image_dir) if cfg.image_dir else seq / 'image_2'
    if not image_dir.is_dir():
        raise MissingCameraDataError(
            f'{seq}: no images at {image_dir}. SemanticKITTI has no images; pair it with the KITTI odometry '
            'image_2/ folder (--images) or use read_semantickitti_scan for LiDAR-only data.')
    if not calib_path.exists():
        raise MissingCameraDataError(f'{seq}: no calibration at {calib_path}; give the odometry calib.txt or a YAML '
                                     'with K and T_cam_lidar (--calib)')
    calib = read_odometry_calib(calib_path)
    times = None
    if (seq / 'times.txt').exists():
        times = np.loadtxt(seq / 'times.txt', ndmin=1)
    for i, scan in enumerate(scans):
        try:
            label_path = seq / 'labels' / f'{scan}.label'
            points, labels, inst = read_semantickitti_scan(seq / 'velodyne' / f'{scan}.bin',
                                                           label_path if label_path.exists() else None)
            img_path = image_dir / f'{scan}.png'
            if not img_path.exists():
                raise FileNotFoundError(f'missing image {img_path}')
            image = read_image_rgb(img_path)
            finite = np.isfinite(points).all(axis=1)
            stamp = int(round(float(times[int(scan)]) * 1e9)) if times is not None and int(scan) < len(times) else 0
            yield Sample(points=points[finite], image=image, K=calib['K'], T_cam_lidar=calib['T_cam_lidar'],
                         stamp_ns=stamp, frame_ids=cfg.frame_ids,
                         point_labels=None if labels is None else labels[finite],
                         instance_ids=None if inst is None else inst[finite],
                         meta={'source': 'semantickitti', 'sequence': seq.name, 'frame': scan,
                               'dropped_nonfinite_points': int((~finite).sum())})
        except (OSError, ValueError, InvalidSampleError) as exc:
            yield SkipRecord(scan, f'{type(exc).__name__}: {exc}')
