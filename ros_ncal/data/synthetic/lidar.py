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


def sweep_blocks(cfg: LidarConfig) -> list[tuple[int, int, float]]:
    """Blocks of azimuth steps fired together: (first step, count, firing time relative to the stamp in s).

    Without motion distortion one block fires at the stamp. With it, the head spins clockwise seen from
    above (like an HDL-64E) and faces forward (+x) at the stamp, so the sweep runs from
    -scan_period/2 (facing backwards, left side first) to +scan_period/2; ``distortion_blocks`` blocks
    approximate the continuous sweep.
    """
    n = cfg.n_azimuth
    if not cfg.motion_distortion:
        return [(0, n, 0.0)]
    out = []
    for cols in np.array_split(np.arange(n), min(cfg.distortion_blocks, n)):
        start, count = int(cols[0]), len(cols)
        az = (start + count / 2) * 2 * np.pi / n
        az = (az + np.pi) % (2 * np.pi) - np.pi  # (-pi, pi], 0 = forward
        out.append((start, count, float(-az / (2 * np.pi) * cfg.scan_period_s)))
    return out


def scan(scene: Scene, T_world_lidar: np.ndarray, cfg: LidarConfig, time_s: float, rng: np.random.Generator,
         ego_velocity: np.ndarray | None = None):
    """One revolution stamped ``time_s`` (sensor pose ``T_world_lidar`` at the stamp).

    With ``cfg.motion_distortion`` each block of azimuth steps fires at its own time: the sensor has moved
    by ``ego_velocity`` (3,) world m/s and moving things have advanced, and the points are reported in
    the sensor frame of their firing time, as an unsynchronised driver does (no deskewing).
    Returns points (N, 4) float32 (x, y, z, intensity; LiDAR frame), labels (N,) int32,
    instance (N,) int32, in beam-major order.
    """
    elevations = np.deg2rad(beam_elevations_deg(cfg))
    velocity = np.zeros(3) if ego_velocity is None else np.asarray(ego_velocity, np.float64).reshape(3)
    parts = []
    for start, count, dt in sweep_blocks(cfg):
        grid = SpinningGrid(origin=T_world_lidar[:3, 3] + velocity * dt, R_world_lidar=T_world_lidar[:3, :3].copy(),
                            elevations_rad=elevations, n_azimuth=cfg.n_azimuth, col_start=start, col_count=count)
        t, hit = cast(grid, scene, time_s + dt, max_t=cfg.max_range_m)
        local = np.flatnonzero(np.isfinite(t) & (t >= cfg.min_range_m))
        t, hit = t[local], hit[local]
        d_world = grid.directions[local]
        p_world = grid.origin + t[:, None] * d_world
        normals = surface_normals(p_world, hit, scene, time_s + dt)
        _, refl, labels, instance = surface_properties(p_world, normals, hit, scene, time_s + dt, detail=False)
        cos_inc = np.abs(np.einsum('ij,ij->i', normals, d_world))
        ray_index = (local // count) * cfg.n_azimuth + start + local % count  # in the full revolution
        parts.append((ray_index, t, grid.directions_lidar[local], refl * (0.25 + 0.75 * cos_inc), labels, instance))
    ray_index, t, d_lidar, strength, labels, instance = (np.concatenate(x) for x in zip(*parts))
    order = np.argsort(ray_index, kind='stable')  # beam-major, as one revolution
    t, d_lidar, strength, labels, instance = t[order], d_lidar[order], strength[order], labels[order], instance[order]
    drop_p = cfg.dropout_prob + cfg.dark_dropout_prob * (1.0 - np.clip(strength, 0, 1)) ** 4
    keep = rng.random(len(t)) >= drop_p
    rng_noise = rng.normal(0.0, cfg.range_noise_m, len(t))
    int_noise = rng.normal(0.0, cfg.intensity_noise, len(t))
    r = (t + rng_noise)[keep]
    intensity = np.clip(strength + int_noise, 0.0, 1.0)[keep]
    xyz = d_lidar[keep] * r[:, None]
    points = np.concatenate([xyz, intensity[:, None]], axis=1).astype(np.float32)
    return points, labels[keep], instance[keep]
