"""Build ``rosbags`` message objects (Kilted type store) from msgcodec fields."""
from __future__ import annotations

import numpy as np

from ros_ncal.data.bagfile import typestore  # noqa: F401 (one type store; re-exported)
from ros_ncal.msgcodec import (CameraIntrinsics, intrinsics_to_camera_info_fields, matrix_to_xyz_quat,
                               ns_to_sec_nanosec, rgb_to_image_fields, xyzi_to_cloud_fields)


def _t(name: str):
    return typestore().types[name]


def header(frame_id: str, stamp_ns: int):
    sec, nanosec = ns_to_sec_nanosec(stamp_ns)
    return _t('std_msgs/msg/Header')(stamp=_t('builtin_interfaces/msg/Time')(sec=sec, nanosec=nanosec),
                                     frame_id=str(frame_id))


def pointcloud2(points: np.ndarray, frame_id: str, stamp_ns: int, extras: dict | None = None):
    cf = xyzi_to_cloud_fields(points, extras)
    PF = _t('sensor_msgs/msg/PointField')
    return _t('sensor_msgs/msg/PointCloud2')(
        header=header(frame_id, stamp_ns), height=cf.height, width=cf.width,
        fields=[PF(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in cf.fields],
        is_bigendian=cf.is_bigendian, point_step=cf.point_step, row_step=cf.row_step,
        data=np.frombuffer(cf.data, dtype=np.uint8), is_dense=cf.is_dense)


def image(rgb: np.ndarray, frame_id: str, stamp_ns: int, encoding: str = 'rgb8'):
    f = rgb_to_image_fields(rgb, encoding)
    return _t('sensor_msgs/msg/Image')(header=header(frame_id, stamp_ns), height=f.height, width=f.width,
                                       encoding=f.encoding, is_bigendian=f.is_bigendian, step=f.step,
                                       data=np.frombuffer(f.data, dtype=np.uint8))


def camera_info(intr: CameraIntrinsics, frame_id: str, stamp_ns: int):
    f = intrinsics_to_camera_info_fields(intr)
    roi = _t('sensor_msgs/msg/RegionOfInterest')(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _t('sensor_msgs/msg/CameraInfo')(header=header(frame_id, stamp_ns), height=f['height'],
                                            width=f['width'], distortion_model=f['distortion_model'],
                                            d=np.asarray(f['d'], np.float64), k=np.asarray(f['k'], np.float64),
                                            r=np.asarray(f['r'], np.float64), p=np.asarray(f['p'], np.float64),
                                            binning_x=0, binning_y=0, roi=roi)


def transform_stamped(T_parent_child: np.ndarray, parent_frame: str, child_frame: str, stamp_ns: int):
    xyz, q = matrix_to_xyz_quat(T_parent_child, name=f'T_{parent_frame}_{child_frame}')
    tr = _t('geometry_msgs/msg/Transform')(
        translation=_t('geometry_msgs/msg/Vector3')(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])),
        rotation=_t('geometry_msgs/msg/Quaternion')(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))
    return _t('geometry_msgs/msg/TransformStamped')(header=header(parent_frame, stamp_ns),
                                                    child_frame_id=str(child_frame), transform=tr)


def tf_message(transforms: list):
    return _t('tf2_msgs/msg/TFMessage')(transforms=list(transforms))
