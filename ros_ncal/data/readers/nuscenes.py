"""nuScenes keyframes from an mmdetection3d info pickle (format v1.1) -> one Sample per camera.

The pickle is read with the plain-data unpickler (:mod:`ros_ncal.data.safe_pickle`: numpy arrays, dicts,
lists, scalars; a pickle naming any code is refused before it runs). Per keyframe: ``lidar_points.lidar_path``
(.pcd.bin, float32 N x 5: x y z intensity ring), ``images[CAM].img_path / cam2img (K) / lidar2cam (T_cam_lidar) / timestamp``,
``instances[].bbox_3d`` (x y z l w h yaw in the LiDAR frame, z at the box centre) and ``bbox_label_3d``
(metainfo categories order, ros_ncal.data.labels.NUSCENES_BOX_CLASSES). All cameras of a keyframe share
the cloud and the boxes. The ring column is dropped; intensity (0..255) is scaled by ``intensity_scale``
(default 1/255, so that every source has reflectance in [0, 1] like KITTI).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..kitti_files import read_image_rgb
from ..safe_pickle import safe_load
from ..sample import InvalidSampleError, Sample
from ..shards import SkipRecord

NUSCENES_CAMERAS = ('CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT', 'CAM_BACK_RIGHT')


@dataclass
class NuScenesReaderConfig:
    """cameras: which cameras become Samples; lidar_feats: float32 columns per point in the .pcd.bin."""

    cameras: tuple[str, ...] = NUSCENES_CAMERAS
    lidar_feats: int = 5
    intensity_scale: float = 1.0 / 255.0
    lidar_frame: str = 'LIDAR_TOP'


def load_info(pkl_path: str | Path) -> dict:
    """The info dict {'metainfo', 'data_list'}; raises ValueError when it is not an mmdet3d v1.x info file."""
    info = safe_load(pkl_path)   # never pickle.load: a crafted info file would run code before this check
    if not isinstance(info, dict) or 'data_list' not in info:
        raise ValueError(f'{pkl_path}: not an mmdetection3d v1.x info file (no data_list)')
    return info


def find_file(data_root: Path, name: str, sensor: str) -> Path:
    """Locate a sample file: <root>/samples/<SENSOR>/<name>, <root>/<name> or <root>/samples/<name>."""
    for cand in (data_root / 'samples' / sensor / name, data_root / name, data_root / 'samples' / name,
                 data_root / 'samples' / sensor / Path(name).name):
        if cand.exists():
            return cand
    raise FileNotFoundError(f'{name}: not found under {data_root} (looked in samples/{sensor}/ and the root)')


def _stamp_from_name(name: str, fallback_s: float | None) -> int:
    """nuScenes file names end in the microsecond timestamp; else the info's float seconds."""
    m = re.search(r'__(\d{16})\.', Path(name).name)
    if m:
        return int(m.group(1)) * 1000
    return int(round(float(fallback_s) * 1e9)) if fallback_s is not None else 0


def read_nuscenes_points(path: str | Path, feats: int = 5, intensity_scale: float = 1.0) -> np.ndarray:
    """.pcd.bin -> (N, 4) float32 x y z intensity*scale, finite rows only. Raises ValueError when truncated."""
    path = Path(path)
    size = path.stat().st_size
    if size % (4 * feats):
        raise ValueError(f'{path}: size {size} is not a multiple of {4 * feats} bytes ({feats} float32 per point)')
    pts = np.fromfile(path, dtype='<f4').reshape(-1, feats)[:, :4].copy()
    pts[:, 3] *= intensity_scale
    return pts[np.isfinite(pts).all(axis=1)]


def iter_nuscenes_samples(pkl_path: str | Path, data_root: str | Path | None = None,
                          cfg: NuScenesReaderConfig | None = None) -> Iterator[Sample | SkipRecord]:
    """One Sample per (keyframe, camera); a SkipRecord for each one that cannot be built."""
    cfg = cfg or NuScenesReaderConfig()
    root = Path(data_root) if data_root is not None else Path(pkl_path).parent
    info = load_info(pkl_path)
    categories = info.get('metainfo', {}).get('categories')
    for rec in info['data_list']:
        token = str(rec.get('token', rec.get('sample_idx', '?')))
        try:
            lidar = rec['lidar_points']
            lidar_path = find_file(root, lidar['lidar_path'], cfg.lidar_frame)
            points = read_nuscenes_points(lidar_path, int(lidar.get('num_pts_feats', cfg.lidar_feats)),
                                          cfg.intensity_scale)
            stamp = _stamp_from_name(lidar['lidar_path'], rec.get('timestamp'))
            inst = [i for i in rec.get('instances', []) if i.get('bbox_3d_isvalid', True)]
            boxes = np.array([i['bbox_3d'][:7] for i in inst], dtype=np.float32).reshape(-1, 7)
            box_labels = np.array([i['bbox_label_3d'] for i in inst], dtype=np.int32)
            keep = box_labels >= 0  # -1: a category outside the 10 detection classes
            boxes, box_labels = boxes[keep], box_labels[keep]
        except (OSError, ValueError, KeyError) as exc:
            yield SkipRecord(token, f'{type(exc).__name__}: {exc}')
            continue
        for cam in cfg.cameras:
            what = f'{token}/{cam}'
            try:
                c = rec['images'][cam]
                image = read_image_rgb(find_file(root, c['img_path'], cam))
                yield Sample(points=points, image=image, K=np.asarray(c['cam2img'], dtype=np.float64)[:3, :3],
                             T_cam_lidar=np.asarray(c['lidar2cam'], dtype=np.float64), stamp_ns=stamp,
                             image_stamp_ns=_stamp_from_name(c['img_path'], c.get('timestamp')),
                             frame_ids=(cfg.lidar_frame, cam), boxes=boxes, box_labels=box_labels,
                             meta={'source': 'nuscenes', 'token': token, 'frame': what, 'camera': cam,
                                   'box_classes': list(categories) if categories else None,
                                   'num_lidar_pts': [int(i.get('num_lidar_pts', -1)) for i, k in zip(inst, keep) if k]})
            except (OSError, ValueError, KeyError, InvalidSampleError) as exc:
                yield SkipRecord(what, f'{type(exc).__name__}: {exc}')
