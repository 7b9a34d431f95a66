"""Detector output on real scans: false positives in the camera's view, score calibration, default threshold.

KITTI label_2 exists only for objects in the left camera's image, so a detection can only be called a
false positive there. ``fov_false_positives`` counts, per frame and class, detections whose centre projects
into the image and that match no labelled box of their class at BEV IoU >= ``iou`` (default 0.5 car,
0.25 pedestrian / cyclist: a box on the right object, loosely placed, is not a false positive), with each
labelled box taken at most once (greedy by score). A detection overlapping an ignore box (KITTI Van,
Truck, Tram, Misc, Person_sitting) at BEV IoU > 0.1 is not counted either way.

Score calibration: Platt scaling per class, p' = sigmoid(a * logit(p) + b), fitted by L2-regularised
logistic regression (prior a = 1, b = 0) on held-out detections labelled TP / FP by the same matching.
The default threshold maximises F1 on the held-out frames among the thresholds with at most
``max_fp_per_frame`` false positives per frame on average (no true positive at all: the lowest threshold
with no false positive).
"""
from __future__ import annotations

import numpy as np

from .box_geometry import bev_iou
from .metrics_det import match_detections

FP_IOU = (0.5, 0.25, 0.25)        # car, pedestrian, cyclist


def label_detections(boxes, scores, labels, gt_boxes, gt_labels, iou=FP_IOU, ignore_boxes=None) -> np.ndarray:
    """One frame -> (D,) int8: 1 true positive, 0 false positive, -1 ignored (overlaps an ignore box)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 7)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 7)
    labels, gt_labels = np.asarray(labels).reshape(-1), np.asarray(gt_labels).reshape(-1)
    scores = np.asarray(scores, np.float64).reshape(-1)
    out = np.zeros(len(boxes), np.int8)
    for c in np.unique(labels):
        d = np.flatnonzero(labels == c)
        g = np.flatnonzero(gt_labels == c)
        thr = iou[int(c)] if 0 <= int(c) < len(iou) else 0.5
        if len(g):
            out[d] = match_detections(bev_iou(boxes[d], gt_boxes[g]), scores[d], thr)
    if ignore_boxes is not None and len(ignore_boxes) and len(boxes):
        ign = bev_iou(boxes, np.asarray(ignore_boxes, np.float64).reshape(-1, 7)).max(axis=1) > 0.1
        out[(out == 0) & ign] = -1
    return out


def in_camera(boxes, camera) -> np.ndarray:
    """(M, 7) boxes, camera = (K, T_cam_lidar, (H, W)) -> (M,) bool: centre projects into the image."""
    from ros_ncal.geometry import project_lidar
    b = np.asarray(boxes, np.float64).reshape(-1, 7)
    if len(b) == 0:
        return np.zeros(0, bool)
    K, T, hw = camera
    return project_lidar(b[:, :3], T, K, hw)[2]


def fov_false_positives(boxes, scores, labels, gt_boxes, gt_labels, camera, iou=FP_IOU, ignore_boxes=None,
                        score_threshold: float = 0.0) -> dict:
    """One frame -> {'fp': n, 'tp': n, 'in_fov': n, 'fp_by_class': {c: n}} for detections above the threshold
    whose centre is in the camera image (see module doc)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 7)
    scores = np.asarray(scores, np.float64).reshape(-1)
    labels = np.asarray(labels, np.int64).reshape(-1)
    sel = (scores >= score_threshold) & in_camera(boxes, camera) if len(boxes) else np.zeros(0, bool)
    lab = label_detections(boxes[sel], scores[sel], labels[sel], gt_boxes, gt_labels, iou, ignore_boxes)
    by_class: dict = {}
    for c in labels[sel][lab == 0]:
        by_class[int(c)] = by_class.get(int(c), 0) + 1
    return {'fp': int((lab == 0).sum()), 'tp': int((lab == 1).sum()), 'in_fov': int(sel.sum()),
            'fp_by_class': by_class}


def fit_platt(scores, is_tp, prior: float = 1.0, iters: int = 50) -> tuple[float, float]:
    """Raw probabilities (n,) and 0/1 outcomes (n,) -> (a, b) of p' = sigmoid(a logit(p) + b).

    Newton steps on the logistic log-likelihood plus prior/2 * ((a - 1)^2 + b^2), so that a handful of
    detections moves the identity mapping only as far as the evidence allows."""
    p = np.clip(np.asarray(scores, np.float64), 1e-6, 1 - 1e-6)
    y = np.asarray(is_tp, np.float64)
    x = np.log(p / (1 - p))
    X = np.stack([x, np.ones_like(x)], 1)
    w = np.array([1.0, 0.0])
    w0 = w.copy()
    for _ in range(iters):
        q = 1 / (1 + np.exp(-(X @ w)))
        grad = X.T @ (q - y) + prior * (w - w0)
        H = (X * (q * (1 - q))[:, None]).T @ X + prior * np.eye(2)
        step = np.linalg.solve(H, grad)
        w = w - step
        if np.abs(step).max() < 1e-8:
            break
    return float(w[0]), float(w[1])


def choose_threshold(scores, outcome, frame_ids, num_gt: int, num_frames: int, max_fp_per_frame: float = 1.0,
                     candidates=None) -> dict:
    """Held-out detections (scores (n,), outcome (n,) 1 TP / 0 FP / -1 ignored, frame id per detection) ->
    {'threshold', 'fp_per_frame', 'recall', 'precision', 'f1'}: among thresholds with at most
    ``max_fp_per_frame`` FP per frame, the one with the best F1 (ties: the lower threshold). When no allowed
    threshold keeps a true positive, the lowest one without false positives (else the highest candidate)."""
    scores = np.asarray(scores, np.float64)
    outcome = np.asarray(outcome)
    cands = np.round(np.arange(0.05, 0.951, 0.025), 3) if candidates is None else np.asarray(candidates)
    best = None
    rows = []
    for t in cands:
        sel = scores >= t
        tp, fp = int(((outcome == 1) & sel).sum()), int(((outcome == 0) & sel).sum())
        rec = tp / max(num_gt, 1)
        prec = tp / max(tp + fp, 1)
        f1 = 2 * prec * rec / max(prec + rec, 1e-12)
        row = {'threshold': float(t), 'fp_per_frame': fp / max(num_frames, 1), 'recall': rec, 'precision': prec,
               'f1': f1, 'tp': tp, 'fp': fp}
        if row['fp_per_frame'] <= max_fp_per_frame and (best is None or f1 > best['f1'] + 1e-12):
            best = row
        rows.append(row)
    if best is None or best['f1'] == 0.0:
        # no true positive at any allowed threshold: the lowest threshold without false positives (else the highest)
        zero = [r for r in rows if r['fp'] == 0]
        best = zero[0] if zero else rows[-1]
    return best
