"""The NCLR pretext task: hide the camera-LiDAR pose behind a random rigid perturbation.

From a Sample with a known extrinsic ``T_cam_lidar`` (the truth), draw a perturbation and express
the cloud in a wrong frame "in"; the network must recover ``T_cam_in`` (maps input-frame points
into the camera optical frame). Ground truth comes from the recorded extrinsic: no labels.

* preset 'calib': the input frame is the camera frame of a wrong guess ``T_init = E @ T_true``
  (E: random axis, bounded angle and translation), so ``T_cam_in = E^-1``. This is exactly what
  the online calibrator sees at inference (cloud mapped by the nominal extrinsic).
* preset 'wide': the paper's image-to-point setting: the LiDAR cloud is moved by a planar
  perturbation D (yaw anywhere in 360 deg, xy shift ~ N(0, sigma) clipped); ``T_cam_in = T_true D^-1``.

Image augmentation keeps K consistent: crop (crop_intrinsics), resize (scale_intrinsics) and horizontal
mirror (the cloud is mirrored with it, see :func:`mirror_x`). With ``input.keep_aspect`` an image of any size
(1920x1200, 1600x900, ...) is cropped to the network's aspect ratio around its centre instead of being
stretched, at training and at inference alike. Real-data augmentation (training only): random crops and
rescales, photometric jitter (gain, bias, gamma, blur), LiDAR ring subsampling (a 64-beam scan made to look
like a 32- or 16-beam one) and point dropout; see :func:`augment_points` and :func:`network_view`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from ros_ncal.data.sample import Sample, true_extrinsic
from ros_ncal.geometry import (crop_intrinsics, in_image_mask, invert, project_points, random_perturbation,
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


def crop_window(image_hw: tuple[int, int], net_hw: tuple[int, int], cfg: InputConfig,
                rng: np.random.Generator | None) -> tuple[int, int, int, int]:
    """The image window (x0, y0, w, h) fed to the network.

    keep_aspect: the largest centred window with the network's aspect ratio (else the whole image). With a
    generator and ``crop_prob`` (training), a random fraction in ``crop_scale`` of that window at a random place.
    """
    H, W = image_hw
    w, h = W, H
    if cfg.keep_aspect:
        a = net_hw[1] / net_hw[0]
        if W / H > a:
            w = max(1, int(round(H * a)))
        else:
            h = max(1, int(round(W / a)))
    x0, y0 = (W - w) // 2, (H - h) // 2
    if rng is not None and cfg.crop_prob > 0 and rng.random() < cfg.crop_prob:
        s = rng.uniform(*cfg.crop_scale)
        cw, ch = max(8, int(round(w * s))), max(8, int(round(h * s)))
        x0 = int(rng.integers(0, W - cw + 1)) if cfg.keep_aspect else x0 + int(rng.integers(0, w - cw + 1))
        y0 = y0 + int(rng.integers(0, h - ch + 1))
        w, h = cw, ch
    return x0, y0, w, h


def network_view(image: np.ndarray, K: np.ndarray, cfg: InputConfig,
                 rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """image (H, W, 3) uint8 + K -> the network image (cfg.image_hw) and its K (crop, then resize)."""
    x0, y0, w, h = crop_window(image.shape[:2], tuple(cfg.image_hw), cfg, rng)
    if (w, h) != (image.shape[1], image.shape[0]):
        image = image[y0:y0 + h, x0:x0 + w]
        K = crop_intrinsics(K, x0, y0)
    return resize_image(np.ascontiguousarray(image), K, tuple(cfg.image_hw))


def ring_index(points: np.ndarray, bin_deg: float) -> np.ndarray:
    """points: (N, 3+) LiDAR frame -> (N,) int ring id from the elevation angle in bins of ``bin_deg``."""
    el = np.degrees(np.arctan2(points[:, 2], np.hypot(points[:, 0], points[:, 1])))
    return np.floor(el / bin_deg).astype(np.int64)


def augment_points(points: np.ndarray, cfg: InputConfig, rng: np.random.Generator) -> np.ndarray:
    """Training-only LiDAR augmentation: keep every k-th ring (k from ``beam_keep``) and drop a random
    fraction (up to ``point_dropout``) of the rest. points: (N, 4) -> (M, 4), M <= N."""
    if tuple(cfg.beam_keep) in ((), (1,)) and cfg.point_dropout <= 0:
        return points
    keep = np.ones(len(points), bool)
    k = int(rng.choice(np.asarray(cfg.beam_keep))) if len(cfg.beam_keep) else 1
    if k > 1:
        ring = ring_index(points, cfg.beam_bin_deg)
        keep &= (ring - int(rng.integers(0, k))) % k == 0
    if cfg.point_dropout > 0:
        keep &= rng.random(len(points)) >= rng.uniform(0.0, cfg.point_dropout)
    if keep.sum() < 0.1 * len(points):  # never leave a nearly empty cloud
        return points
    return points[keep]


def photometric_jitter(image: np.ndarray, cfg: InputConfig, rng: np.random.Generator) -> np.ndarray:
    """Training-only: per-channel gain, bias, gamma and an optional blur. (H, W, 3) uint8 -> same."""
    img = image.astype(np.float32)
    if cfg.color_jitter > 0:
        gain = 1.0 + rng.uniform(-cfg.color_jitter, cfg.color_jitter, size=3)
        bias = rng.uniform(-cfg.color_jitter, cfg.color_jitter) * 255
        img = img * gain + bias
    img = np.clip(img, 0, 255)
    if cfg.gamma_jitter > 0:
        g = rng.uniform(1.0 - cfg.gamma_jitter, 1.0 + cfg.gamma_jitter)
        img = 255.0 * (img / 255.0) ** g
    out = img.astype(np.uint8)
    if cfg.blur_prob > 0 and rng.random() < cfg.blur_prob:
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5))))
    return out


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
              T_true: np.ndarray | None = None, use_frustum: bool = True, augment: bool = False) -> PretextItem:
    """Build a network input from a sample and a chosen input frame.

    T_true None (inference): uv_gt / overlap_gt are computed with the identity guess and are not
    ground truth; T_cam_in is then the identity. augment (training): random crop and LiDAR augmentation.
    """
    image, K = network_view(sample.image, sample.K, cfg, rng if augment else None)
    src = augment_points(sample.points, cfg, rng) if augment else sample.points
    pts_in = transform_points(T_in_lidar, src).astype(np.float32)
    idx = select_points(pts_in, K, image.shape[:2], cfg, rng, use_frustum)
    points = np.concatenate([pts_in[idx], src[idx, 3:4]], axis=1).astype(np.float32)
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
    item = make_item(sample, T_in_lidar, inp, rng, T_true=T_true, use_frustum=pert.preset == 'calib', augment=True)
    if inp.color_jitter > 0 or inp.gamma_jitter > 0 or inp.blur_prob > 0:
        item.image = photometric_jitter(item.image, inp, rng)
    if inp.hflip_prob > 0 and rng.random() < inp.hflip_prob:
        item = mirror_x(item)
    return item
