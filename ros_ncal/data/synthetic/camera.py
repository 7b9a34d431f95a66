"""Pinhole camera renderer: per-pixel ray casting, Lambertian sun + ambient shading, shadow map,
procedural textures, sky gradient, distance haze. Produces the RGB image and a per-pixel label image."""
from __future__ import annotations

import numpy as np

from .config import CameraConfig
from .raycast import MISS, OrthoGrid, PinholeGrid, cast, surface_normals
from .scene import Scene
from .textures import surface_properties

SKY_HORIZON = np.array([0.80, 0.86, 0.93], np.float32)
SKY_ZENITH = np.array([0.32, 0.52, 0.85], np.float32)
OVERCAST_HORIZON = np.array([0.82, 0.83, 0.85], np.float32)
OVERCAST_ZENITH = np.array([0.62, 0.64, 0.68], np.float32)
OVERCAST_AMBIENT_GAIN = 1.9  # diffuse sky light replacing the sun on overcast days
MAX_SHADOW_TEXELS_PER_SIDE = 1400


def intrinsics(cfg: CameraConfig) -> np.ndarray:
    """(3, 3) float64 K of the configured camera."""
    return np.array([[cfg.fx, 0.0, cfg.cx], [0.0, cfg.fy, cfg.cy], [0.0, 0.0, 1.0]])


def _sun_visibility(points: np.ndarray, normals: np.ndarray, scene: Scene, time_s: float,
                    cfg: CameraConfig) -> np.ndarray:
    """(n,) float32 in [0, 1]: fraction of the sun visible at world points (2x2 percentage-closer filter)."""
    s = scene.sun_direction
    grid0 = OrthoGrid(toward=s, a0=0.0, b0=0.0, res=1.0, rows=1, cols=1, plane_offset=0.0)
    a = points @ grid0.e1
    b = points @ grid0.e2
    res = cfg.shadow_resolution_m
    pad = 2 * res
    a0, b0 = a.min() - pad, b.min() - pad
    span = max(a.max() + pad - a0, b.max() + pad - b0)
    res = max(res, span / MAX_SHADOW_TEXELS_PER_SIDE)
    rows = int(np.ceil((a.max() + pad - a0) / res))
    cols = int(np.ceil((b.max() + pad - b0) / res))
    lo, hi = scene.aabbs_at(time_s)
    corners_top = np.maximum(hi @ s, lo @ s).max() if len(lo) else 0.0
    grid = OrthoGrid(toward=s, a0=a0, b0=b0, res=res, rows=rows, cols=cols,
                     plane_offset=float(max(corners_top, (points @ s).max()) + 5.0 + np.abs(s).sum() * 50))
    depth_map, _ = cast(grid, scene, time_s, include_ground=False)
    depth_map = depth_map.reshape(rows, cols)
    r, c, depth = grid.coords(points)
    ndl = np.clip(normals @ s, 0.05, 1.0)
    bias = cfg.shadow_bias_m + res * np.minimum(np.sqrt(1 - ndl ** 2) / ndl, 4.0)
    r0 = np.floor(r).astype(np.int64)
    c0 = np.floor(c).astype(np.int64)
    vis = np.zeros(len(points), np.float32)
    for dr in (0, 1):
        for dc in (0, 1):
            rr = np.clip(r0 + dr, 0, rows - 1)
            cc = np.clip(c0 + dc, 0, cols - 1)
            vis += (depth_map[rr, cc] >= depth - bias)
    return vis / 4.0


def render(scene: Scene, T_world_cam: np.ndarray, cfg: CameraConfig, time_s: float, rng: np.random.Generator):
    """Render the camera at world pose ``T_world_cam`` (optical frame).

    Returns image (H, W, 3) uint8 RGB, pixel_labels (H, W) int32, depth (H, W) float32 along the
    optical axis (inf for sky).
    """
    H, W = cfg.height, cfg.width
    grid = PinholeGrid(origin=T_world_cam[:3, 3].copy(), R_world_cam=T_world_cam[:3, :3].copy(),
                       K=intrinsics(cfg), height=H, width=W)
    t, hit = cast(grid, scene, time_s)
    D = grid.directions
    color = np.empty((H * W, 3), np.float32)
    # Sky: gradient with elevation of the viewing ray.
    horizon, zenith = (OVERCAST_HORIZON, OVERCAST_ZENITH) if scene.overcast else (SKY_HORIZON, SKY_ZENITH)
    up = np.clip(D[:, 2], 0.0, 1.0).astype(np.float32) ** 0.6
    color[:] = horizon + (zenith - horizon) * up[:, None]
    labels = np.zeros(H * W, np.int32)
    idx = np.flatnonzero(hit != MISS)
    th, hh = t[idx], hit[idx]
    P = grid.origin + th[:, None] * D[idx]
    N = surface_normals(P, hh, scene, time_s)
    albedo, _, lab, _ = surface_properties(P, N, hh, scene, time_s, detail=True)
    labels[idx] = lab
    s = scene.sun_direction
    ndl = np.clip(N @ s, 0.0, 1.0).astype(np.float32)
    lit = np.ones(len(idx), np.float32)
    ambient, sun_strength = cfg.ambient, cfg.sun_strength
    if scene.overcast:
        ambient, sun_strength = cfg.ambient * OVERCAST_AMBIENT_GAIN, 0.0
    elif cfg.shadows:
        near = (th < cfg.shadow_max_distance_m) & (ndl > 0)
        if near.any():
            lit[near] = _sun_visibility(P[near], N[near], scene, time_s, cfg)
    sky_light = (0.85 + 0.15 * N[:, 2]).astype(np.float32)
    shade = ambient * sky_light + sun_strength * ndl * lit
    c = albedo * shade[:, None]
    haze = (1.0 - np.exp(-th / cfg.haze_distance_m)).astype(np.float32)[:, None]
    color[idx] = c * (1 - haze) + horizon * haze
    img = color.reshape(H, W, 3) * (scene.exposure * 255.0)
    if cfg.pixel_noise > 0:
        img += rng.normal(0.0, cfg.pixel_noise, img.shape).astype(np.float32)
    image = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    depth = np.full(H * W, np.inf, np.float32)
    depth[idx] = th * grid.directions_cam[idx, 2]
    return image, labels.reshape(H, W), depth.reshape(H, W)
