"""Spinning multi-beam LiDAR model: beam table, ray casting, range noise, dropout, intensity."""
from __future__ import annotations

import numpy as np

from .config import LidarConfig
from .raycast import SpinningGrid, cast, surface_normals
from .scene import Scene
from .textures import surface_properties

HDL64_BEAMS_PER_BLOCK = 32


def beam_elevations_deg(cfg: LidarConfig) -> np.ndarray:
    """(n_beams,) elevations in degrees, descending: an HDL-64E-like table (two blocks of 32 beams,
    finer spacing in the upper block), resampled when ``cfg.n_beams`` differs from 64."""
    upper = np.linspace(cfg.elevation_top_deg, cfg.elevation_split_deg, HDL64_BEAMS_PER_BLOCK)
    step_lower = (cfg.elevation_split_deg - cfg.elevation_bottom_deg) / HDL64_BEAMS_PER_BLOCK
    lower = np.linspace(cfg.elevation_split_deg - step_lower, cfg.elevation_bottom_deg, HDL64_BEAMS_PER_BLOCK)
    table = np.concatenate([upper, lower])
    if cfg.n_beams == len(table):
        return table
    return np.interp(np.linspace(0, len(table) - 1, cfg.n_beams), np.arange(len(table)), table)


def scan(scene: Scene, T_world_lidar: np.ndarray, cfg: LidarConfig, time_s: float, rng: np.random.Generator):
    """One revolution at ``time_s`` (no motion distortion).

    Returns points (N, 4) float32 (x, y, z, intensity; LiDAR frame), labels (N,) int32,
    instance (N,) int32, in beam-major order.
    """
    grid = SpinningGrid(origin=T_world_lidar[:3, 3].copy(), R_world_lidar=T_world_lidar[:3, :3].copy(),
                        elevations_rad=np.deg2rad(beam_elevations_deg(cfg)), n_azimuth=cfg.n_azimuth)
    t, hit = cast(grid, scene, time_s, max_t=cfg.max_range_m)
    ok = np.isfinite(t) & (t >= cfg.min_range_m)
    idx = np.flatnonzero(ok)
    t, hit = t[idx], hit[idx]
    d_world = grid.directions[idx]
    p_world = grid.origin + t[:, None] * d_world
    normals = surface_normals(p_world, hit, scene, time_s)
    _, refl, labels, instance = surface_properties(p_world, normals, hit, scene, time_s, detail=False)
    cos_inc = np.abs(np.einsum('ij,ij->i', normals, d_world))
    strength = refl * (0.25 + 0.75 * cos_inc)
    drop_p = cfg.dropout_prob + cfg.dark_dropout_prob * (1.0 - np.clip(strength, 0, 1)) ** 4
    keep = rng.random(len(t)) >= drop_p
    rng_noise = rng.normal(0.0, cfg.range_noise_m, len(t))
    int_noise = rng.normal(0.0, cfg.intensity_noise, len(t))
    r = (t + rng_noise)[keep]
    intensity = np.clip(strength + int_noise, 0.0, 1.0)[keep]
    xyz = grid.directions_lidar[idx[keep]] * r[:, None]
    points = np.concatenate([xyz, intensity[:, None]], axis=1).astype(np.float32)
    return points, labels[keep], instance[keep]
