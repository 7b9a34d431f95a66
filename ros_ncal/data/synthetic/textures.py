"""Surface appearance at hit points: albedo for the camera, reflectivity for the LiDAR, labels.

Both sensors read the same functions, so lane markings that look bright are also bright in
LiDAR intensity, and windows that look dark are dark for both (as on real sensors).
"""
from __future__ import annotations

import numpy as np

from . import classes as C
from .noise import fbm2, hash01, value_noise2
from .primitives import box_local
from .raycast import GROUND, MISS
from .scene import (M_ASPHALT, M_BARK, M_FACADE, M_FENCE, M_GLASS, M_GRASS, M_GRAVEL, M_LEAVES, M_SIDEWALK,
                    Scene)

MARKING_HALF_WIDTH_M = 0.07
DASH_PERIOD_M, DASH_LENGTH_M = 6.0, 3.0
TILE_M = 0.6


def _shade(albedo: np.ndarray, m: np.ndarray, factor: np.ndarray) -> None:
    albedo[m] *= np.clip(factor, 0.0, 2.0)[:, None].astype(np.float32)


def surface_properties(points: np.ndarray, normals: np.ndarray, hit: np.ndarray, scene: Scene, time_s: float,
                       detail: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Appearance and labels at world hit points.

    points, normals: (n, 3) world; hit: (n,) primitive index, GROUND or MISS.
    Returns albedo (n, 3) float32 in [0, 1], reflectivity (n,) float32 in [0, 1],
    labels (n,) int32 semantic class, instance (n,) int32. ``detail=False`` skips colour textures
    (the LiDAR needs only reflectivity and labels).
    """
    n = len(hit)
    albedo = np.zeros((n, 3), np.float32)
    refl = np.zeros(n, np.float32)
    labels = np.zeros(n, np.int32)
    instance = np.zeros(n, np.int32)
    prim = hit >= 0
    hp = hit[prim]
    labels[prim] = scene.label[hp]
    instance[prim] = scene.instance[hp]
    albedo[prim] = scene.albedo[hp]
    refl[prim] = scene.reflectivity[hp]
    material = np.full(n, -1, np.int32)
    material[prim] = scene.material[hp]
    x, y, z = points[:, 0], points[:, 1], points[:, 2]

    g = hit == GROUND
    if g.any():
        gl = scene.ground_labels(x[g], y[g])
        labels[g] = gl
        gi = np.flatnonzero(g)
        for cls, color, r, mat in ((C.ROAD, (0.30, 0.30, 0.31), 0.22, M_ASPHALT),
                                   (C.PARKING, (0.36, 0.35, 0.35), 0.25, M_ASPHALT),
                                   (C.SIDEWALK, (0.60, 0.59, 0.56), 0.35, M_SIDEWALK),
                                   (C.TERRAIN, (0.30, 0.45, 0.18), 0.42, M_GRASS),
                                   (C.OTHER_GROUND, (0.55, 0.50, 0.43), 0.3, M_GRAVEL)):
            sel = gi[gl == cls]
            albedo[sel] = color
            refl[sel] = r
            material[sel] = mat
        # Lane markings: dashed centre line, solid lines at the lane / parking boundary.
        ay = np.abs(y)
        dashed = (ay < MARKING_HALF_WIDTH_M) & (np.mod(x, DASH_PERIOD_M) < DASH_LENGTH_M)
        solid = np.abs(ay - scene.lane_width) < MARKING_HALF_WIDTH_M
        mark = g & (dashed | solid)
        albedo[mark] = (0.88, 0.88, 0.85)
        refl[mark] = 0.75

    m = material == M_ASPHALT
    if detail and m.any():
        mark = m & (albedo[:, 0] > 0.8)
        tone = 0.82 + 0.3 * fbm2(x[m] * 1.5, y[m] * 1.5, 3, seed=11) + 0.12 * (hash01(
            np.floor(x[m] * 20), np.floor(y[m] * 20), seed=12) - 0.5)
        tone = np.where(mark[m], 0.95 + 0.05 * tone, tone)
        _shade(albedo, m, tone)
    m = material == M_SIDEWALK
    if m.any() and detail:
        top = normals[m, 2] > 0.5
        fx = np.mod(x[m] / TILE_M, 1.0)
        fy = np.mod(y[m] / TILE_M, 1.0)
        grout = top & ((fx < 0.05) | (fy < 0.05))
        tone = 0.9 + 0.2 * hash01(np.floor(x[m] / TILE_M), np.floor(y[m] / TILE_M), seed=21)
        _shade(albedo, m, np.where(grout, 0.65, tone))
    m = material == M_GRASS
    if m.any() and detail:
        _shade(albedo, m, 0.65 + 0.6 * fbm2(x[m] * 2.0, y[m] * 2.0, 3, seed=31))
    m = material == M_GRAVEL
    if m.any() and detail:
        _shade(albedo, m, 0.7 + 0.3 * fbm2(x[m] * 3.0, y[m] * 3.0, 2, seed=35) + 0.35 * (hash01(
            np.floor(x[m] * 25), np.floor(y[m] * 25), seed=36) - 0.5))
    m = material == M_LEAVES
    if m.any():
        leaf = value_noise2(x[m] * 6.0 + z[m] * 2.3, y[m] * 6.0 - z[m] * 1.7, seed=41)
        refl[m] *= 0.7 + 0.6 * leaf
        if detail:
            _shade(albedo, m, 0.5 + 0.9 * leaf * (0.6 + 0.4 * value_noise2(x[m] * 1.3 - z[m], y[m] * 1.3, seed=42)))
    m = material == M_BARK
    if m.any() and detail:
        ang = np.arctan2(normals[m, 1], normals[m, 0])
        _shade(albedo, m, 0.75 + 0.4 * value_noise2(ang * 4.0, z[m] * 1.5, seed=51))
    m = material == M_FACADE
    if m.any():
        _facade(points, normals, hit, m, scene, time_s, albedo, refl, detail)
    m = material == M_FENCE
    if m.any() and detail:
        u = x[m] + y[m]
        _shade(albedo, m, np.where(np.mod(u / 0.15, 1.0) < 0.3, 0.5, 1.0))
    m = material == M_GLASS
    if m.any() and detail:
        # Sky reflection brightens glass towards the top.
        _shade(albedo, m, 1.0 + 1.2 * np.clip(normals[m, 2], 0, 1))
    labels[hit == MISS] = C.UNLABELED
    return np.clip(albedo, 0, 1), np.clip(refl, 0, 1), labels, instance


def _facade(points, normals, hit, m, scene: Scene, time_s, albedo, refl, detail):
    p = hit[m]
    centers = scene.centers_at(time_s)[p]
    local = box_local(points[m], centers, scene.yaw[p])
    n_local = box_local(normals[m] + centers, centers, scene.yaw[p])
    half = 0.5 * scene.size[p]
    along_x = np.abs(n_local[:, 1]) > 0.5  # faces whose normal is the box's local y run along its x
    u = np.where(along_x, local[:, 0] + half[:, 0], local[:, 1] + half[:, 1])
    face_len = 2 * np.where(along_x, half[:, 0], half[:, 1])
    zz = points[m, 2]
    roof = n_local[:, 2] > 0.5
    seed = scene.tex_seed[p]
    spacing = 2.6 + 1.4 * hash01(seed, seed=61)
    floor_h = 3.0 + 0.6 * hash01(seed, seed=62)
    win_w = spacing * (0.45 + 0.2 * hash01(seed, seed=63))
    fu = np.mod(u, spacing)
    fz = np.mod(zz - 0.8, floor_h)
    window = (~roof) & (fu > (spacing - win_w) / 2) & (fu < (spacing + win_w) / 2) & (fz > 0.9) & (fz < 2.4) & (
        zz > 2.0) & (zz < 2 * half[:, 2] - 0.8) & (u > 0.8) & (u < face_len - 0.8)
    mi = np.flatnonzero(m)
    refl[mi[window]] = 0.08
    if not detail:
        return
    brick_row = np.floor(zz / 0.22)
    brick_col = np.floor(u / 0.5 + 0.5 * np.mod(brick_row, 2))
    mortar = (np.mod(zz / 0.22, 1.0) < 0.1) | (np.mod(u / 0.5 + 0.5 * np.mod(brick_row, 2), 1.0) < 0.05)
    tone = np.where(mortar, 1.18, 0.85 + 0.25 * hash01(brick_row, brick_col, seed=64))
    tone = np.where(roof, 0.45, tone)
    win_id = hash01(np.floor(u / spacing), np.floor((zz - 0.8) / floor_h), seed + 7)
    glass = np.stack([0.10 + 0.25 * win_id, 0.13 + 0.25 * win_id, 0.18 + 0.25 * win_id], axis=1).astype(np.float32)
    a = albedo[mi] * tone[:, None].astype(np.float32)
    a[window] = glass[window]
    # Window frames: a light rim around each window.
    rim = (~window) & (~roof) & (fu > (spacing - win_w) / 2 - 0.12) & (fu < (spacing + win_w) / 2 + 0.12) & (
        fz > 0.78) & (fz < 2.52) & (zz > 2.0) & (zz < 2 * half[:, 2] - 0.7)
    a[rim] = (0.85, 0.84, 0.8)
    albedo[mi] = a
