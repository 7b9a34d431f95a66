"""Pose error metrics: relative rotation error (deg) and relative translation error (m)."""
from __future__ import annotations

import numpy as np

from .se3 import invert


def rotation_angle_deg(R: np.ndarray) -> float:
    """Angle of a (3, 3) rotation in degrees, in [0, 180]."""
    c = (np.trace(np.asarray(R, dtype=np.float64)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def rotation_error_deg(T_est: np.ndarray, T_gt: np.ndarray) -> float:
    """RRE: angle of R_est^T R_gt in degrees."""
    return rotation_angle_deg(np.asarray(T_est)[:3, :3].T @ np.asarray(T_gt)[:3, :3])


def translation_error_m(T_est: np.ndarray, T_gt: np.ndarray) -> float:
    """RTE: Euclidean distance between the translations, in metres."""
    return float(np.linalg.norm(np.asarray(T_est)[:3, 3] - np.asarray(T_gt)[:3, 3]))


def pose_error(T_est: np.ndarray, T_gt: np.ndarray) -> tuple[float, float]:
    """(RRE deg, RTE m)."""
    return rotation_error_deg(T_est, T_gt), translation_error_m(T_est, T_gt)


def relative_transform(T_est: np.ndarray, T_gt: np.ndarray) -> np.ndarray:
    """T_gt^-1 T_est: identity when the estimate is exact."""
    return invert(T_gt) @ np.asarray(T_est, dtype=np.float64)
