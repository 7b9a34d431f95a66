"""Write synchronized LiDAR / camera frames into a rosbag2 (mcap or sqlite3) with ``rosbags``.

Per frame: PointCloud2 on ``topics.points``, Image (rgb8) on ``topics.image``, CameraInfo on
``topics.camera_info``; the extrinsic goes on ``/tf_static`` as ``T_lidar_cam`` (header.frame_id
= LiDAR frame, child = camera optical frame), written once and again whenever it changes,
with TRANSIENT_LOCAL offered QoS in the metadata (what ``ros2 bag play`` re-offers). The sensor topics are
offered RELIABLE, or BEST_EFFORT with ``sensor_best_effort`` (what a driver's SensorDataQoS records).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ros_ncal.geometry import invert, validate_rigid
from ros_ncal.msgcodec import CameraIntrinsics

from . import rosbags_msgs as rm
from .topics import BagTopics

STORAGE_SUFFIX = {'mcap': '.mcap', 'sqlite3': '.db3'}


@dataclass
class BagFrame:
    """points: (N, 4) float32 LiDAR frame; image: (H, W, 3) uint8 RGB; K: (3, 3); T_cam_lidar: (4, 4)."""
    points: np.ndarray
    image: np.ndarray
    K: np.ndarray
    T_cam_lidar: np.ndarray
    stamp_ns: int
    image_stamp_ns: int | None = None
    D: np.ndarray = field(default_factory=lambda: np.zeros(5))
    distortion_model: str = 'plumb_bob'


def resolve_bag_output(out: str | Path, storage: str | None = None) -> tuple[Path, str]:
    """OUT -> (bag directory, storage). 'x.mcap' / 'x.db3' select the storage and name directory 'x'.

    The storage file is then ``<dir>/<dir name>.mcap|.db3`` (the rosbag2 layout).
    """
    out = Path(out)
    by_suffix = {'.mcap': 'mcap', '.db3': 'sqlite3'}
    if out.suffix in by_suffix:
        if storage and storage != by_suffix[out.suffix]:
            raise ValueError(f'output {out} has suffix {out.suffix} but --storage {storage} was given')
        return out.with_suffix(''), by_suffix[out.suffix]
    storage = storage or 'mcap'
    if storage not in STORAGE_SUFFIX:
        raise ValueError(f'storage must be one of {sorted(STORAGE_SUFFIX)}, got {storage!r}')
    return out, storage


def _qos(transient_local: bool, depth: int, best_effort: bool = False):
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                    QosTime)
    zero = QosTime(sec=0, nsec=0)
    return Qos(history=QosHistory.KEEP_LAST, depth=depth,
               reliability=QosReliability.BEST_EFFORT if best_effort else QosReliability.RELIABLE,
               durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
               deadline=zero, lifespan=zero, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=zero, avoid_ros_namespace_conventions=False)


class SensorBagWriter:
    """Context manager: ``with SensorBagWriter(dir, 'mcap') as w: w.write_frame(frame)``."""

    def __init__(self, bag_dir: str | Path, storage: str = 'mcap', topics: BagTopics | None = None,
                 tf_static_transient_local: bool = True, sensor_best_effort: bool = False):
        from rosbags.rosbag2 import StoragePlugin, Writer
        if storage not in STORAGE_SUFFIX:
            raise ValueError(f'storage must be one of {sorted(STORAGE_SUFFIX)}, got {storage!r}')
        self.bag_dir = Path(bag_dir)
        self.storage = storage
        self.topics = topics or BagTopics()
        self._tf_latched = tf_static_transient_local
        self._sensor_best_effort = sensor_best_effort
        plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        self._writer = Writer(self.bag_dir, version=9, storage_plugin=plugin)
        self._conns: dict[str, object] = {}
        self._last_T: np.ndarray | None = None
        self.counts: dict[str, int] = {}

    @property
    def storage_file(self) -> Path:
        return self.bag_dir / f'{self.bag_dir.name}{STORAGE_SUFFIX[self.storage]}'

    def __enter__(self) -> 'SensorBagWriter':
        self._writer.open()
        ts = rm.typestore()
        tp = self.topics
        for topic, msgtype, latched in ((tp.tf_static, 'tf2_msgs/msg/TFMessage', self._tf_latched),
                                        (tp.points, 'sensor_msgs/msg/PointCloud2', False),
                                        (tp.image, 'sensor_msgs/msg/Image', False),
                                        (tp.camera_info, 'sensor_msgs/msg/CameraInfo', False)):
            self._conns[topic] = (self._writer.add_connection(
                topic, msgtype, typestore=ts, offered_qos_profiles=[
                    _qos(latched, 1 if latched else (5 if self._sensor_best_effort else 10),
                         best_effort=self._sensor_best_effort and topic != tp.tf_static)]), msgtype)
        return self

    def __exit__(self, *exc) -> None:
        self._writer.close()
        if self.storage == 'mcap':      # rosbags writes chunk CRCs as 0: fill them so damage is detected
            from .mcap_crc import seal_mcap
            seal_mcap(self.storage_file)

    def write(self, topic: str, msg, stamp_ns: int) -> None:
        """Serialize ``msg`` (a rosbags object) on a registered topic with log time ``stamp_ns``."""
        conn, msgtype = self._conns[topic]
        self._writer.write(conn, int(stamp_ns), rm.typestore().serialize_cdr(msg, msgtype))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write_extrinsic(self, T_cam_lidar: np.ndarray, stamp_ns: int) -> None:
        """/tf_static: T_lidar_cam with header.frame_id = LiDAR frame, child = camera optical frame."""
        T_cam_lidar = validate_rigid(T_cam_lidar, name='T_cam_lidar')
        tp = self.topics
        ts_msg = rm.transform_stamped(invert(T_cam_lidar), tp.lidar_frame, tp.camera_frame, stamp_ns)
        self.write(tp.tf_static, rm.tf_message([ts_msg]), stamp_ns)
        self._last_T = T_cam_lidar.copy()

    def write_frame(self, frame: BagFrame) -> None:
        tp = self.topics
        if self._last_T is None or not np.allclose(self._last_T, frame.T_cam_lidar, atol=1e-9):
            self.write_extrinsic(frame.T_cam_lidar, frame.stamp_ns)
        img_ns = frame.stamp_ns if frame.image_stamp_ns is None else int(frame.image_stamp_ns)
        self.write(tp.points, rm.pointcloud2(frame.points, tp.lidar_frame, frame.stamp_ns), frame.stamp_ns)
        h, w = frame.image.shape[:2]
        self.write(tp.image, rm.image(frame.image, tp.camera_frame, img_ns), img_ns)
        intr = CameraIntrinsics(K=np.asarray(frame.K, np.float64), D=frame.D, distortion_model=frame.distortion_model,
                                width=w, height=h)
        self.write(tp.camera_info, rm.camera_info(intr, tp.camera_frame, img_ns), img_ns)
