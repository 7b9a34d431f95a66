"""KITTI raw drive -> rosbag2 as a robot records it (``ncal bag write-kitti-raw``).

The drive's frames in order at their stamps (10 Hz), PointCloud2 / Image (rgb8, rectified) / CameraInfo offered
BEST_EFFORT like a driver's SensorDataQoS, and ``/tf_static`` (latched) carrying the *nominal* extrinsic: the
recorded one, or, with an error, the recorded one moved off by exactly (error_deg, error_m) along a seeded
axis / direction (:func:`ros_ncal.bag.perturbed.wrong_extrinsic`). The truth (the day's calibration) goes into
``<bag>.truth.json`` beside the bag (the format of the shared rig bags' truth files, plus the demo's
``T_cam_lidar_true`` / ``T_cam_lidar_nominal`` keys), never into a message.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ros_ncal.data.readers.kitti_raw import KittiRawReaderConfig, open_kitti_raw_drive, read_kitti_raw_frame
from ros_ncal.data.sample import InvalidSampleError
from ros_ncal.geometry import T_to_xyz_quat, invert, pose_error

from .perturbed import truth_path, wrong_extrinsic, write_truth
from .topics import BagTopics
from .writer import BagFrame, SensorBagWriter, resolve_bag_output


def parse_frame_range(text: str | None, n: int) -> slice:
    """'A:B' (Python slice of the drive's frame list, either end optional) / None -> slice; ValueError when
    it selects no frame of ``n``."""
    if text is None or text == '':
        return slice(None)
    parts = text.split(':')
    if len(parts) != 2:
        raise ValueError(f'frames: expected A:B (e.g. 0:20), got {text!r}')
    try:
        sl = slice(*(int(p) if p.strip() else None for p in parts))
    except ValueError:
        raise ValueError(f'frames: expected integers A:B, got {text!r}') from None
    if not range(n)[sl]:
        raise ValueError(f'frames {text!r} selects none of the {n} frames')
    return sl


def write_kitti_raw_bag(drive_dir: str | Path, out: str | Path, error_deg: float = 0.0, error_m: float = 0.0,
                        error_seed: int = 0, frames: slice | None = None, storage: str | None = None,
                        topics: BagTopics | None = None, reader: KittiRawReaderConfig | None = None,
                        overwrite: bool = False) -> tuple[Path, dict, dict]:
    """Write the drive (``frames``: a slice of its frame list) -> (bag directory, per-topic counts, truth dict).

    truth keys: the rig-bag format (``T_cam_lidar`` / ``T_lidar_cam`` = truth, ``parent_frame``, ``child_frame``,
    ``camera``, ``topics``, ``frames``, ...) and ``T_cam_lidar_true``, ``T_cam_lidar_nominal``, ``error_deg``,
    ``error_m`` (measured nominal vs truth), ``error_seed``, ``stamps_ns``, ``counts``.
    Raises FileNotFoundError / ValueError / FileExistsError (an existing output without ``overwrite``).
    """
    cfg = reader or KittiRawReaderConfig()
    tp = topics or BagTopics()
    drive = open_kitti_raw_drive(drive_dir, cfg)
    index = list(range(len(drive.frames)))[frames or slice(None)]
    if not index:
        raise ValueError(f'{drive_dir}: the frame range selects no frame (drive has {len(drive.frames)})')
    bag_dir, storage = resolve_bag_output(out, storage)
    if bag_dir.exists() or truth_path(bag_dir).exists():
        if not overwrite:
            raise FileExistsError(f'{bag_dir} (or its truth file) exists; choose another OUT or overwrite')
        shutil.rmtree(bag_dir, ignore_errors=True)
        truth_path(bag_dir).unlink(missing_ok=True)
    bag_dir.parent.mkdir(parents=True, exist_ok=True)
    T_true = drive.calib['T_cam_lidar']
    T_nominal = wrong_extrinsic(T_true, error_deg, error_m, error_seed)
    written, skipped = [], []
    hw = None
    with SensorBagWriter(bag_dir, storage, tp, sensor_best_effort=True) as writer:
        for i in index:
            try:
                s = read_kitti_raw_frame(drive, i, cfg)
            except (OSError, ValueError, InvalidSampleError) as exc:
                skipped.append({'frame': drive.frames[i], 'reason': f'{type(exc).__name__}: {exc}'})
                continue
            hw = s.image_hw
            writer.write_frame(BagFrame(points=s.points, image=s.image, K=s.K, T_cam_lidar=T_nominal,
                                        stamp_ns=s.stamp_ns, image_stamp_ns=s.image_stamp_ns))
            written.append({'frame': drive.frames[i], 'lidar_stamp_ns': s.stamp_ns, 'image_stamp_ns': s.image_stamp_ns,
                            'points_written': s.num_points,
                            'dropped_non_finite': s.meta['dropped_nonfinite_points']})
        counts = dict(writer.counts)
    if not written:
        shutil.rmtree(bag_dir, ignore_errors=True)
        raise ValueError(f'{drive_dir}: no readable frame in the range ({skipped[0]["reason"] if skipped else ""})')
    rot, trans = pose_error(T_nominal, T_true)
    xyz, q = T_to_xyz_quat(invert(T_true))
    K = drive.calib['K']
    truth = {
        'bag': bag_dir.name, 'storage': storage, 'ros_distro': _distro(),
        'parent_frame': tp.lidar_frame, 'child_frame': tp.camera_frame,
        'T_lidar_cam': invert(T_true).tolist(),
        'T_lidar_cam_meaning': 'pose of the camera optical frame in the lidar frame: p_lidar = T_lidar_cam @ p_cam '
                               '(row-major 4x4); camera optical frame is x right, y down, z forward',
        'T_cam_lidar': T_true.tolist(), 'translation_xyz_m': xyz.tolist(), 'quaternion_xyzw': q.tolist(),
        'camera': {'width': int(hw[1]), 'height': int(hw[0]), 'K': K.tolist(), 'D': [0.0] * 5,
                   'distortion_model': 'plumb_bob', 'D_order': 'k1 k2 p1 p2 k3',
                   'image_rectified_by_converter': False,
                   'note': f'KITTI rectified image_{cfg.camera:02d}: K = P_rect_{cfg.camera:02d}[:, :3], the '
                           'baseline offset of P_rect folded into the extrinsic'},
        'topics': {tp.points: 'sensor_msgs/msg/PointCloud2', tp.image: 'sensor_msgs/msg/Image',
                   tp.camera_info: 'sensor_msgs/msg/CameraInfo', tp.tf_static: 'tf2_msgs/msg/TFMessage'},
        'stamps': f'{drive.stamps_source} (log time = header stamp)', 'frames': written, 'skipped': skipped,
        'source': {'dataset': 'KITTI raw (synced)', 'drive_dir': str(drive.drive_dir),
                   'calib_dir': str(drive.calib_dir), 'camera': f'image_{cfg.camera:02d}',
                   'license': 'KITTI raw: CC BY-NC-SA 3.0'},
        'conventions': ['T_cam_lidar = [I | K^-1 P_rect[:, 3]] @ R_rect_00 @ [R | T] (calib_velo_to_cam): Velodyne '
                        '-> rectified camera optical frame, as ros_ncal.data.kitti_files.read_kitti_raw_calib',
                        '/tf_static carries the nominal (T_cam_lidar_nominal), not this truth'],
        # the demo's and `ncal calibrate --truth`'s keys
        'T_cam_lidar_true': T_true.tolist(), 'T_cam_lidar_nominal': T_nominal.tolist(),
        'error_deg': rot, 'error_m': trans, 'error_seed': int(error_seed),
        'counts': counts, 'stamps_ns': [f['lidar_stamp_ns'] for f in written],
    }
    write_truth(bag_dir, truth)    # written last: its presence marks a complete bag
    return bag_dir, counts, truth


def _distro() -> str:
    """The ROS 2 distribution whose message definitions the bag uses (that of rosbags_msgs.typestore)."""
    from rosbags.typesys import Stores
    for name in ('ROS2_KILTED', 'ROS2_JAZZY', 'ROS2_HUMBLE'):     # the order rosbags_msgs.typestore tries
        if hasattr(Stores, name):
            return name.split('_', 1)[1].lower()
    return '?'
