"""Geometry: SE(3), pinhole projection, perturbations, pose errors (numpy, no ROS)."""
from .camera import (backproject, crop_intrinsics, flip_intrinsics, in_image_mask, project_lidar,  # noqa: F401
                     project_points, scale_intrinsics, validate_K)
from .frames import chain_transform  # noqa: F401
from .metrics import pose_error, relative_transform, rotation_angle_deg, rotation_error_deg, translation_error_m  # noqa: F401
from .perturb import random_perturbation, random_planar_perturbation, random_unit_vectors  # noqa: F401
from .se3 import (NonRigidTransformError, T_from_xyz_quat, T_to_xyz_quat, compose, extrinsic_from_params,  # noqa: F401
                  invert, is_rigid, make_T,
                  matrix_to_quat, matrix_to_rotvec, orthonormalize, quat_to_matrix, rotvec_to_matrix,
                  transform_points, validate_rigid)
