"""Semantic segmentation metrics: confusion matrix, per-class IoU, mIoU, accuracy.

Protocol: labels are class ids 0..C-1 with ``ignore_index`` (0, SemanticKITTI's "unlabeled") excluded:
points whose ground truth is ``ignore_index`` are dropped before counting. A valid point predicted as
``ignore_index`` is kept and counts as a false negative of its true class (stricter than leaving it out;
the project's heads never predict class 0). IoU_c = TP / (TP + FP + FN); a class with no ground truth
and no prediction gets IoU NaN and is left out of the mean, a class with predictions but no ground
truth gets IoU 0.
"""
from __future__ import annotations

import numpy as np


def _as_int_array(x, name: str) -> np.ndarray:
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f'{name}: expected integer class ids, got {a.dtype}')
    return a.reshape(-1).astype(np.int64)


def confusion_matrix(pred, target, num_classes: int, ignore_index: int | None = 0) -> np.ndarray:
    """pred, target: (N,) int class ids in [0, num_classes) -> (C, C) int64, rows = target, cols = pred."""
    p = _as_int_array(pred, 'pred')
    t = _as_int_array(target, 'target')
    if p.shape != t.shape:
        raise ValueError(f'pred has {p.size} entries but target has {t.size}')
    for name, a in (('pred', p), ('target', t)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f'{name}: class ids must lie in [0, {num_classes}), got [{a.min()}, {a.max()}]')
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_from_confusion(conf: np.ndarray, ignore_index: int | None = 0) -> np.ndarray:
    """(C, C) confusion -> (C,) IoU per class; NaN for ``ignore_index`` and for absent classes."""
    conf = np.asarray(conf, np.float64)
    tp = np.diag(conf)
    fn = conf.sum(1) - tp
    fp = conf.sum(0) - tp
    denom = tp + fp + fn
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(denom > 0, tp / np.where(denom > 0, denom, 1), np.nan)
    if ignore_index is not None:
        iou[ignore_index] = np.nan
    return iou


class SegmentationEvaluator:
    """Accumulates a confusion matrix over frames; :meth:`compute` gives mIoU and per-class IoU.

    num_classes counts the ignore class too (20 for SemanticKITTI's 19 classes + unlabeled).
    class_names: optional names of ids 0..C-1 for the report.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 0, class_names=None):
        if num_classes < 2:
            raise ValueError(f'num_classes must be >= 2, got {num_classes}')
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f'{len(class_names)} class names for {num_classes} classes')
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.conf = np.zeros((num_classes, num_classes), np.int64)

    def add(self, pred, target) -> None:
        """pred, target: (N,) int class ids of one frame (numpy or torch)."""
        self.conf += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def compute(self) -> dict:
        """{'mIoU', 'mIoU_present', 'IoU': {name: iou}, 'accuracy', 'num_points'}; values in [0, 1], NaN where
        undefined. mIoU averages every class with ground truth or predictions (a class predicted but absent
        counts 0); mIoU_present only the classes with ground-truth points."""
        iou = iou_from_confusion(self.conf, self.ignore_index)
        valid = ~np.isnan(iou)
        total = int(self.conf.sum())
        present = valid & (self.conf.sum(1) > 0)   # classes with ground-truth points
        return {
            'mIoU': float(iou[valid].mean()) if valid.any() else float('nan'),
            'mIoU_present': float(iou[present].mean()) if present.any() else float('nan'),
            'IoU': {self.class_names[c]: float(iou[c]) for c in range(self.num_classes) if c != self.ignore_index},
            'accuracy': float(np.trace(self.conf) / total) if total else float('nan'),
            'num_points': total,
        }
