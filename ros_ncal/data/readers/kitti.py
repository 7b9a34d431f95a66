"""KITTI 3D object benchmark folders (training / testing) -> Samples.

A split folder holds ``velodyne/`` (or ``velodyne_reduced/``), ``image_2/``, ``calib/`` and, for training,
``label_2/``. Each frame becomes one Sample: the full cloud, the left colour image, K = P2[:, :3] and
T_cam_lidar (LiDAR -> rectified camera 2, see ros_ncal.data.kitti_files), and the labelled boxes converted
into the LiDAR frame (ros_ncal.data.boxes3d). Frames with a missing/corrupt file are skipped with a reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..boxes3d import kitti_camera_boxes_to_lidar
from ..kitti_files import read_image_rgb, read_kitti_calib, read_kitti_labels, read_velodyne
from ..labels import KITTI_BOX_CLASS_IDS
from ..sample import InvalidSampleError, Sample
from ..shards import SkipRecord


@dataclass
class KittiReaderConfig:
    """velodyne_dir: 'velodyne' or 'velodyne_reduced'. box_classes: KITTI type -> box class id; other types
    (Van, Truck, Tram, Misc, Person_sitting, DontCare) are dropped. require_labels: skip a frame whose label
    file is missing when the split has a label folder."""

    velodyne_dir: str = 'velodyne'
    image_dir: str = 'image_2'
    calib_dir: str = 'calib'
    label_dir: str = 'label_2'
    box_classes: dict[str, int] = field(default_factory=lambda: dict(KITTI_BOX_CLASS_IDS))
    require_labels: bool = True
    frame_ids: tuple[str, str] = ('velodyne', 'camera2_optical')


def kitti_frames(split_dir: str | Path, cfg: KittiReaderConfig | None = None) -> list[str]:
    """Frame ids with a point cloud file, sorted (the other files are checked per frame)."""
    cfg = cfg or KittiReaderConfig()
    vdir = Path(split_dir) / cfg.velodyne_dir
    if not vdir.is_dir():
        raise FileNotFoundError(f'{split_dir}: no {cfg.velodyne_dir}/ folder (is this a KITTI training/testing split?)')
    return sorted(p.stem for p in vdir.glob('*.bin'))


def kitti_boxes_from_labels(objects: list[dict], calib: dict, box_classes: dict[str, int]):
    """label_2 objects -> (boxes (M, 7) float32, labels (M,) int32, attrs dict of per-box KITTI fields)."""
    kept = [o for o in objects if o['type'] in box_classes]
    attrs = {'type': [o['type'] for o in kept], 'truncated': [float(o['truncated']) for o in kept],
             'occluded': [int(o['occluded']) for o in kept], 'alpha': [float(o['alpha']) for o in kept],
             'bbox_2d': [[float(v) for v in o['bbox']] for o in kept]}
    if not kept:
        return np.zeros((0, 7), np.float32), np.zeros(0, np.int32), attrs
    T_rect_lidar = np.eye(4)
    T_rect_lidar[:3, :3] = calib['R0_rect']
    Tr = np.eye(4)
    Tr[:3, :] = calib['Tr_velo_to_cam']
    T_rect_lidar = T_rect_lidar @ Tr
    boxes = kitti_camera_boxes_to_lidar(np.stack([o['location'] for o in kept]),
                                        np.stack([o['dimensions_hwl'] for o in kept]),
                                        np.array([o['rotation_y'] for o in kept]), T_rect_lidar)
    labels = np.array([box_classes[o['type']] for o in kept], dtype=np.int32)
    return boxes.astype(np.float32), labels, attrs


def read_kitti_frame(split_dir: str | Path, frame: str, cfg: KittiReaderConfig | None = None) -> Sample:
    """One KITTI frame -> Sample. Raises ValueError / FileNotFoundError naming the bad file."""
    cfg = cfg or KittiReaderConfig()
    d = Path(split_dir)
    paths = {'velodyne': d / cfg.velodyne_dir / f'{frame}.bin', 'image': d / cfg.image_dir / f'{frame}.png',
             'calib': d / cfg.calib_dir / f'{frame}.txt'}
    for what, p in paths.items():
        if not p.exists():
            raise FileNotFoundError(f'missing {what} file {p}')
    calib = read_kitti_calib(paths['calib'])
    points = read_velodyne(paths['velodyne'])
    finite = np.isfinite(points).all(axis=1)
    image = read_image_rgb(paths['image'])
    meta = {'source': 'kitti', 'split': d.name, 'frame': frame, 'dropped_nonfinite_points': int((~finite).sum())}
    kw = {}
    label_dir = d / cfg.label_dir
    if label_dir.is_dir():
        lp = label_dir / f'{frame}.txt'
        if lp.exists():
            boxes, labels, attrs = kitti_boxes_from_labels(read_kitti_labels(lp), calib, cfg.box_classes)
            kw = {'boxes': boxes, 'box_labels': labels}
            meta['kitti_box_attrs'] = attrs
        elif cfg.require_labels:
            raise FileNotFoundError(f'missing label file {lp}')
    return Sample(points=points[finite], image=image, K=calib['K'], T_cam_lidar=calib['T_cam_lidar'],
                  frame_ids=cfg.frame_ids, meta=meta, **kw)


def iter_kitti_samples(split_dir: str | Path, cfg: KittiReaderConfig | None = None,
                       frames: list[str] | None = None) -> Iterator[Sample | SkipRecord]:
    """Samples of a split folder, a SkipRecord (frame, reason) for each frame that cannot be read."""
    cfg = cfg or KittiReaderConfig()
    for frame in (frames if frames is not None else kitti_frames(split_dir, cfg)):
        try:
            yield read_kitti_frame(split_dir, frame, cfg)
        except (OSError, ValueError, InvalidSampleError) as exc:
            yield SkipRecord(frame, f'{type(exc).__name__}: {exc}')
