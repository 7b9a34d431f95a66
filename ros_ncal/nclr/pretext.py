"""The NCLR pretext task: hide the camera-LiDAR pose behind a random rigid perturbation.

From a Sample with a known extrinsic ``T_cam_lidar`` (the truth), draw a perturbation and express
the cloud in a wrong frame "in"; the network must recover ``T_cam_in`` (maps input-frame points
into the camera optical frame). Ground truth comes from the recorded extrinsic: no labels.

* preset 'calib': the input frame is the camera frame of a wrong guess ``T_init = E @ T_true``
  (E: random axis, bounded angle and translation), so ``T_cam_in = E^-1``. This is exactly what
  the online calibrator sees at inference (cloud mapped by the nominal extrinsic).
* preset 'wide': the paper's image-to-point setting: the LiDAR cloud is moved by a planar
  perturbation D (yaw anywhere in 360 deg, xy shift ~ N(0, sigma) clipped); ``T_cam_in = T_true D^-1``.

Image augmentation keeps K consistent: resize (scale_intrinsics) and horizontal mirror (the cloud
is mirrored with it, see :func:`mirror_x`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ros_ncal.data.sample import Sample
from ros_ncal.geometry import (in_image_mask, invert, project_points, random_perturbation,
                               random_planar_perturbation, scale_intrinsics, transform_points)

from .config import InputConfig, PerturbationConfig

MIRROR_X = np.diag([-1.0, 1.0, 1.0, 1.0])


@dataclass
class PretextItem:
    """One network input with its ground truth.

    points: (N, 4) float32, xyz in the input frame + intensity.
    image: (H, W, 3) uint8 RGB resized to the network size; K: (3, 3) intrinsics of that image.
    T_cam_in: (4, 4) ground-truth transform input frame -> camera (identity-free: the answer).
    T_in_lidar: (4, 4) how the input frame was made from the LiDAR frame.
    uv_gt: (N, 2) float32 true pixel of every point in the resized image (NaN behind the camera).
    overlap_gt: (N,) bool, the point projects inside the image with the true pose.
    """
    points: np.ndarray
    image: np.ndarray
    K: np.ndarray
    T_cam_in: np.ndarray
    T_in_lidar: np.ndarray
    uv_gt: np.ndarray
    overlap_gt: np.ndarray


def true_extrinsic(sample: Sample) -> np.ndarray:
    """The best-known true T_cam_lidar: meta['T_cam_lidar_true'] (synthetic drives with a wrong nominal) else nominal."""
    T = sample.meta.get('T_cam_lidar_true') if sample.meta else None
    return np.asarray(T, dtype=np.float64) if T is not None else sample.T_cam_lidar


def curriculum_scale(cfg: PerturbationConfig, step: int | None) -> float:
    """Linear ramp from start_fraction to 1 over curriculum_steps (1 when no curriculum)."""
    if not cfg.curriculum_steps or step is None:
        return 1.0
    a = min(1.0, max(0.0, step / cfg.curriculum_steps))
    return cfg.start_fraction + (1.0 - cfg.start_fraction) * a


def draw_input_frame(rng: np.random.Generator, T_true: np.ndarray, cfg: PerturbationConfig,
                     step: int | None = None) -> np.ndarray:
    """T_in_lidar for the configured preset (see module docstring)."""
    s = curriculum_scale(cfg, step)
    if cfg.preset == 'calib':
        E = random_perturbation(rng, cfg.max_angle_deg * s, cfg.max_trans_m * s)
        return E @ T_true
    if cfg.preset == 'wide':
        return random_planar_perturbation(rng, cfg.wide_trans_sigma_m * s, cfg.wide_trans_clip_m, 360.0 * s)
    raise ValueError(f"perturbation preset must be 'calib' or 'wide', got {cfg.preset!r}")


def resize_image(image: np.ndarray, K: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """image (H, W, 3) uint8 -> resized (h, w, 3), and K for it."""
    H, W = image.shape[:2]
    h, w = hw
    if (H, W) == (h, w):
        return image, K.copy()
    out = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    return out, scale_intrinsics(K, w / W, h / H)


def select_points(points_in: np.ndarray, K: np.ndarray, hw: tuple[int, int], cfg: InputConfig,
                  rng: np.random.Generator, use_frustum: bool) -> np.ndarray:
    """Indices of the points fed to the network: range gate, optional frustum gate with the input
    guess (the only pose the network may use), random subsample to cfg.max_points."""
    rng_xy = np.linalg.norm(points_in[:, :3], axis=1)
    keep = (rng_xy > 0.5) & (rng_xy < cfg.max_depth * 1.5)
    if use_frustum and cfg.frustum_margin >= 0:
        H, W = hw
        uv, z = project_points(points_in[:, :3], K)
        m = cfg.frustum_margin
        with np.errstate(invalid='ignore'):
            keep &= ((z > cfg.min_depth) & (z < cfg.max_depth) & (uv[:, 0] > -m * W) & (uv[:, 0] < (1 + m) * W)
                     & (uv[:, 1] > -m * H) & (uv[:, 1] < (1 + m) * H))
    idx = np.flatnonzero(keep)
    if len(idx) > cfg.max_points:
        idx = np.sort(rng.choice(idx, cfg.max_points, replace=False))
    return idx


def mirror_x(item: PretextItem) -> PretextItem:
    """Horizontal mirror of image and geometry: u' = W - 1 - u.

    A mirrored image is the view of the scene mirrored about the camera's y-z plane, so with
    M = diag(-1, 1, 1) the new truth is M T M (a proper rotation again) and cx' = W - 1 - cx.
    The input frame is mirrored with the same M, so fx stays positive.
    """
    W = item.image.shape[1]
    K = item.K.copy()
    K[0, 2] = W - 1 - K[0, 2]
    pts = item.points.copy()
    pts[:, 0] = -pts[:, 0]
    uv = item.uv_gt.copy()
    uv[:, 0] = W - 1 - uv[:, 0]
    return PretextItem(points=pts, image=np.ascontiguousarray(item.image[:, ::-1]), K=K,
                       T_cam_in=MIRROR_X @ item.T_cam_in @ MIRROR_X,
                       T_in_lidar=MIRROR_X @ item.T_in_lidar, uv_gt=uv, overlap_gt=item.overlap_gt)


def make_item(sample: Sample, T_in_lidar: np.ndarray, cfg: InputConfig, rng: np.random.Generator,
              T_true: np.ndarray | None = None, use_frustum: bool = True) -> PretextItem:
    """Build a network input from a sample and a chosen input frame.

    T_true None (inference): uv_gt / overlap_gt are computed with the identity guess and are not
    ground truth; T_cam_in is then the identity.
    """
    image, K = resize_image(sample.image, sample.K, tuple(cfg.image_hw))
    pts_in = transform_points(T_in_lidar, sample.points).astype(np.float32)
    idx = select_points(pts_in, K, image.shape[:2], cfg, rng, use_frustum)
    points = np.concatenate([pts_in[idx], sample.points[idx, 3:4]], axis=1).astype(np.float32)
    T_cam_in = np.eye(4) if T_true is None else T_true @ invert(T_in_lidar)
    uv, z = project_points(transform_points(T_cam_in, points[:, :3]), K)
    overlap = in_image_mask(uv, z, image.shape[:2], cfg.min_depth, cfg.max_depth)
    return PretextItem(points=points, image=image, K=K, T_cam_in=T_cam_in, T_in_lidar=T_in_lidar,
                       uv_gt=uv.astype(np.float32), overlap_gt=overlap)


def make_pretext(sample: Sample, rng: np.random.Generator, pert: PerturbationConfig, inp: InputConfig,
                 step: int | None = None) -> PretextItem:
    """Draw a hidden pose for ``sample`` and return the network input with its ground truth."""
    T_true = true_extrinsic(sample)
    T_in_lidar = draw_input_frame(rng, T_true, pert, step)
    item = make_item(sample, T_in_lidar, inp, rng, T_true=T_true, use_frustum=pert.preset == 'calib')
    if inp.color_jitter > 0:
        gain = 1.0 + rng.uniform(-inp.color_jitter, inp.color_jitter, size=3)
        bias = rng.uniform(-inp.color_jitter, inp.color_jitter) * 255
        item.image = np.clip(item.image.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    if inp.hflip_prob > 0 and rng.random() < inp.hflip_prob:
        item = mirror_x(item)
    return item
