"""sensor_msgs/CameraInfo <-> intrinsics (pure numpy)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ros_ncal.geometry import validate_K

# distortion model name -> allowed numbers of coefficients (REP-104 / camera_calibration_parsers).
DISTORTION_MODELS: dict[str, tuple[int, ...]] = {
    'plumb_bob': (5,),
    'rational_polynomial': (8, 12, 14),
    'equidistant': (4,),
}


@dataclass
class CameraIntrinsics:
    """K: (3, 3) float64; D: (n,) float64; distortion_model: a name in DISTORTION_MODELS."""
    K: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(5))
    distortion_model: str = 'plumb_bob'
    width: int = 0
    height: int = 0


def validate_distortion(model: str, D: np.ndarray) -> np.ndarray:
    """Check the model name and the number of coefficients; an empty D means no distortion."""
    if model not in DISTORTION_MODELS:
        raise ValueError(f'CameraInfo distortion_model {model!r} is not supported; '
                         f'supported: {sorted(DISTORTION_MODELS)}')
    D = np.asarray(D, dtype=np.float64).reshape(-1)
    if D.size == 0:
        return np.zeros(DISTORTION_MODELS[model][0])
    if D.size not in DISTORTION_MODELS[model]:
        raise ValueError(f'CameraInfo: {model} expects {DISTORTION_MODELS[model]} coefficients, got {D.size}')
    if not np.all(np.isfinite(D)):
        raise ValueError('CameraInfo: distortion coefficients contain NaN or inf')
    return D


def camera_info_to_intrinsics(msg) -> CameraIntrinsics:
    """CameraInfo-like (fields k, d, distortion_model, width, height) -> CameraIntrinsics."""
    K = validate_K(np.asarray(msg.k, dtype=np.float64).reshape(3, 3), name='CameraInfo.k')
    model = str(msg.distortion_model) or 'plumb_bob'
    D = validate_distortion(model, msg.d)
    return CameraIntrinsics(K=K, D=D, distortion_model=model, width=int(msg.width), height=int(msg.height))


def intrinsics_to_camera_info_fields(intr: CameraIntrinsics) -> dict:
    """CameraIntrinsics -> dict of CameraInfo fields (k, d, r, p, distortion_model, width, height).

    r is identity and p = [K | 0] (a rectified monocular camera).
    """
    K = validate_K(np.asarray(intr.K, dtype=np.float64).reshape(3, 3))
    D = validate_distortion(intr.distortion_model, intr.D)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return {'k': K.reshape(-1).copy(), 'd': D.copy(), 'r': np.eye(3).reshape(-1), 'p': P.reshape(-1),
            'distortion_model': intr.distortion_model, 'width': int(intr.width), 'height': int(intr.height)}
