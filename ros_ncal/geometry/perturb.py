"""Random rigid perturbations with bounded rotation angle and translation."""
from __future__ import annotations

import numpy as np

from .se3 import make_T, rotvec_to_matrix


def random_unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) directions uniform on the sphere."""
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def random_perturbation(rng: np.random.Generator, max_angle_deg: float, max_trans_m: float,
                        min_angle_deg: float = 0.0, min_trans_m: float = 0.0) -> np.ndarray:
    """A (4, 4) rigid transform whose rotation angle lies in [min, max] deg about a uniform random
    axis and whose translation norm lies in [min, max] m along a uniform random direction."""
    if max_angle_deg < min_angle_deg or max_trans_m < min_trans_m:
        raise ValueError('perturbation bounds: max must be >= min')
    angle = np.deg2rad(rng.uniform(min_angle_deg, max_angle_deg))
    axis = random_unit_vectors(rng, 1)[0]
    dist = rng.uniform(min_trans_m, max_trans_m)
    direction = random_unit_vectors(rng, 1)[0]
    return make_T(rotvec_to_matrix(axis * angle), direction * dist)


def random_planar_perturbation(rng: np.random.Generator, trans_sigma_m: float = 4.0, trans_clip_m: float = 15.0,
                               max_yaw_deg: float = 360.0) -> np.ndarray:
    """The paper's wide pretext setting: xy shift ~ N(0, sigma) clipped, yaw uniform, no z/roll/pitch.

    Returned as a transform of the LiDAR cloud about its own z axis (LiDAR frame)."""
    t = np.clip(rng.normal(0.0, trans_sigma_m, size=2), -trans_clip_m, trans_clip_m)
    yaw = np.deg2rad(rng.uniform(0.0, max_yaw_deg))
    return make_T(rotvec_to_matrix([0.0, 0.0, yaw]), [t[0], t[1], 0.0])
