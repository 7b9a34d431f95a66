"""3D object detection metrics: KITTI-style average precision with 40 recall points, BEV and 3D.

Protocol (written down because detection numbers are only comparable under one protocol):
- Per frame and class, detections are taken in descending score order; each is matched to the
  still-unmatched ground-truth box of the same class with the highest IoU, if that IoU is at least the
  class threshold (KITTI: 0.7 car, 0.5 pedestrian and cyclist). Matched: true positive; else false positive.
- A detection matched to a ground-truth box flagged ``ignore`` (e.g. too few points, DontCare) counts
  neither way, and ignored ground truth does not count towards recall.
- Over all frames, detections are ranked by score; precision p(r) is interpolated as the maximum
  precision at any recall >= r; AP_R40 = mean of p(r) over r = 1/40, 2/40, ..., 1 (the recall 0 point
  of the old 11-point metric is excluded, as in KITTI's R40 metric since 2019).
- IoU: rotated BEV IoU (polygon clipping) for AP_bev; BEV intersection x vertical overlap for AP_3d.
  No difficulty levels (occlusion/truncation are not available for synthetic data).
- A class without ground truth gets AP NaN and is left out of the mean.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .box_geometry import bev_iou, check_boxes, iou_3d

DEFAULT_CLASS_NAMES = ('car', 'pedestrian', 'cyclist')
DEFAULT_IOU_THRESHOLDS = (0.7, 0.5, 0.5)
NUM_RECALL_POINTS = 40


def match_detections(iou: np.ndarray, scores: np.ndarray, threshold: float,
                     gt_ignore: np.ndarray | None = None) -> np.ndarray:
    """Greedy score-ordered matching for one frame and one class.

    iou: (D, G) IoU of detections vs ground truth; scores: (D,).
    Returns (D,) int8: 1 true positive, 0 false positive, -1 matched to ignored ground truth (drop).
    """
    D, G = iou.shape
    result = np.zeros(D, np.int8)
    if D == 0 or G == 0:
        return result
    ignore = np.zeros(G, bool) if gt_ignore is None else np.asarray(gt_ignore, bool)
    taken = np.zeros(G, bool)
    for d in np.argsort(-np.asarray(scores), kind='stable'):
        cand = np.where(~taken, iou[d], -1.0)
        g = int(np.argmax(cand))
        if cand[g] >= threshold:
            taken[g] = True
            result[d] = -1 if ignore[g] else 1
    return result


def average_precision_r40(scores: np.ndarray, is_tp: np.ndarray, num_gt: int) -> float:
    """AP with 40 recall points from the ranked detections of one class over all frames.

    scores: (D,) detection scores; is_tp: (D,) bool; num_gt: non-ignored ground-truth boxes.
    Returns NaN when num_gt == 0.
    """
    if num_gt <= 0:
        return float('nan')
    scores = np.asarray(scores, np.float64)
    is_tp = np.asarray(is_tp, bool)
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind='stable')
    tp = np.cumsum(is_tp[order])
    fp = np.cumsum(~is_tp[order])
    recall = tp / num_gt
    precision = tp / np.maximum(tp + fp, 1)
    # Interpolate: precision at recall r = max precision at any rank whose recall >= r.
    prec_envelope = np.maximum.accumulate(precision[::-1])[::-1]
    ap = 0.0
    for r in np.arange(1, NUM_RECALL_POINTS + 1) / NUM_RECALL_POINTS:
        idx = np.searchsorted(recall, r - 1e-12, side='left')  # first rank reaching recall r
        if idx < len(recall):
            ap += prec_envelope[idx]
    return float(ap / NUM_RECALL_POINTS)


@dataclass
class _ClassAccumulator:
    scores: list = field(default_factory=list)
    tp_bev: list = field(default_factory=list)
    tp_3d: list = field(default_factory=list)
    keep_bev: list = field(default_factory=list)
    keep_3d: list = field(default_factory=list)
    num_gt: int = 0


class DetectionEvaluator:
    """Accumulate frames, then :meth:`compute` AP_bev and AP_3d (R40) per class and their means.

    class_names: names of label ids 0..K-1; iou_thresholds: one per class.
    """

    def __init__(self, class_names=DEFAULT_CLASS_NAMES, iou_thresholds=DEFAULT_IOU_THRESHOLDS):
        if len(class_names) != len(iou_thresholds):
            raise ValueError(f'{len(class_names)} class names but {len(iou_thresholds)} IoU thresholds')
        self.class_names = tuple(class_names)
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        self._acc = [_ClassAccumulator() for _ in self.class_names]
        self.num_frames = 0

    def add(self, pred_boxes, pred_scores, pred_labels, gt_boxes, gt_labels, gt_ignore=None) -> None:
        """One frame. pred_boxes (D, 7), pred_scores (D,), pred_labels (D,) int;
        gt_boxes (G, 7), gt_labels (G,) int, gt_ignore optional (G,) bool."""
        pb = check_boxes(pred_boxes, 'pred_boxes')
        gb = check_boxes(gt_boxes, 'gt_boxes')
        ps = np.asarray(pred_scores, np.float64).reshape(-1)
        pl = np.asarray(pred_labels, np.int64).reshape(-1)
        gl = np.asarray(gt_labels, np.int64).reshape(-1)
        gi = np.zeros(len(gb), bool) if gt_ignore is None else np.asarray(gt_ignore, bool).reshape(-1)
        if not (len(pb) == len(ps) == len(pl)):
            raise ValueError(f'predictions: {len(pb)} boxes, {len(ps)} scores, {len(pl)} labels')
        if not (len(gb) == len(gl) == len(gi)):
            raise ValueError(f'ground truth: {len(gb)} boxes, {len(gl)} labels, {len(gi)} ignore flags')
        for c, acc in enumerate(self._acc):
            pm, gm = pl == c, gl == c
            boxes_d, scores_d = pb[pm], ps[pm]
            boxes_g, ignore_g = gb[gm], gi[gm]
            acc.num_gt += int((~ignore_g).sum())
            if len(boxes_d) == 0:
                continue
            thr = self.iou_thresholds[c]
            m_bev = match_detections(bev_iou(boxes_d, boxes_g), scores_d, thr, ignore_g)
            m_3d = match_detections(iou_3d(boxes_d, boxes_g), scores_d, thr, ignore_g)
            acc.scores.append(scores_d)
            acc.tp_bev.append(m_bev == 1)
            acc.keep_bev.append(m_bev >= 0)
            acc.tp_3d.append(m_3d == 1)
            acc.keep_3d.append(m_3d >= 0)
        self.num_frames += 1

    def compute(self) -> dict:
        """{'AP_bev': {class: AP}, 'AP_3d': {...}, 'mAP_bev', 'mAP_3d', 'num_gt': {...}, 'num_frames'}; AP in [0, 1]."""
        out = {'AP_bev': {}, 'AP_3d': {}, 'num_gt': {}, 'num_frames': self.num_frames}
        for name, acc in zip(self.class_names, self._acc):
            out['num_gt'][name] = acc.num_gt
            cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt))
            scores = cat(acc.scores, np.float64)
            for kind, tp, keep in (('AP_bev', acc.tp_bev, acc.keep_bev), ('AP_3d', acc.tp_3d, acc.keep_3d)):
                k = cat(keep, bool)
                out[kind][name] = average_precision_r40(scores[k], cat(tp, bool)[k], acc.num_gt)
        for kind in ('AP_bev', 'AP_3d'):
            vals = [v for v in out[kind].values() if not np.isnan(v)]
            out['m' + kind] = float(np.mean(vals)) if vals else float('nan')
        return out
