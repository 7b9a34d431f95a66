"""Sensor bags whose ``/tf_static`` nominal is deliberately wrong by an exact, seeded amount.

``wrong_extrinsic`` builds the wrong nominal; ``write_kitti_bag_with_error`` writes KITTI frames that
share one calibration with that nominal on ``/tf_static`` (error 0 = the recorded extrinsic), and puts
the truth in ``<bag>.truth.json`` beside the bag, never into a message. The synthetic drive bag
(:mod:`.synthetic`) uses the same error model.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ros_ncal.data.kitti_files import kitti_frame_ids, read_image_rgb, read_kitti_calib, read_velodyne
from ros_ncal.geometry import make_T, pose_error, rotvec_to_matrix, validate_rigid
from ros_ncal.geometry.perturb import random_unit_vectors

from .kitti import DEFAULT_START_NS, kitti_split_dir
from .topics import BagTopics
from .writer import BagFrame, SensorBagWriter


def wrong_extrinsic(T_true: np.ndarray, error_deg: float, error_m: float, seed: int) -> np.ndarray:
    """(4, 4) T_cam_lidar off ``T_true`` by exactly ``error_deg`` and ``error_m`` as measured by
    :func:`ros_ncal.geometry.pose_error`: ``R = R_err @ R_true`` with R_err a rotation of ``error_deg``
    about a seeded random axis, ``t = t_true + error_m * d`` along a seeded random direction d."""
    T_true = validate_rigid(T_true, name='T_true')
    if error_deg < 0 or error_m < 0:
        raise ValueError(f'error sizes must be >= 0, got {error_deg} deg, {error_m} m')
    rng = np.random.default_rng(seed)
    axis, direction = random_unit_vectors(rng, 2)
    R_err = rotvec_to_matrix(axis * np.deg2rad(error_deg))
    return make_T(R_err @ T_true[:3, :3], T_true[:3, 3] + direction * error_m)


def truth_path(bag_dir: str | Path) -> Path:
    """``<parent>/<bag name>.truth.json``."""
    bag_dir = Path(bag_dir)
    return bag_dir.parent / f'{bag_dir.name}.truth.json'


def read_truth(bag_dir: str | Path) -> dict:
    """The truth file of a bag written here, as a dict (matrices as nested lists)."""
    path = truth_path(bag_dir)
    if not path.is_file():
        raise FileNotFoundError(f'no truth file beside the bag: {path}')
    return json.loads(path.read_text())


def write_truth(bag_dir: str | Path, truth: dict) -> Path:
    """Write the truth file atomically (its presence marks a complete bag)."""
    path = truth_path(bag_dir)
    tmp = path.with_suffix('.json.tmp')
    tmp.write_text(json.dumps(truth, indent=2))
    tmp.replace(path)
    return path


def frames_sharing_calibration(kitti_dir: str | Path) -> list[str]:
    """The largest group of KITTI frame ids with identical calib files (first group on ties).

    KITTI object frames come from different drives; a demo stream must keep one true extrinsic."""
    split = kitti_split_dir(kitti_dir)
    groups: dict[bytes, list[str]] = {}
    for fid in kitti_frame_ids(split):
        groups.setdefault((split / 'calib' / f'{fid}.txt').read_bytes(), []).append(fid)
    if not groups:
        raise ValueError(f'{split}: no complete frames (velodyne + image_2 + calib)')
    return max(groups.values(), key=len)


def write_kitti_bag_with_error(kitti_dir: str | Path, bag_dir: str | Path, frames: list[str] | None = None,
                               error_deg: float = 0.0, error_m: float = 0.0, error_seed: int = 0,
                               hz: float = 10.0, start_ns: int = DEFAULT_START_NS,
                               topics: BagTopics | None = None) -> tuple[Path, dict, dict]:
    """KITTI frames (one shared calibration) -> mcap bag with the nominal off by (error_deg, error_m).

    Returns (bag directory, per-topic counts, truth dict with ``T_cam_lidar_true``,
    ``T_cam_lidar_nominal``, ``error_deg``, ``error_m``, ``frames``, ``stamps_ns``).
    """
    import shutil
    split = kitti_split_dir(kitti_dir)
    ids = list(frames) if frames else frames_sharing_calibration(split)
    calibs = [read_kitti_calib(split / 'calib' / f'{fid}.txt') for fid in ids]
    T_true = calibs[0]['T_cam_lidar']
    for fid, c in zip(ids, calibs):
        if not np.allclose(c['T_cam_lidar'], T_true, atol=1e-9):
            raise ValueError(f'KITTI frame {fid} has another calibration than {ids[0]}: one stream needs one truth')
    if hz <= 0:
        raise ValueError(f'hz must be positive, got {hz}')
    T_nominal = wrong_extrinsic(T_true, error_deg, error_m, error_seed)
    bag_dir = Path(bag_dir)
    if bag_dir.exists():
        shutil.rmtree(bag_dir)
    truth_path(bag_dir).unlink(missing_ok=True)
    bag_dir.parent.mkdir(parents=True, exist_ok=True)
    period_ns = int(round(1e9 / hz))
    stamps = []
    with SensorBagWriter(bag_dir, 'mcap', topics) as writer:
        for k, (fid, calib) in enumerate(zip(ids, calibs)):
            stamp = start_ns + k * period_ns
            writer.write_frame(BagFrame(points=read_velodyne(split / 'velodyne' / f'{fid}.bin'),
                                        image=read_image_rgb(split / 'image_2' / f'{fid}.png'), K=calib['K'],
                                        T_cam_lidar=T_nominal, stamp_ns=stamp))
            stamps.append(stamp)
        counts = dict(writer.counts)
    rot, trans = pose_error(T_nominal, T_true)
    truth = {'source': 'kitti', 'kitti_dir': str(split), 'frames': ids, 'T_cam_lidar_true': T_true.tolist(),
             'T_cam_lidar_nominal': T_nominal.tolist(), 'error_deg': rot, 'error_m': trans,
             'error_seed': int(error_seed), 'counts': counts, 'stamps_ns': stamps}
    write_truth(bag_dir, truth)
    return bag_dir, counts, truth
