"""geometry_msgs/Transform(Stamped) <-> 4x4 matrices (pure numpy).

A TransformStamped with header.frame_id = parent and child_frame_id = child carries
``T_parent_child`` (it maps points from the child frame into the parent frame).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ros_ncal.geometry import T_from_xyz_quat, T_to_xyz_quat, validate_rigid

from .time import stamp_to_ns


@dataclass
class StampedTransform:
    """T_parent_child: (4, 4) float64; stamp_ns: int."""
    T_parent_child: np.ndarray
    parent_frame: str
    child_frame: str
    stamp_ns: int = 0


def transform_to_matrix(transform) -> np.ndarray:
    """Transform-like (translation.x/y/z, rotation.x/y/z/w) -> (4, 4) float64.

    Raises ValueError for a zero or non-finite quaternion; a quaternion off unit norm by more
    than 1e-3 is rejected (NonRigidTransformError) rather than silently renormalized.
    """
    t, q = transform.translation, transform.rotation
    xyz = np.array([t.x, t.y, t.z], dtype=np.float64)
    quat = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    if not (np.all(np.isfinite(xyz)) and np.all(np.isfinite(quat))):
        raise ValueError('Transform contains NaN or inf')
    norm = float(np.linalg.norm(quat))
    if norm < 1e-12:
        raise ValueError('Transform rotation quaternion is zero')
    if abs(norm - 1.0) > 1e-3:
        from ros_ncal.geometry import NonRigidTransformError
        raise NonRigidTransformError(f'Transform rotation quaternion has norm {norm:.6f}, expected 1')
    return T_from_xyz_quat(xyz, quat / norm)


def transform_stamped_to_matrix(msg) -> StampedTransform:
    """TransformStamped-like -> StampedTransform(T_parent_child, parent, child, stamp_ns)."""
    return StampedTransform(T_parent_child=transform_to_matrix(msg.transform), parent_frame=str(msg.header.frame_id),
                            child_frame=str(msg.child_frame_id), stamp_ns=stamp_to_ns(msg.header.stamp))


def matrix_to_xyz_quat(T: np.ndarray, name: str = 'transform') -> tuple[np.ndarray, np.ndarray]:
    """(4, 4) rigid -> (xyz (3,), quat x, y, z, w (4,)); NonRigidTransformError when not rigid."""
    T = validate_rigid(T, name=name)
    return T_to_xyz_quat(T)
