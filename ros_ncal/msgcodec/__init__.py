"""Message codecs: ROS message fields <-> numpy, with no rclpy import.

Every function works on any object with the standard ROS field attributes, so the same
code decodes rclpy messages (live graph) and ``rosbags`` dataclasses (bag files). Encoders
return plain dataclasses / dicts; ``ros_ncal.ros`` builds rclpy messages from them and
``ros_ncal.bag`` builds rosbags messages.
"""
from .camera_info import (DISTORTION_MODELS, CameraIntrinsics, camera_info_to_intrinsics,  # noqa: F401
                          intrinsics_to_camera_info_fields, validate_distortion)
from .image import (IMAGE_ENCODINGS, ImageFields, array_to_image_fields, array_to_rgb, compressed_to_rgb,  # noqa: F401
                    image_to_array, image_to_rgb, rgb_to_image_fields)
from .pointcloud import (POINTFIELD_DTYPES, CloudFields, DecodedCloud, PointFieldSpec, cloud_dtype,  # noqa: F401
                         cloud_to_structured, cloud_to_xyzi, pack_rgb_float, unpack_rgb_float, xyzi_to_cloud_fields)
from .time import NS_PER_S, ns_to_sec_nanosec, stamp_to_ns  # noqa: F401
from .transform import (StampedTransform, matrix_to_xyz_quat, transform_stamped_to_matrix,  # noqa: F401
                        transform_to_matrix)
