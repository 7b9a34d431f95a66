"""Panoptic segmentation metrics: PQ, SQ, RQ per class, over thing and stuff classes (Kirillov et al.).

Protocol (per frame, then summed over frames per class):
- Points whose ground-truth class is ``ignore_index`` (0) are dropped, predictions on them too.
- A thing-class ground-truth point with instance id 0 (an unassigned thing point) is dropped as well,
  like a void/crowd region: it is neither a segment to find nor a place where a prediction is wrong.
- Segments: for a stuff class all points of that class form one segment; for a thing class one segment
  per (class, instance id). The same for predictions (a predicted thing point with instance 0 forms its
  own segment of that class).
- A predicted and a ground-truth segment of the same class match when IoU > 0.5 (matching is then
  unique). TP: matches; FN: unmatched ground-truth segments; FP: unmatched predicted segments. Segments
  with fewer than ``min_points`` points are not counted as FN/FP (SemanticKITTI uses 50).
- PQ_c = sum IoU(TP) / (TP + FP/2 + FN/2) = SQ_c x RQ_c; a class with TP + FP + FN = 0 is left out.
  PQ_dagger uses the semantic IoU instead of PQ for stuff classes.
"""
from __future__ import annotations

import numpy as np

from .metrics_seg import SegmentationEvaluator, _as_int_array

_SHIFT = np.int64(1 << 32)


def _segments(cls: np.ndarray, inst: np.ndarray, is_thing: np.ndarray) -> np.ndarray:
    """(N,) class and instance ids -> (N,) int64 segment key = class << 32 | instance (0 for stuff)."""
    inst_eff = np.where(is_thing[cls], inst, 0)
    return cls.astype(np.int64) * _SHIFT + inst_eff.astype(np.int64)


class PanopticEvaluator:
    """Accumulate frames, then :meth:`compute` PQ / SQ / RQ (all, things, stuff), PQ_dagger and mIoU.

    num_classes: includes the ignore class (20 for SemanticKITTI); thing_classes: ids of thing classes
    (SemanticKITTI: 1..8); class_names: optional names of ids 0..C-1.
    """

    def __init__(self, num_classes: int, thing_classes, ignore_index: int = 0,
                 min_points: int = 1, class_names=None):
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.min_points = int(min_points)
        self.is_thing = np.zeros(self.num_classes, bool)
        for c in thing_classes:
            if not 0 <= int(c) < self.num_classes or int(c) == self.ignore_index:
                raise ValueError(f'thing class {c} is not a valid non-ignore class id in [0, {self.num_classes})')
            self.is_thing[int(c)] = True
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.iou_sum = np.zeros(self.num_classes)
        self.tp = np.zeros(self.num_classes, np.int64)
        self.fp = np.zeros(self.num_classes, np.int64)
        self.fn = np.zeros(self.num_classes, np.int64)
        self.semantic = SegmentationEvaluator(num_classes, ignore_index, self.class_names)

    def add(self, pred_sem, pred_inst, gt_sem, gt_inst) -> None:
        """One frame: (N,) int predicted class, predicted instance id, true class, true instance id."""
        ps, pi = _as_int_array(pred_sem, 'pred_sem'), _as_int_array(pred_inst, 'pred_inst')
        gs, gi = _as_int_array(gt_sem, 'gt_sem'), _as_int_array(gt_inst, 'gt_inst')
        if not (ps.size == pi.size == gs.size == gi.size):
            raise ValueError(f'sizes differ: pred_sem {ps.size}, pred_inst {pi.size}, gt_sem {gs.size}, '
                             f'gt_inst {gi.size}')
        for name, a in (('pred_sem', ps), ('gt_sem', gs)):
            if a.size and (a.min() < 0 or a.max() >= self.num_classes):
                raise ValueError(f'{name}: class ids must lie in [0, {self.num_classes})')
        self.semantic.add(ps, gs)
        keep = (gs != self.ignore_index) & ~(self.is_thing[gs] & (gi == 0))
        ps, pi, gs, gi = ps[keep], pi[keep], gs[keep], gi[keep]
        g_key = _segments(gs, gi, self.is_thing)
        p_key = _segments(ps, pi, self.is_thing)
        g_ids, g_inv, g_size = np.unique(g_key, return_inverse=True, return_counts=True)
        p_ids, p_inv, p_size = np.unique(p_key, return_inverse=True, return_counts=True)
        g_cls = (g_ids // _SHIFT).astype(np.int64)
        p_cls = (p_ids // _SHIFT).astype(np.int64)
        same = gs == ps
        pair = g_inv[same].astype(np.int64) * len(p_ids) + p_inv[same]
        pairs, inter = np.unique(pair, return_counts=True)
        gi_m, pi_m = pairs // len(p_ids), pairs % len(p_ids)
        iou = inter / (g_size[gi_m] + p_size[pi_m] - inter)
        match = iou > 0.5
        g_matched = np.zeros(len(g_ids), bool)
        p_matched = np.zeros(len(p_ids), bool)
        g_matched[gi_m[match]] = True
        p_matched[pi_m[match]] = True
        np.add.at(self.iou_sum, g_cls[gi_m[match]], iou[match])
        np.add.at(self.tp, g_cls[gi_m[match]], 1)
        fn_mask = ~g_matched & (g_size >= self.min_points)
        fp_mask = ~p_matched & (p_size >= self.min_points) & (p_cls != self.ignore_index)
        np.add.at(self.fn, g_cls[fn_mask], 1)
        np.add.at(self.fp, p_cls[fp_mask], 1)

    def compute(self) -> dict:
        """-> {'PQ', 'SQ', 'RQ', 'PQ_things', 'PQ_stuff', 'SQ_things', ..., 'PQ_dagger', 'mIoU',
        'per_class': {name: {'PQ', 'SQ', 'RQ', 'TP', 'FP', 'FN'}}}; values in [0, 1], NaN where undefined."""
        denom = self.tp + 0.5 * self.fp + 0.5 * self.fn
        valid = denom > 0
        valid[self.ignore_index] = False
        with np.errstate(invalid='ignore', divide='ignore'):
            pq = np.where(valid, self.iou_sum / np.where(valid, denom, 1), np.nan)
            sq = np.where(self.tp > 0, self.iou_sum / np.maximum(self.tp, 1), 0.0)
            rq = np.where(valid, self.tp / np.where(valid, denom, 1), np.nan)
        sq = np.where(valid, sq, np.nan)
        sem = self.semantic.compute()

        def mean(a, mask):
            m = mask & valid
            return float(np.mean(a[m])) if m.any() else float('nan')

        allc = np.ones(self.num_classes, bool)
        out = {
            'PQ': mean(pq, allc), 'SQ': mean(sq, allc), 'RQ': mean(rq, allc),
            'PQ_things': mean(pq, self.is_thing), 'SQ_things': mean(sq, self.is_thing),
            'RQ_things': mean(rq, self.is_thing),
            'PQ_stuff': mean(pq, ~self.is_thing), 'SQ_stuff': mean(sq, ~self.is_thing),
            'RQ_stuff': mean(rq, ~self.is_thing),
            'mIoU': sem['mIoU'],
        }
        sem_iou = np.array([sem['IoU'].get(self.class_names[c], np.nan) if c != self.ignore_index else np.nan
                            for c in range(self.num_classes)])
        dagger = np.where(self.is_thing, pq, sem_iou)
        dmask = np.where(self.is_thing, valid, ~np.isnan(sem_iou))
        dmask[self.ignore_index] = False
        out['PQ_dagger'] = float(np.mean(dagger[dmask])) if dmask.any() else float('nan')
        out['per_class'] = {self.class_names[c]: {'PQ': float(pq[c]), 'SQ': float(sq[c]), 'RQ': float(rq[c]),
                                                  'TP': int(self.tp[c]), 'FP': int(self.fp[c]), 'FN': int(self.fn[c])}
                            for c in range(self.num_classes) if c != self.ignore_index}
        return out
