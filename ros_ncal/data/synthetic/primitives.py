"""Geometric primitives of the synthetic world and their analytic ray intersections.

Kinds: oriented boxes (yaw about z), axis-aligned ellipsoids, vertical cylinders (with a top cap).
The ground plane z = 0 is handled separately (it is infinite). All functions are vectorized over rays.

Rays: origin ``O`` (3,) or (n, 3), unit direction ``D`` (n, 3), world frame. A miss is ``t = inf``.
"""
from __future__ import annotations

import numpy as np

BOX, ELLIPSOID, CYLINDER = 0, 1, 2
T_MIN = 1e-3  # ignore hits closer than this along a ray (self-intersection guard)

# Corner sign patterns of a box (8, 3) and its 12 edges as corner index pairs.
CORNER_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
BOX_EDGES = np.array([(i, j) for i in range(8) for j in range(i + 1, 8)
                      if np.sum(CORNER_SIGNS[i] != CORNER_SIGNS[j]) == 1], dtype=np.int64)


def _yaw_rotate(v: np.ndarray, cos_y: float, sin_y: float) -> np.ndarray:
    """Rotate vectors (..., 3) about z by the angle whose cos/sin are given."""
    out = np.empty_like(v)
    out[..., 0] = cos_y * v[..., 0] - sin_y * v[..., 1]
    out[..., 1] = sin_y * v[..., 0] + cos_y * v[..., 1]
    out[..., 2] = v[..., 2]
    return out


def intersect_box(O: np.ndarray, D: np.ndarray, center: np.ndarray, size: np.ndarray, yaw: float) -> np.ndarray:
    """Slab test against a box (full size l, w, h along its local x, y, z) rotated by yaw about z -> t (n,)."""
    c, s = np.cos(yaw), np.sin(yaw)
    rel = np.asarray(O, np.float64) - center
    ox = c * rel[..., 0] + s * rel[..., 1]
    oy = -s * rel[..., 0] + c * rel[..., 1]
    oz = rel[..., 2]
    dx = c * D[:, 0] + s * D[:, 1]
    dy = -s * D[:, 0] + c * D[:, 1]
    hx, hy, hz = 0.5 * float(size[0]), 0.5 * float(size[1]), 0.5 * float(size[2])
    with np.errstate(divide='ignore', invalid='ignore'):
        inv = 1.0 / dx
        a = (-hx - ox) * inv
        b = (hx - ox) * inv
        tmin = np.fmin(a, b)
        tmax = np.fmax(a, b)
        inv = 1.0 / dy
        a = (-hy - oy) * inv
        b = (hy - oy) * inv
        tmin = np.fmax(tmin, np.fmin(a, b))
        tmax = np.fmin(tmax, np.fmax(a, b))
        inv = 1.0 / D[:, 2]
        a = (-hz - oz) * inv
        b = (hz - oz) * inv
        tmin = np.fmax(tmin, np.fmin(a, b))
        tmax = np.fmin(tmax, np.fmax(a, b))
    t = np.where(tmin > T_MIN, tmin, tmax)
    return np.where((tmax >= tmin) & (t > T_MIN), t, np.inf)


def intersect_ellipsoid(O: np.ndarray, D: np.ndarray, center: np.ndarray, radii: np.ndarray,
                        yaw: float = 0.0) -> np.ndarray:
    """Ray vs ellipsoid with semi-axes ``radii`` along its local x, y, z, rotated by yaw about z -> t (n,)."""
    r = np.asarray(radii, np.float64)
    rel = np.asarray(O, np.float64) - center
    D = np.asarray(D, np.float64)
    if yaw != 0.0:
        c, s = np.cos(yaw), np.sin(yaw)
        rel = _yaw_rotate(rel, c, -s)
        D = _yaw_rotate(D, c, -s)
    o = rel / r
    d = D / r
    a = np.einsum('ij,ij->i', d, d)
    if o.ndim == 1:
        b = d @ o
        cc = np.full(len(d), o @ o - 1.0)
    else:
        b = np.einsum('ij,ij->i', o, d)
        cc = np.einsum('ij,ij->i', o, o) - 1.0
    disc = b * b - a * cc
    with np.errstate(invalid='ignore'):
        sq = np.sqrt(disc)
    t0 = (-b - sq) / a
    t1 = (-b + sq) / a
    t = np.where(t0 > T_MIN, t0, t1)
    return np.where((disc >= 0) & (t > T_MIN), t, np.inf)


def intersect_cylinder(O: np.ndarray, D: np.ndarray, center: np.ndarray, radius: float, height: float) -> np.ndarray:
    """Ray vs vertical cylinder (axis through center, z in center_z +- height/2) with a top cap -> t (n,)."""
    O = np.asarray(O, np.float64)
    ox = O[..., 0] - center[0]
    oy = O[..., 1] - center[1]
    oz = O[..., 2]
    z0 = center[2] - 0.5 * height
    z1 = center[2] + 0.5 * height
    a = D[:, 0] ** 2 + D[:, 1] ** 2
    b = ox * D[:, 0] + oy * D[:, 1]
    cc = ox * ox + oy * oy - radius * radius
    disc = b * b - a * cc
    with np.errstate(invalid='ignore', divide='ignore'):
        sq = np.sqrt(disc)
        ts0 = (-b - sq) / a
        ts1 = (-b + sq) / a
    ts = np.where(ts0 > T_MIN, ts0, ts1)
    zs = oz + ts * D[:, 2]
    t_side = np.where((disc >= 0) & (ts > T_MIN) & (zs >= z0) & (zs <= z1), ts, np.inf)
    with np.errstate(invalid='ignore', divide='ignore'):
        tc = (z1 - oz) / D[:, 2]
        cx = ox + tc * D[:, 0]
        cy = oy + tc * D[:, 1]
    t_cap = np.where((tc > T_MIN) & (cx * cx + cy * cy <= radius * radius), tc, np.inf)
    return np.minimum(t_side, t_cap)


def intersect_ground(O: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Ray vs plane z = 0 seen from above -> t (n,)."""
    oz = np.asarray(O, np.float64)[..., 2]
    with np.errstate(divide='ignore', invalid='ignore'):
        t = -oz / D[:, 2]
    return np.where((D[:, 2] < 0) & (t > T_MIN) & (oz > 0), t, np.inf)


def box_local(points: np.ndarray, center: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """World points (n, 3) -> coordinates in their boxes' local frames; center (n, 3), yaw (n,)."""
    return _yaw_rotate(points - center, np.cos(yaw), -np.sin(yaw))


def normals_box(points: np.ndarray, center: np.ndarray, size: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Outward face normals (n, 3) at surface points of boxes (per-point box parameters)."""
    c, s = np.cos(yaw), np.sin(yaw)
    dx = points[:, 0] - center[:, 0]
    dy = points[:, 1] - center[:, 1]
    lx = c * dx + s * dy
    ly = -s * dx + c * dy
    lz = points[:, 2] - center[:, 2]
    rx = np.abs(lx) / size[:, 0]
    ry = np.abs(ly) / size[:, 1]
    rz = np.abs(lz) / size[:, 2]
    on_x = (rx >= ry) & (rx >= rz)
    on_y = ~on_x & (ry >= rz)
    on_z = ~on_x & ~on_y
    nlx = np.where(on_x, np.sign(lx), 0.0)
    nly = np.where(on_y, np.sign(ly), 0.0)
    out = np.empty_like(points)
    out[:, 0] = c * nlx - s * nly
    out[:, 1] = s * nlx + c * nly
    out[:, 2] = np.where(on_z, np.sign(lz), 0.0)
    return out


def normals_ellipsoid(points: np.ndarray, center: np.ndarray, radii: np.ndarray,
                      yaw: np.ndarray | None = None) -> np.ndarray:
    """Outward unit normals (n, 3) at surface points of ellipsoids (per-point parameters)."""
    if yaw is None:
        n = (points - center) / (radii * radii)
    else:
        c, s = np.cos(yaw), np.sin(yaw)
        local = box_local(points, center, yaw)
        nl = local / (radii * radii)
        n = np.stack([c * nl[:, 0] - s * nl[:, 1], s * nl[:, 0] + c * nl[:, 1], nl[:, 2]], axis=1)
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def normals_cylinder(points: np.ndarray, center: np.ndarray, height: np.ndarray) -> np.ndarray:
    n = np.zeros_like(points)
    n[:, :2] = points[:, :2] - center[:, :2]
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    cap = points[:, 2] >= center[:, 2] + 0.5 * height - 1e-4
    n[cap] = (0.0, 0.0, 1.0)
    return n
