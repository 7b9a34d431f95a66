"""Ray casting of a scene with per-primitive culling on structured ray grids.

A ray grid is a (rows, cols) array of rays whose footprint of any axis-aligned world box can be
bounded by an index rectangle (pinhole camera, spinning LiDAR, orthographic sun view). Each
primitive is then intersected only with the rays of its rectangle(s), which keeps the cost
close to the number of ray/primitive pairs that can actually meet.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .primitives import (BOX, BOX_EDGES, CORNER_SIGNS, CYLINDER, ELLIPSOID, intersect_box, intersect_cylinder,
                         intersect_ellipsoid, intersect_ground, normals_box, normals_cylinder, normals_ellipsoid)
from .scene import Scene

MISS, GROUND = -1, -2  # hit ids besides primitive indices
Rect = tuple[int, int, int, int]  # row0, row1, col0, col1 (exclusive ends)


def _aabb_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Corners (..., 8, 3) of boxes lo, hi (..., 3)."""
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    return mid[..., None, :] + CORNER_SIGNS * half[..., None, :]


def _pack(r0, r1, c0, c1) -> list[list[Rect]]:
    """Per-primitive rectangle lists from (P,) integer arrays; empty rectangles are dropped."""
    ok = (r1 > r0) & (c1 > c0)
    return [[(a, b, c, d)] if k else [] for a, b, c, d, k in
            zip(r0.tolist(), r1.tolist(), c0.tolist(), c1.tolist(), ok.tolist())]


@dataclass
class PinholeGrid:
    """Rays through the pixel centres of a pinhole camera (row = v, col = u).

    origin: (3,) world camera centre; R_world_cam: (3, 3); K: (3, 3); directions: (H*W, 3) unit, world.
    """
    origin: np.ndarray
    R_world_cam: np.ndarray
    K: np.ndarray
    height: int
    width: int
    near: float = 0.05

    def __post_init__(self):
        v, u = np.mgrid[0:self.height, 0:self.width]
        Kinv = np.linalg.inv(self.K)
        d = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1).astype(np.float64) @ Kinv.T
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        self.directions_cam = d
        self.directions = d @ self.R_world_cam.T
        self.shape = (self.height, self.width)

    def rects(self, lo: np.ndarray, hi: np.ndarray) -> list[Rect]:
        """Index rectangles of the rays that can meet the world box lo, hi (3,)."""
        return self.rects_all(lo[None], hi[None])[0]

    def rects_all(self, lo: np.ndarray, hi: np.ndarray) -> list[list[Rect]]:
        """Per box (lo, hi: (P, 3)): the pixel rectangle of its projection, clipped at the near plane."""
        corners = (_aabb_corners(lo, hi) - self.origin) @ self.R_world_cam  # (P, 8, 3) camera frame
        a, b = corners[:, BOX_EDGES[:, 0]], corners[:, BOX_EDGES[:, 1]]  # (P, 12, 3)
        za, zb = a[..., 2], b[..., 2]
        cross = (za - self.near) * (zb - self.near) < 0
        with np.errstate(divide='ignore', invalid='ignore'):
            f = np.where(cross, (self.near - za) / (zb - za), 0.0)
        pts = np.concatenate([corners, a + f[..., None] * (b - a)], axis=1)  # (P, 20, 3)
        valid = np.concatenate([corners[..., 2] >= self.near, cross], axis=1)
        z = np.where(valid, pts[..., 2], 1.0)
        u = np.where(valid, pts[..., 0] / z * self.K[0, 0] + self.K[0, 2], np.nan)
        v = np.where(valid, pts[..., 1] / z * self.K[1, 1] + self.K[1, 2], np.nan)
        any_valid = valid.any(axis=1)
        u = np.where(any_valid[:, None], u, 0.0)
        v = np.where(any_valid[:, None], v, 0.0)
        c0 = np.maximum(np.floor(np.nanmin(u, axis=1)), 0).astype(np.int64)
        c1 = np.minimum(np.ceil(np.nanmax(u, axis=1)) + 1, self.width).astype(np.int64)
        r0 = np.maximum(np.floor(np.nanmin(v, axis=1)), 0).astype(np.int64)
        r1 = np.minimum(np.ceil(np.nanmax(v, axis=1)) + 1, self.height).astype(np.int64)
        r1 = np.where(any_valid, r1, r0)
        return _pack(r0, r1, c0, c1)


@dataclass
class SpinningGrid:
    """Rays of a spinning multi-beam LiDAR (row = beam, top first; col = azimuth step from +x towards +y).

    origin: (3,) world sensor position; R_world_lidar: (3, 3); elevations_rad: (B,) descending.
    col_start, col_count: this grid holds only the azimuth steps [col_start, col_start + col_count) of the
    n_azimuth steps of a revolution (a block of the sweep; default: all of them).
    """
    origin: np.ndarray
    R_world_lidar: np.ndarray
    elevations_rad: np.ndarray
    n_azimuth: int
    col_start: int = 0
    col_count: int | None = None

    def __post_init__(self):
        if self.col_count is None:
            self.col_count = self.n_azimuth - self.col_start
        if not (0 <= self.col_start and self.col_count > 0 and self.col_start + self.col_count <= self.n_azimuth):
            raise ValueError(f'azimuth block [{self.col_start}, {self.col_start + self.col_count}) outside '
                             f'[0, {self.n_azimuth})')
        el = np.asarray(self.elevations_rad, np.float64)
        az = (self.col_start + np.arange(self.col_count)) * (2 * np.pi / self.n_azimuth)
        ce, se = np.cos(el)[:, None], np.sin(el)[:, None]
        d = np.stack([ce * np.cos(az)[None], ce * np.sin(az)[None], np.broadcast_to(se, (len(el), len(az)))], axis=-1)
        self.directions_lidar = d.reshape(-1, 3)
        self.directions = self.directions_lidar @ self.R_world_lidar.T
        self.shape = (len(el), self.col_count)
        self._el_ascending = el[::-1]
        self._step = 2 * np.pi / self.n_azimuth

    def rects(self, lo: np.ndarray, hi: np.ndarray) -> list[Rect]:
        """Index rectangles (1 or 2 when the azimuth span wraps) of the rays that can meet the world box."""
        return self.rects_all(lo[None], hi[None])[0]

    def rects_all(self, lo: np.ndarray, hi: np.ndarray) -> list[list[Rect]]:
        """Per box (lo, hi: (P, 3)): beam rows from conservative elevation bounds (nearest horizontal
        distance), azimuth columns from the corner azimuths, split in two where the span wraps."""
        p = (_aabb_corners(lo, hi) - self.origin) @ self.R_world_lidar  # (P, 8, 3) LiDAR frame
        zmin, zmax = p[..., 2].min(axis=1), p[..., 2].max(axis=1)
        xlo, xhi = p[..., 0].min(axis=1), p[..., 0].max(axis=1)
        ylo, yhi = p[..., 1].min(axis=1), p[..., 1].max(axis=1)
        dx = np.maximum(np.maximum(xlo, -xhi), 0.0)
        dy = np.maximum(np.maximum(ylo, -yhi), 0.0)
        rho_min = np.hypot(dx, dy)
        rho_max = np.hypot(p[..., 0], p[..., 1]).max(axis=1)
        el_hi = np.arctan2(zmax, np.where(zmax > 0, rho_min, rho_max))
        el_lo = np.arctan2(zmin, np.where(zmin < 0, rho_min, rho_max))
        B, n = len(self.elevations_rad), self.n_azimuth
        a0 = np.searchsorted(self._el_ascending, el_lo - 1e-9, side='left')
        a1 = np.searchsorted(self._el_ascending, el_hi + 1e-9, side='right')
        r0, r1 = B - a1, B - a0
        az = np.arctan2(p[..., 1], p[..., 0])
        ref = np.arctan2((ylo + yhi) / 2, (xlo + xhi) / 2)
        rel = (az - ref[:, None] + np.pi) % (2 * np.pi) - np.pi
        c0 = np.floor((ref + rel.min(axis=1)) / self._step).astype(np.int64)
        c1 = np.ceil((ref + rel.max(axis=1)) / self._step).astype(np.int64) + 1
        full = (rho_min <= 1e-6) | (c1 - c0 >= n)
        c0m = np.where(full, 0, c0 % n)
        c1m = np.where(full, n, c0m + (c1 - c0))
        wraps = c1m > n
        s0, s1 = self.col_start, self.col_start + self.col_count
        out = []
        for ra, rb, ca, cb, w in zip(r0.tolist(), r1.tolist(), c0m.tolist(), c1m.tolist(), wraps.tolist()):
            spans = [] if rb <= ra else ([(ca, n), (0, cb - n)] if w else [(ca, cb)])
            # Clip to this grid's block of azimuth steps, in its local column numbers.
            out.append([(ra, rb, max(a, s0) - s0, min(b, s1) - s0) for a, b in spans if min(b, s1) > max(a, s0)])
        return out


@dataclass
class OrthoGrid:
    """Parallel rays along ``-toward`` (e.g. from the sun) starting on a plane beyond the scene.

    Row i, col j start at plane_origin + (a0 + (i+0.5) res) e1 + (b0 + (j+0.5) res) e2.
    """
    toward: np.ndarray
    a0: float
    b0: float
    res: float
    rows: int
    cols: int
    plane_offset: float

    def __post_init__(self):
        s = self.toward / np.linalg.norm(self.toward)
        helper = np.array([0.0, 0.0, 1.0]) if abs(s[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
        e1 = np.cross(s, helper)
        e1 /= np.linalg.norm(e1)
        self.s, self.e1, self.e2 = s, e1, np.cross(s, e1)
        i, j = np.mgrid[0:self.rows, 0:self.cols]
        a = self.a0 + (i.ravel() + 0.5) * self.res
        b = self.b0 + (j.ravel() + 0.5) * self.res
        self.origins = a[:, None] * self.e1 + b[:, None] * self.e2 + self.plane_offset * self.s
        self.directions = np.broadcast_to(-self.s, self.origins.shape)
        self.shape = (self.rows, self.cols)

    def coords(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points (n, 3) -> fractional (row, col) and depth along the rays."""
        return ((points @ self.e1 - self.a0) / self.res - 0.5, (points @ self.e2 - self.b0) / self.res - 0.5,
                self.plane_offset - points @ self.s)

    def rects(self, lo: np.ndarray, hi: np.ndarray) -> list[Rect]:
        return self.rects_all(lo[None], hi[None])[0]

    def rects_all(self, lo: np.ndarray, hi: np.ndarray) -> list[list[Rect]]:
        """Per box (lo, hi: (P, 3)): the texel rectangle of its projection along the rays."""
        corners = _aabb_corners(lo, hi)
        r, c, _ = self.coords(corners.reshape(-1, 3))
        r, c = r.reshape(-1, 8), c.reshape(-1, 8)
        r0 = np.maximum(np.floor(r.min(axis=1)), 0).astype(np.int64)
        r1 = np.minimum(np.ceil(r.max(axis=1)) + 1, self.rows).astype(np.int64)
        c0 = np.maximum(np.floor(c.min(axis=1)), 0).astype(np.int64)
        c1 = np.minimum(np.ceil(c.max(axis=1)) + 1, self.cols).astype(np.int64)
        return _pack(r0, r1, c0, c1)


def intersect_primitive(scene: Scene, p: int, center: np.ndarray, O: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Distances (n,) along rays O (3,) or (n, 3), D (n, 3) to primitive ``p`` placed at ``center``."""
    kind = scene.kind[p]
    if kind == BOX:
        return intersect_box(O, D, center, scene.size[p], scene.yaw[p])
    if kind == ELLIPSOID:
        return intersect_ellipsoid(O, D, center, 0.5 * scene.size[p], scene.yaw[p])
    return intersect_cylinder(O, D, center, 0.5 * scene.size[p, 0], scene.size[p, 2])


def cast(grid, scene: Scene, time_s: float, include_ground: bool = True, max_t: float = np.inf,
         primitive_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of every ray of ``grid``.

    Returns t: (R,) float64 distance along the unit rays (inf = miss) and hit: (R,) int32 primitive
    index, GROUND or MISS. ``primitive_mask`` (P,) bool restricts the primitives considered.
    """
    rows, cols = grid.shape
    n = rows * cols
    D = grid.directions
    per_ray_origin = getattr(grid, 'origins', None)
    O = per_ray_origin if per_ray_origin is not None else grid.origin
    t_best = np.full(n, max_t, np.float64)
    hit = np.full(n, MISS, np.int32)
    if include_ground:
        tg = intersect_ground(O, D)
        g = tg < t_best
        t_best[g] = tg[g]
        hit[g] = GROUND
    lo, hi = scene.aabbs_at(time_s)
    centers = scene.centers_at(time_s)
    col_index = np.arange(cols)
    all_rects = grid.rects_all(lo, hi) if scene.num_primitives else []
    for p in range(scene.num_primitives):
        if primitive_mask is not None and not primitive_mask[p]:
            continue
        for r0, r1, c0, c1 in all_rects[p]:
            idx = (np.arange(r0, r1)[:, None] * cols + col_index[None, c0:c1]).ravel()
            t = intersect_primitive(scene, p, centers[p], O[idx] if per_ray_origin is not None else O, D[idx])
            better = t < t_best[idx]
            if better.any():
                sel = idx[better]
                t_best[sel] = t[better]
                hit[sel] = p
    t_best[hit == MISS] = np.inf
    return t_best, hit


def surface_normals(points: np.ndarray, hit: np.ndarray, scene: Scene, time_s: float) -> np.ndarray:
    """Unit outward normals (n, 3) at hit points (n, 3) with hit ids (n,) (no MISS entries)."""
    normals = np.zeros_like(points)
    normals[:, 2] = 1.0  # the ground
    centers = scene.centers_at(time_s)
    kind = np.full(len(hit), -1, np.int64)
    prim = hit >= 0
    kind[prim] = scene.kind[hit[prim]]
    for k in (BOX, ELLIPSOID, CYLINDER):
        ids = np.flatnonzero(kind == k)
        if not len(ids):
            continue
        p = hit[ids]
        if k == BOX:
            normals[ids] = normals_box(points[ids], centers[p], scene.size[p], scene.yaw[p])
        elif k == ELLIPSOID:
            normals[ids] = normals_ellipsoid(points[ids], centers[p], 0.5 * scene.size[p], scene.yaw[p])
        else:
            normals[ids] = normals_cylinder(points[ids], centers[p], scene.size[p, 2])
    return normals
