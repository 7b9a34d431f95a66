"""Rigid transforms in SE(3) as 4x4 float64 numpy matrices.

Naming: ``T_target_source`` maps source-frame points into the target frame
(``p_target = T_target_source @ p_source``). Quaternions are (x, y, z, w), as in ROS.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


class NonRigidTransformError(ValueError):
    """A 4x4 matrix that is not a finite rigid transform."""


def make_T(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """R: (3, 3) rotation, t: (3,) translation -> (4, 4) float64 transform."""
    T = np.eye(4)
    T[:3, :3] = np.asarray(R, dtype=np.float64)
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def validate_rigid(T: np.ndarray, atol: float = 1e-5, name: str = 'transform') -> np.ndarray:
    """Return ``T`` as (4, 4) float64 or raise NonRigidTransformError naming the problem."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise NonRigidTransformError(f'{name}: expected shape (4, 4), got {T.shape}')
    if not np.all(np.isfinite(T)):
        raise NonRigidTransformError(f'{name}: contains NaN or inf')
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=atol):
        raise NonRigidTransformError(f'{name}: last row is {T[3].tolist()}, expected [0, 0, 0, 1]')
    R = T[:3, :3]
    ortho_err = float(np.abs(R.T @ R - np.eye(3)).max())
    if ortho_err > atol:
        raise NonRigidTransformError(f'{name}: rotation block is not orthonormal (max |R^T R - I| = {ortho_err:.3g})')
    det = float(np.linalg.det(R))
    if det < 0:
        raise NonRigidTransformError(f'{name}: rotation block is a reflection (det = {det:.3g})')
    return T


def is_rigid(T: np.ndarray, atol: float = 1e-5) -> bool:
    """True when ``T`` is a finite (4, 4) rigid transform."""
    try:
        validate_rigid(T, atol)
    except NonRigidTransformError:
        return False
    return True


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform: T_b_a -> T_a_b (closed form, exact orthonormal inverse)."""
    T = np.asarray(T, dtype=np.float64)
    R, t = T[:3, :3], T[:3, 3]
    return make_T(R.T, -R.T @ t)


def compose(*Ts: np.ndarray) -> np.ndarray:
    """compose(T_a_b, T_b_c, ...) -> T_a_c (left-to-right matrix product)."""
    out = np.eye(4)
    for T in Ts:
        out = out @ np.asarray(T, dtype=np.float64)
    return out


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """points: (N, 3+) -> (N, 3) float64, the xyz columns mapped by T. Extra columns are dropped."""
    P = np.asarray(points, dtype=np.float64)[:, :3]
    T = np.asarray(T, dtype=np.float64)
    return P @ T[:3, :3].T + T[:3, 3]


def orthonormalize(R: np.ndarray) -> np.ndarray:
    """Nearest rotation matrix (SVD projection), for matrices with small numeric drift."""
    U, _, Vt = np.linalg.svd(np.asarray(R, dtype=np.float64))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle (3,) in radians -> (3, 3) rotation."""
    return Rotation.from_rotvec(np.asarray(rotvec, dtype=np.float64)).as_matrix()


def matrix_to_rotvec(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> axis-angle (3,) in radians, angle in [0, pi]."""
    return Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_rotvec()


def quat_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w), need not be unit -> (3, 3) rotation."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        raise NonRigidTransformError(f'quaternion {q.tolist()} is zero or not finite')
    return Rotation.from_quat(q / n).as_matrix()


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> unit quaternion (x, y, z, w) with w >= 0."""
    q = Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_quat()
    return -q if q[3] < 0 else q


def T_from_xyz_quat(xyz: np.ndarray, q_xyzw: np.ndarray) -> np.ndarray:
    """Translation (3,) + quaternion (x, y, z, w) -> (4, 4)."""
    return make_T(quat_to_matrix(q_xyzw), xyz)


def T_to_xyz_quat(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(4, 4) -> translation (3,), quaternion (x, y, z, w)."""
    T = np.asarray(T, dtype=np.float64)
    return T[:3, 3].copy(), matrix_to_quat(T[:3, :3])


def extrinsic_from_params(T16: list[float], xyz: list[float], quat_xyzw: list[float],
                          name: str = 'extrinsic') -> np.ndarray | None:
    """T_cam_lidar from 16 row-major floats, or from xyz (3) + quaternion x, y, z, w (4); None when unset."""
    if T16:
        if len(T16) != 16:
            raise ValueError(f'parameter {name}.T_cam_lidar: expected 16 numbers (row-major 4x4), got {len(T16)}')
        return validate_rigid(np.asarray(T16, dtype=np.float64).reshape(4, 4), atol=1e-4,
                              name=f'parameter {name}.T_cam_lidar')
    if xyz or quat_xyzw:
        if len(xyz) != 3 or len(quat_xyzw) != 4:
            raise ValueError(f'parameters {name}.xyz / {name}.quat_xyzw: expected 3 and 4 numbers, '
                             f'got {len(xyz)} and {len(quat_xyzw)}')
        q = np.asarray(quat_xyzw, dtype=np.float64)
        if abs(np.linalg.norm(q) - 1.0) > 1e-3:
            raise ValueError(f'parameter {name}.quat_xyzw: quaternion norm {np.linalg.norm(q):.4f} is not 1')
        return T_from_xyz_quat(np.asarray(xyz, dtype=np.float64), q / np.linalg.norm(q))
    return None
