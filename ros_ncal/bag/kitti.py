"""KITTI object folder -> rosbag2 (``ncal bag write-kitti``)."""
from __future__ import annotations

from pathlib import Path

from ros_ncal.data.kitti_files import kitti_frame_ids, read_image_rgb, read_kitti_calib, read_velodyne

from .topics import BagTopics
from .writer import BagFrame, SensorBagWriter, resolve_bag_output

DEFAULT_START_NS = 1_700_000_000_000_000_000


def kitti_split_dir(kitti_dir: str | Path) -> Path:
    """Accept the dataset root (with training/) or a split folder (with velodyne/)."""
    kitti_dir = Path(kitti_dir)
    if (kitti_dir / 'velodyne').is_dir():
        return kitti_dir
    if (kitti_dir / 'training' / 'velodyne').is_dir():
        return kitti_dir / 'training'
    raise FileNotFoundError(f'{kitti_dir}: neither it nor its training/ has a velodyne/ folder')


def write_kitti_bag(kitti_dir: str | Path, out: str | Path, frames: list[str] | None = None,
                    storage: str | None = None, repeat: int = 1, hz: float = 10.0,
                    start_ns: int = DEFAULT_START_NS, topics: BagTopics | None = None) -> tuple[Path, dict]:
    """Write KITTI frames (each ``repeat`` times, at ``hz``) -> (bag directory, per-topic counts)."""
    split = kitti_split_dir(kitti_dir)
    ids = frames or kitti_frame_ids(split)
    if not ids:
        raise ValueError(f'{split}: no complete frames (velodyne + image_2 + calib)')
    if hz <= 0:
        raise ValueError(f'hz must be positive, got {hz}')
    if repeat < 1:
        raise ValueError(f'repeat must be >= 1, got {repeat}')
    bag_dir, storage = resolve_bag_output(out, storage)
    bag_dir.parent.mkdir(parents=True, exist_ok=True)
    loaded = []
    for fid in ids:
        calib = read_kitti_calib(split / 'calib' / f'{fid}.txt')
        loaded.append((read_velodyne(split / 'velodyne' / f'{fid}.bin'), read_image_rgb(split / 'image_2' / f'{fid}.png'),
                       calib['K'], calib['T_cam_lidar']))
    period_ns = int(round(1e9 / hz))
    with SensorBagWriter(bag_dir, storage, topics) as writer:
        k = 0
        for _ in range(repeat):
            for points, rgb, K, T in loaded:
                writer.write_frame(BagFrame(points=points, image=rgb, K=K, T_cam_lidar=T, stamp_ns=start_ns + k * period_ns))
                k += 1
        counts = dict(writer.counts)
    return bag_dir, counts
