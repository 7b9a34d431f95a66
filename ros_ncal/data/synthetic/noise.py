"""Deterministic procedural noise (integer hash + smooth value noise), vectorized numpy."""
from __future__ import annotations

import numpy as np

_M1, _M2, _M3, _M4 = np.uint32(0x27D4EB2D), np.uint32(0x165667B1), np.uint32(0x9E3779B1), np.uint32(0x85EBCA77)


def hash_u32(*ints: np.ndarray, seed: int = 0) -> np.ndarray:
    """Hash of integer lattice coordinates (same shape arrays) -> uint32, deterministic across platforms."""
    h = np.full(np.shape(ints[0]), ((int(seed) & 0xFFFFFFFF) * 0x9E3779B1 + 0x165667B1) & 0xFFFFFFFF, dtype=np.uint32)
    for a, mult in zip(ints, (_M1, _M2, _M4)):
        h = h ^ (np.asarray(a).astype(np.int64).astype(np.uint32) * mult)
        h = (h ^ (h >> np.uint32(15))) * _M3
    h = (h ^ (h >> np.uint32(13))) * _M4
    return h ^ (h >> np.uint32(16))


def hash01(*ints: np.ndarray, seed: int = 0) -> np.ndarray:
    """Hash of integer coordinates -> float32 in [0, 1)."""
    return (hash_u32(*ints, seed=seed) >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def value_noise2(x: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Smooth 2D value noise in [0, 1] at (x, y) (lattice spacing 1)."""
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32)
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = x - x0
    fy = y - y0
    fx = fx * fx * (3 - 2 * fx)
    fy = fy * fy * (3 - 2 * fy)
    ix = x0.astype(np.int64)
    iy = y0.astype(np.int64)
    a = hash01(ix, iy, seed=seed)
    b = hash01(ix + 1, iy, seed=seed)
    c = hash01(ix, iy + 1, seed=seed)
    d = hash01(ix + 1, iy + 1, seed=seed)
    return (a + (b - a) * fx) + ((c + (d - c) * fx) - (a + (b - a) * fx)) * fy


def fbm2(x: np.ndarray, y: np.ndarray, octaves: int = 3, seed: int = 0) -> np.ndarray:
    """Fractal sum of value noise octaves, normalised to [0, 1]."""
    total = np.zeros(np.shape(x), np.float32)
    amp, norm, freq = 1.0, 0.0, 1.0
    for o in range(octaves):
        total += np.float32(amp) * value_noise2(np.asarray(x) * freq, np.asarray(y) * freq, seed=seed + 101 * o)
        norm += amp
        amp *= 0.5
        freq *= 2.0
    return total / np.float32(norm)
