"""rclpy messages <-> numpy: thin constructors over :mod:`ros_ncal.msgcodec`.

Decoding functions of msgcodec accept rclpy messages directly; this module adds the
message-building direction (numpy -> sensor_msgs / geometry_msgs / tf2_msgs objects).
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from ros_ncal.msgcodec import (CameraIntrinsics, array_to_image_fields, camera_info_to_intrinsics,  # noqa: F401
                               cloud_to_xyzi, image_to_array, image_to_rgb, intrinsics_to_camera_info_fields,
                               matrix_to_xyz_quat, rgb_to_image_fields, transform_stamped_to_matrix,
                               transform_to_matrix, xyzi_to_cloud_fields)

from .time import ns_to_stamp


def make_header(frame_id: str, stamp_ns: int) -> Header:
    return Header(frame_id=str(frame_id), stamp=ns_to_stamp(stamp_ns))


def points_to_cloud_msg(points: np.ndarray, frame_id: str, stamp_ns: int,
                        extras: dict[str, np.ndarray] | None = None) -> PointCloud2:
    """points: (N, 3|4) float -> PointCloud2 (x, y, z, intensity float32 + extras, e.g. label uint16)."""
    cf = xyzi_to_cloud_fields(points, extras)
    return PointCloud2(header=make_header(frame_id, stamp_ns), height=cf.height, width=cf.width,
                       fields=[PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
                               for f in cf.fields],
                       is_bigendian=cf.is_bigendian, point_step=cf.point_step, row_step=cf.row_step,
                       data=cf.data, is_dense=cf.is_dense)


def cloud_msg_to_points(msg: PointCloud2, drop_nonfinite: bool = True):
    """PointCloud2 -> msgcodec.DecodedCloud (points (N, 4) float32, extras, n_dropped)."""
    return cloud_to_xyzi(msg, drop_nonfinite=drop_nonfinite, extra_fields=None)


def array_to_image_msg(arr: np.ndarray, encoding: str, frame_id: str, stamp_ns: int) -> Image:
    """(H, W[, C]) array already in ``encoding`` layout -> Image."""
    f = array_to_image_fields(arr, encoding)
    return Image(header=make_header(frame_id, stamp_ns), height=f.height, width=f.width, encoding=f.encoding,
                 is_bigendian=f.is_bigendian, step=f.step, data=f.data)


def rgb_to_image_msg(rgb: np.ndarray, frame_id: str, stamp_ns: int, encoding: str = 'rgb8') -> Image:
    """(H, W, 3) uint8 RGB -> Image (rgb8 or bgr8)."""
    f = rgb_to_image_fields(rgb, encoding)
    return Image(header=make_header(frame_id, stamp_ns), height=f.height, width=f.width, encoding=f.encoding,
                 is_bigendian=f.is_bigendian, step=f.step, data=f.data)


def intrinsics_to_camera_info_msg(intr: CameraIntrinsics, frame_id: str, stamp_ns: int) -> CameraInfo:
    fields = intrinsics_to_camera_info_fields(intr)
    return CameraInfo(header=make_header(frame_id, stamp_ns), **fields)


def matrix_to_transform_msg(T: np.ndarray) -> Transform:
    """(4, 4) rigid -> geometry_msgs/Transform (NonRigidTransformError when not rigid)."""
    xyz, q = matrix_to_xyz_quat(T)
    return Transform(translation=Vector3(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])),
                     rotation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))


def matrix_to_transform_stamped(T_parent_child: np.ndarray, parent_frame: str, child_frame: str,
                                stamp_ns: int) -> TransformStamped:
    """T_parent_child (4, 4) -> TransformStamped(header.frame_id=parent, child_frame_id=child)."""
    return TransformStamped(header=make_header(parent_frame, stamp_ns), child_frame_id=str(child_frame),
                            transform=matrix_to_transform_msg(T_parent_child))
