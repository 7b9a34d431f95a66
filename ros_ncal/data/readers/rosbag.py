"""rosbag2 (mcap or sqlite3) -> Samples, with no ROS install (``rosbags`` + ros_ncal.msgcodec).

Inputs: a PointCloud2 topic, an Image or CompressedImage topic, a CameraInfo topic and the extrinsic on
``/tf_static`` (any chain of static transforms between the cloud's frame and the image's frame). Topics are
found by message type when not named. Clouds and images are paired by header stamp with the approximate-time
pairer (ros_ncal.data.pairing); unpaired messages (e.g. a camera stamp far from every LiDAR stamp) are counted
skips. A missing CameraInfo or TF is a clear error naming the topic, unless an override YAML provides K
and/or T_cam_lidar. Distorted images (CameraInfo D != 0) are undistorted to the same K (plumb_bob,
rational_polynomial, equidistant: :class:`ros_ncal.geometry.distortion.Rectifier`, as in the nodes), or refused,
per ``distortion``.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ros_ncal.geometry import chain_transform, invert, validate_K, validate_rigid
from ros_ncal.geometry.distortion import UNDISTORT_MODELS, Rectifier
from ros_ncal.msgcodec import camera_info_to_intrinsics, cloud_to_xyzi, compressed_to_rgb, image_to_rgb, stamp_to_ns
from ros_ncal.msgcodec.transform import transform_stamped_to_matrix

from ..pairing import ApproximateTimePairer
from ..sample import InvalidSampleError, Sample
from ..shards import SkipRecord

POINTCLOUD_TYPE = 'sensor_msgs/msg/PointCloud2'
IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
CAMERA_INFO_TYPE = 'sensor_msgs/msg/CameraInfo'
TF_TYPE = 'tf2_msgs/msg/TFMessage'


class BagInputError(ValueError):
    """The bag lacks what a Sample needs (a topic, a transform, intrinsics) or is inconsistent."""


@dataclass
class RosbagReaderConfig:
    """Topic names (None = the one topic of the right type); pairing tolerance; overrides.

    override: YAML with any of K (3x3), D, distortion_model, T_cam_lidar (4x4) or T_lidar_cam (4x4); its
    values replace the bag's CameraInfo / TF. distortion: 'undistort' | 'error' | 'ignore'.
    """

    points_topic: str | None = None
    image_topic: str | None = None
    camera_info_topic: str | None = None
    tf_topic: str = '/tf_static'
    tolerance_ms: float = 50.0
    max_queue: int = 20
    override: str | None = None
    distortion: str = 'undistort'


def load_override(path: str | Path) -> dict:
    """Override YAML -> dict with validated 'K', 'D', 'distortion_model', 'T_cam_lidar' (those present)."""
    import yaml
    d = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(d, dict):
        raise BagInputError(f'{path}: expected a mapping with K and/or T_cam_lidar')
    out: dict = {}
    try:
        if 'K' in d:
            out['K'] = validate_K(np.asarray(d['K'], dtype=np.float64).reshape(3, 3), name=f'{path}: K')
            out['D'] = np.asarray(d.get('D', []), dtype=np.float64).reshape(-1)
            out['distortion_model'] = str(d.get('distortion_model', 'plumb_bob'))
        if 'T_cam_lidar' in d:
            out['T_cam_lidar'] = validate_rigid(np.asarray(d['T_cam_lidar'], np.float64).reshape(4, 4), atol=1e-4,
                                                name=f'{path}: T_cam_lidar')
        elif 'T_lidar_cam' in d:
            out['T_cam_lidar'] = invert(validate_rigid(np.asarray(d['T_lidar_cam'], np.float64).reshape(4, 4),
                                                       atol=1e-4, name=f'{path}: T_lidar_cam'))
    except ValueError as exc:
        raise BagInputError(str(exc)) from exc
    if not out:
        raise BagInputError(f'{path}: override has neither K nor T_cam_lidar / T_lidar_cam')
    return out


def _pick_topic(topics: dict[str, str], counts: dict[str, int], wanted: str | None, types: tuple[str, ...],
                what: str, path) -> str | None:
    if wanted is not None:
        if wanted not in topics:
            raise BagInputError(f'{path}: no topic {wanted} ({what}); topics: {sorted(topics)}')
        if topics[wanted] not in types:
            raise BagInputError(f'{path}: topic {wanted} has type {topics[wanted]}, expected {" or ".join(types)}')
        return wanted if counts.get(wanted, 0) > 0 else None
    cands = [t for t, ty in topics.items() if ty in types and counts.get(t, 0) > 0]
    if len(cands) > 1:
        raise BagInputError(f'{path}: several {what} topics {sorted(cands)}; name one')
    return cands[0] if cands else None


def resolve_static_transform(edges: dict[tuple[str, str], np.ndarray], target: str, source: str) -> np.ndarray:
    """edges: (parent, child) -> T_parent_child. Returns T_target_source through any chain
    (:func:`ros_ncal.geometry.chain_transform`), or raises BagInputError naming the frames on TF."""
    T = chain_transform(edges, target, source)
    if T is None:
        frames = sorted({f for e in edges for f in e})
        raise BagInputError(f'no static transform chain between {target!r} and {source!r}; frames on TF: {frames}')
    return T


def decode_image(msg, msgtype: str) -> np.ndarray:
    """Image / CompressedImage (jpeg, png) -> (H, W, 3) uint8 RGB. Raises BagInputError when undecodable."""
    if msgtype.endswith('CompressedImage'):
        try:
            return compressed_to_rgb(msg.data, getattr(msg, 'format', ''))
        except ValueError as exc:
            raise BagInputError(str(exc)) from exc
    return image_to_rgb(msg)


class _BagScan:
    """First pass: topics, CameraInfo (first message) and the static transforms."""

    def __init__(self, path, cfg: RosbagReaderConfig):
        from ros_ncal.data.bagfile import bag_summary, read_messages
        self.path = path
        summary = bag_summary(path)
        topics, counts = summary.topics, summary.counts
        self.points_topic = _pick_topic(topics, counts, cfg.points_topic, (POINTCLOUD_TYPE,), 'PointCloud2', path)
        self.image_topic = _pick_topic(topics, counts, cfg.image_topic, IMAGE_TYPES, 'Image/CompressedImage', path)
        if self.points_topic is None:
            raise BagInputError(f'{path}: no PointCloud2 messages ({cfg.points_topic or "no PointCloud2 topic"}); '
                                f'topics: {sorted(topics)}')
        if self.image_topic is None:
            raise BagInputError(f'{path}: no Image/CompressedImage messages ({cfg.image_topic or "no image topic"}); '
                                f'topics: {sorted(topics)}')
        self.image_type = topics[self.image_topic]
        self.override = load_override(cfg.override) if cfg.override else {}
        self.caminfo_topic = None
        if 'K' not in self.override:
            self.caminfo_topic = _pick_topic(topics, counts, cfg.camera_info_topic, (CAMERA_INFO_TYPE,), 'CameraInfo',
                                             path)
            if self.caminfo_topic is None:
                raise BagInputError(
                    f'{path}: no CameraInfo messages (topic {cfg.camera_info_topic or "of type CameraInfo"} missing or '
                    f'empty); record the camera_info topic or give K in an override YAML (--override)')
        self.edges: dict[tuple[str, str], np.ndarray] = {}
        if 'T_cam_lidar' not in self.override:
            if counts.get(cfg.tf_topic, 0) == 0 or topics.get(cfg.tf_topic) != TF_TYPE:
                raise BagInputError(f'{path}: no {cfg.tf_topic} messages (the camera-LiDAR extrinsic); record '
                                    f'{cfg.tf_topic} or give T_cam_lidar in an override YAML (--override)')
        wanted = [t for t in (self.caminfo_topic, cfg.tf_topic if 'T_cam_lidar' not in self.override else None) if t]
        # every CameraInfo (small) and every static-TF state, by header stamp: a frame uses the latest at its stamp
        self.caminfos: list[tuple[int, object]] = []
        self.tf_states: list[tuple[int, dict]] = []
        edges: dict[tuple[str, str], np.ndarray] = {}
        for m in read_messages(path, wanted, check_counts=False):
            if m.topic == self.caminfo_topic:
                self.caminfos.append((stamp_to_ns(m.msg.header.stamp), camera_info_to_intrinsics(m.msg)))
            elif m.topic == cfg.tf_topic:
                stamp = None
                for ts in m.msg.transforms:
                    st = transform_stamped_to_matrix(ts)
                    edges[(st.parent_frame.lstrip('/'), st.child_frame.lstrip('/'))] = st.T_parent_child
                    stamp = st.stamp_ns if stamp is None else max(stamp, st.stamp_ns)
                self.tf_states.append((stamp or 0, dict(edges)))
        self.caminfos.sort(key=lambda x: x[0])
        self.tf_states.sort(key=lambda x: x[0])

    @staticmethod
    def at(items: list[tuple[int, object]], stamp_ns: int):
        """The latest item stamped at or before ``stamp_ns`` (the earliest one when all are later)."""
        i = bisect.bisect_right([s for s, _ in items], stamp_ns) - 1
        return items[max(i, 0)][1]


def iter_rosbag_samples(path: str | Path, cfg: RosbagReaderConfig | None = None) -> Iterator[Sample | SkipRecord]:
    """Samples of a bag, in LiDAR-stamp order; SkipRecords for unpaired / undecodable messages.

    Raises BagInputError up front for a bag that cannot give Samples (missing topic, CameraInfo, TF).
    """
    from ros_ncal.data.bagfile import read_messages
    cfg = cfg or RosbagReaderConfig()
    scan = _BagScan(path, cfg)
    ov = scan.override
    if cfg.distortion not in ('undistort', 'error', 'ignore'):
        raise ValueError(f"distortion must be 'undistort', 'error' or 'ignore', got {cfg.distortion!r}")
    rectify = Rectifier()                       # one map, rebuilt when the CameraInfo changes
    T_cache: dict[tuple, np.ndarray] = {}

    def intrinsics(image_stamp_ns: int, hw: tuple[int, int], rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """-> (K, rgb rectified as configured, undistorted?)"""
        if 'K' in ov:
            K, D, model = ov['K'], ov['D'], ov['distortion_model']
        else:
            ci = scan.at(scan.caminfos, image_stamp_ns)
            K, D, model = ci.K, ci.D, ci.distortion_model
            if ci.width and ci.height and (ci.height, ci.width) != tuple(hw):
                raise BagInputError(f'image is {hw[0]}x{hw[1]} but CameraInfo says {ci.height}x{ci.width}')
        if not np.any(np.abs(D) > 0) or cfg.distortion == 'ignore':
            return K, rgb, False
        if cfg.distortion == 'error':
            raise BagInputError(f'camera is distorted ({model}, D={np.round(D, 4).tolist()}); record a rectified '
                                "image or use distortion='undistort'")
        if model not in UNDISTORT_MODELS:
            raise BagInputError(f'undistortion supports {", ".join(UNDISTORT_MODELS)}, the camera is {model!r}')
        try:
            return K, rectify(rgb, K, D, model), True
        except ValueError as exc:
            raise BagInputError(str(exc)) from exc

    def extrinsic(lidar_frame: str, cam_frame: str, stamp_ns: int) -> np.ndarray:
        if 'T_cam_lidar' in ov:
            return ov['T_cam_lidar']
        edges = scan.at(scan.tf_states, stamp_ns)
        key = (id(edges), lidar_frame, cam_frame)
        if key not in T_cache:
            T_cache[key] = resolve_static_transform(edges, cam_frame.lstrip('/'), lidar_frame.lstrip('/'))
        return T_cache[key]

    pairer = ApproximateTimePairer(int(cfg.tolerance_ms * 1e6), cfg.max_queue)
    reported = {'camera': {}, 'lidar': {}}

    def new_drops() -> Iterator[SkipRecord]:
        for side in ('camera', 'lidar'):
            for reason, n in pairer.dropped[side].items():
                for _ in range(n - reported[side].get(reason, 0)):
                    yield SkipRecord(f'{side} message', f'unpaired ({reason}): no '
                                     f'{"LiDAR scan" if side == "camera" else "image"} within {cfg.tolerance_ms:g} ms')
                reported[side][reason] = n

    def build(pair) -> Sample | SkipRecord:
        img_msg, cloud_msg = pair.camera, pair.lidar
        what = f'scan@{pair.lidar_stamp_ns}'
        try:
            cloud = cloud_to_xyzi(cloud_msg)
            rgb = decode_image(img_msg, scan.image_type)
            K, rgb, undistorted = intrinsics(pair.camera_stamp_ns, rgb.shape[:2], rgb)
            lidar_frame, cam_frame = str(cloud_msg.header.frame_id), str(img_msg.header.frame_id)
            T = extrinsic(lidar_frame, cam_frame, pair.lidar_stamp_ns)
            return Sample(points=cloud.points, image=rgb, K=K, T_cam_lidar=T,
                          stamp_ns=pair.lidar_stamp_ns, image_stamp_ns=pair.camera_stamp_ns,
                          frame_ids=(lidar_frame, cam_frame),
                          meta={'source': 'rosbag', 'bag': str(path), 'frame': what, 'dt_ms': pair.dt_ns / 1e6,
                                'dropped_nonfinite_points': cloud.n_dropped, 'undistorted': undistorted})
        except BagInputError as exc:
            if 'no static transform chain' in str(exc):
                raise
            return SkipRecord(what, f'{type(exc).__name__}: {exc}')
        except (ValueError, InvalidSampleError) as exc:
            return SkipRecord(what, f'{type(exc).__name__}: {exc}')

    for m in read_messages(path, [scan.points_topic, scan.image_topic], check_counts=False):
        stamp = stamp_to_ns(m.msg.header.stamp)
        pairs = pairer.push_lidar(stamp, m.msg) if m.topic == scan.points_topic else pairer.push_camera(stamp, m.msg)
        yield from new_drops()
        for p in pairs:
            yield build(p)
    for p in pairer.flush():
        yield build(p)
    yield from new_drops()
