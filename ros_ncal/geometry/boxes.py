"""Oriented 3D boxes: BEV corners, rotated-rectangle intersection (Sutherland-Hodgman), BEV and 3D IoU.

Box convention (docs/design.md, Sample.boxes): ``(x, y, z, l, w, h, yaw)`` in the LiDAR frame, float.
``x, y, z`` is the box centre (z is the centre of the vertical extent, not the bottom), ``l`` the extent
along the heading, ``w`` across it, ``h`` vertical, ``yaw`` the heading angle about +z in radians
(yaw 0: length along +x).

Pure numpy; used by the detection metrics (``ros_ncal.eval.metrics_det``), the detection head's rotated NMS
and the ground-truth box sampling. Lives in ``geometry`` so that ``models`` need not import ``eval``.
"""
from __future__ import annotations

import numpy as np

_EPS = 1e-12


def check_boxes(boxes, name: str = 'boxes') -> np.ndarray:
    """Validate and return boxes as (M, 7) float64; raise ValueError naming the problem."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 7), np.float64)
    if b.ndim != 2 or b.shape[1] != 7:
        raise ValueError(f'{name}: expected (M, 7) x y z l w h yaw, got shape {b.shape}')
    if not np.isfinite(b).all():
        raise ValueError(f'{name}: contains NaN or inf')
    if (b[:, 3:6] <= 0).any():
        raise ValueError(f'{name}: l, w, h must be positive')
    return b


def bev_corners(boxes) -> np.ndarray:
    """boxes: (M, 7) -> (M, 4, 2) BEV corners (x, y), counter-clockwise."""
    b = check_boxes(boxes)
    half = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float64) * 0.5  # CCW in the box frame
    local = half[None] * b[:, None, 3:5]                                     # (M, 4, 2): (+-l/2, +-w/2)
    c, s = np.cos(b[:, 6]), np.sin(b[:, 6])
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)      # (M, 2, 2)
    return np.einsum('mij,mkj->mki', rot, local) + b[:, None, 0:2]


def polygon_area(poly: np.ndarray) -> float:
    """Shoelace area of a simple polygon (K, 2); 0 for fewer than 3 vertices."""
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def clip_polygon(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: the part of polygon ``subject`` (K, 2) inside convex CCW polygon ``clip`` (L, 2)."""
    out = [tuple(p) for p in subject]
    n = len(clip)
    for i in range(n):
        if not out:
            break
        a, b = clip[i], clip[(i + 1) % n]
        ex, ey = b[0] - a[0], b[1] - a[1]

        def side(p):  # > 0: left of edge a->b, i.e. inside for a CCW clip polygon
            return ex * (p[1] - a[1]) - ey * (p[0] - a[0])

        inp = out
        out = []
        prev = inp[-1]
        s_prev = side(prev)
        for cur in inp:
            s_cur = side(cur)
            if s_cur >= 0:
                if s_prev < 0:
                    out.append(_intersect(prev, cur, s_prev, s_cur))
                out.append(cur)
            elif s_prev >= 0:
                out.append(_intersect(prev, cur, s_prev, s_cur))
            prev, s_prev = cur, s_cur
    return np.asarray(out, np.float64).reshape(-1, 2)


def _intersect(p, q, sp, sq):
    t = sp / (sp - sq)
    return (p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1]))


def bev_intersection_areas(boxes_a, boxes_b) -> np.ndarray:
    """(Ma, 7), (Mb, 7) -> (Ma, Mb) area of the rotated-rectangle intersection in BEV (m^2)."""
    a, b = check_boxes(boxes_a, 'boxes_a'), check_boxes(boxes_b, 'boxes_b')
    inter = np.zeros((len(a), len(b)), np.float64)
    if len(a) == 0 or len(b) == 0:
        return inter
    ca, cb = bev_corners(a), bev_corners(b)
    # Cheap rejection: circumscribed circles that do not touch cannot intersect.
    ra = 0.5 * np.hypot(a[:, 3], a[:, 4])
    rb = 0.5 * np.hypot(b[:, 3], b[:, 4])
    dist = np.linalg.norm(a[:, None, :2] - b[None, :, :2], axis=-1)
    cand = np.argwhere(dist < ra[:, None] + rb[None, :])
    for i, j in cand:
        inter[i, j] = polygon_area(clip_polygon(ca[i], cb[j]))
    return inter


def bev_iou(boxes_a, boxes_b) -> np.ndarray:
    """(Ma, 7), (Mb, 7) -> (Ma, Mb) rotated IoU in the bird's-eye view."""
    a, b = check_boxes(boxes_a, 'boxes_a'), check_boxes(boxes_b, 'boxes_b')
    inter = bev_intersection_areas(a, b)
    area_a = a[:, 3] * a[:, 4]
    area_b = b[:, 3] * b[:, 4]
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / np.maximum(union, _EPS)


def iou_3d(boxes_a, boxes_b) -> np.ndarray:
    """(Ma, 7), (Mb, 7) -> (Ma, Mb) 3D IoU: BEV intersection x vertical overlap over the union volume."""
    a, b = check_boxes(boxes_a, 'boxes_a'), check_boxes(boxes_b, 'boxes_b')
    inter_bev = bev_intersection_areas(a, b)
    top = np.minimum(a[:, None, 2] + a[:, None, 5] / 2, b[None, :, 2] + b[None, :, 5] / 2)
    bottom = np.maximum(a[:, None, 2] - a[:, None, 5] / 2, b[None, :, 2] - b[None, :, 5] / 2)
    inter = inter_bev * np.clip(top - bottom, 0.0, None)
    vol_a = a[:, 3] * a[:, 4] * a[:, 5]
    vol_b = b[:, 3] * b[:, 4] * b[:, 5]
    union = vol_a[:, None] + vol_b[None, :] - inter
    return inter / np.maximum(union, _EPS)


def rotated_nms(boxes, scores, iou_threshold: float, max_keep: int | None = None) -> np.ndarray:
    """Greedy NMS with rotated BEV IoU. boxes (M, 7), scores (M,) -> kept indices, best score first."""
    b = check_boxes(boxes)
    s = np.asarray(scores, np.float64).reshape(-1)
    if len(s) != len(b):
        raise ValueError(f'rotated_nms: {len(b)} boxes but {len(s)} scores')
    order = np.argsort(-s, kind='stable')
    if len(order) == 0:
        return order.astype(np.int64)
    iou = bev_iou(b[order], b[order])
    suppressed = np.zeros(len(order), bool)
    keep = []
    for k in range(len(order)):
        if suppressed[k]:
            continue
        keep.append(order[k])
        if max_keep is not None and len(keep) >= max_keep:
            break
        suppressed |= iou[k] > iou_threshold
    return np.asarray(keep, np.int64)


def points_in_boxes(points, boxes, margin: float = 0.0) -> np.ndarray:
    """points (N, 3+), boxes (M, 7) -> (M, N) bool: point inside the box (each side grown by ``margin`` m).

    The test runs in each box's frame: |dx| <= l/2, |dy| <= w/2 (after rotating by -yaw), |dz| <= h/2.
    Only points inside a box's bounding circle are rotated, so the cost is about N x M comparisons.
    """
    b = check_boxes(boxes)
    p = np.asarray(points, np.float64).reshape(len(points), -1)[:, :3] if len(points) else np.zeros((0, 3))
    out = np.zeros((len(b), len(p)), bool)
    order = np.argsort(p[:, 0], kind='stable')     # one sort, then each box reads its x slice only
    xs = p[order, 0]
    for m, (x, y, z, l, w, h, yaw) in enumerate(b):
        half = np.array([l, w, h]) / 2.0 + margin
        r = float(np.hypot(half[0], half[1]))
        i0, i1 = np.searchsorted(xs, x - r, 'left'), np.searchsorted(xs, x + r, 'right')
        cand = order[i0:i1]
        q = p[cand]
        near = cand[(np.abs(q[:, 1] - y) <= r) & (np.abs(q[:, 2] - z) <= half[2])]
        if len(near) == 0:
            continue
        dx, dy = p[near, 0] - x, p[near, 1] - y
        c, s = np.cos(yaw), np.sin(yaw)
        u, v = c * dx + s * dy, -s * dx + c * dy
        out[m, near[(np.abs(u) <= half[0]) & (np.abs(v) <= half[1])]] = True
    return out
