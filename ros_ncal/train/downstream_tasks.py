"""Task adapters for fine-tuning: build the head, compute the loss on a batch, predict and evaluate.

One adapter per task (``seg``, ``det``, ``panoptic``); the fine-tuning loop (``finetune.py``) is the same
for all of them. A batch is a list of TaskSamples (downstream_data.py); the backbone maps the list of
clouds to a list of per-point features.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ros_ncal.data.labels import SEMANTICKITTI_CLASSES
from ros_ncal.eval.metrics_det import DetectionEvaluator
from ros_ncal.eval.metrics_panoptic import PanopticEvaluator
from ros_ncal.eval.metrics_seg import SegmentationEvaluator
from ros_ncal.models.heads.bev_det_head import BEVDetConfig, BEVDetHead
from ros_ncal.models.heads.panoptic_head import PanopticHead
from ros_ncal.models.heads.seg_head import SegHead, inverse_sqrt_frequency_weights, seg_loss
from ros_ncal.models.inference import TaskModel  # noqa: F401 (its home; re-exported)

TASKS = ('seg', 'det', 'panoptic')
SEMANTIC_CLASS_NAMES = SEMANTICKITTI_CLASSES  # 20 names, id 0 = unlabeled (ignore)


def _cat(batch, device):
    pts = [torch.from_numpy(s.points).to(device) for s in batch]
    bidx = torch.cat([torch.full((len(p),), i, dtype=torch.long, device=device) for i, p in enumerate(pts)])
    return pts, bidx


class SegTask:
    """Per-point semantic classes; class-balanced CE (inverse sqrt frequency), metric mIoU."""
    name = 'seg'
    main_metric = 'mIoU'

    def __init__(self, head_cfg: dict, num_classes: int = 20, class_names=SEMANTIC_CLASS_NAMES):
        self.head_cfg = dict(head_cfg or {})
        self.num_classes = int(self.head_cfg.pop('num_classes', num_classes))
        self.class_names = list(class_names)[:self.num_classes]
        self.weights: torch.Tensor | None = None

    def build_head(self, in_dim: int) -> nn.Module:
        return SegHead(in_dim, self.num_classes, **self.head_cfg)

    def fit_statistics(self, train_samples) -> dict:
        counts = np.zeros(self.num_classes, np.int64)
        for s in train_samples:
            counts += np.bincount(s.labels, minlength=self.num_classes)[:self.num_classes]
        self.weights = inverse_sqrt_frequency_weights(counts)
        return {'class_counts': counts.tolist(), 'class_weights': [round(float(w), 4) for w in self.weights]}

    def loss(self, model: TaskModel, batch, device) -> dict:
        pts, _ = _cat(batch, device)
        feats = torch.cat(model.features(pts))
        labels = torch.cat([torch.from_numpy(s.labels) for s in batch]).to(device)
        loss = seg_loss(model.head(feats), labels, self.weights)
        return {'loss': loss}

    @torch.no_grad()
    def evaluate(self, model: TaskModel, samples, device, batch_size: int = 2) -> dict:
        ev = SegmentationEvaluator(self.num_classes, 0, self.class_names)
        for k in range(0, len(samples), batch_size):
            batch = samples[k:k + batch_size]
            pts, _ = _cat(batch, device)
            for s, f in zip(batch, model.features(pts)):
                ev.add(model.head.predict(model.head(f)).cpu().numpy(), s.labels)
        return ev.compute()


class DetTask:
    """3D boxes from a CenterPoint-style BEV head; metric AP_R40 (BEV and 3D)."""
    name = 'det'
    main_metric = 'mAP_bev'

    def __init__(self, head_cfg: dict):
        cfg = dict(head_cfg or {})
        self.iou_thresholds = tuple(cfg.pop('iou_thresholds', (0.7, 0.5, 0.5)))
        self.eval_region = str(cfg.pop('eval_region', 'grid'))
        # AP ranks all detections: evaluation may decode below the deployed score threshold (None: the same)
        self.eval_score_threshold = cfg.pop('eval_score_threshold', None)
        if self.eval_region not in ('grid', 'camera_fov'):
            raise ValueError(f"det head eval_region must be 'grid' or 'camera_fov', got {self.eval_region!r}")
        self.cfg = BEVDetConfig.from_dict(cfg)

    def build_head(self, in_dim: int) -> nn.Module:
        return BEVDetHead(in_dim, self.cfg)

    def fit_statistics(self, train_samples) -> dict:
        counts = np.zeros(len(self.cfg.class_names), np.int64)
        for s in train_samples:
            lab = s.box_labels[(s.box_labels >= 0) & (s.box_labels < len(counts))]
            counts += np.bincount(lab, minlength=len(counts))
        return {'box_counts': dict(zip(self.cfg.class_names, counts.tolist()))}

    def loss(self, model: TaskModel, batch, device) -> dict:
        pts, bidx = _cat(batch, device)
        feats = torch.cat(model.features(pts))
        xyz = torch.cat(pts)[:, :3]
        out = model.head(xyz, feats, bidx, len(batch))
        targets = model.head.build_targets([s.boxes for s in batch], [s.box_labels for s in batch], device)
        return model.head.loss(out, targets)

    LOOSE_IOU_THRESHOLDS = (0.5, 0.25, 0.25)

    @torch.no_grad()
    def evaluate(self, model: TaskModel, samples, device, batch_size: int = 2) -> dict:
        """AP_R40 at ``iou_thresholds`` (KITTI 0.7 / 0.5 / 0.5) plus the looser 0.5 / 0.25 / 0.25 reading
        (keys ``*_loose``)."""
        ev = DetectionEvaluator(self.cfg.class_names, self.iou_thresholds)
        ev_loose = DetectionEvaluator(self.cfg.class_names, self.LOOSE_IOU_THRESHOLDS[:len(self.cfg.class_names)])
        fps: dict = {}
        for k in range(0, len(samples), batch_size):
            batch = samples[k:k + batch_size]
            pts, bidx = _cat(batch, device)
            feats = torch.cat(model.features(pts))
            xyz = torch.cat(pts)[:, :3]
            dets = model.head.decode(model.head(xyz, feats, bidx, len(batch)), xyz, bidx, self.eval_score_threshold)
            for s, d in zip(batch, dets):
                keep = self.cfg.boxes_in_range(s.boxes) & (s.box_labels >= 0)
                pkeep = np.ones(len(d['boxes']), bool)
                if self.eval_region == 'camera_fov':
                    keep &= self._in_camera(s, s.boxes)
                    pkeep = self._in_camera(s, d['boxes'])
                for e in (ev, ev_loose):
                    e.add(d['boxes'][pkeep], d['scores'][pkeep], d['labels'][pkeep], s.boxes[keep], s.box_labels[keep])
                if s.camera is not None and s.real:
                    from ros_ncal.eval.det_calibration import fov_false_positives
                    fps[s.scene] = fov_false_positives(d['boxes'], d['scores'], d['labels'], s.boxes, s.box_labels,
                                                       s.camera, ignore_boxes=s.ignore_boxes,
                                                       score_threshold=model.head.cfg.score_threshold)['fp']
        res, loose = ev.compute(), ev_loose.compute()
        if fps:   # real frames: false positives in the camera view at the deployed score threshold
            res['false_positives_in_fov'] = fps
            res['score_threshold'] = float(model.head.cfg.score_threshold)
        for k in ('AP_bev', 'AP_3d', 'mAP_bev', 'mAP_3d'):
            res[f'{k}_loose'] = loose[k]
        return res


    @torch.no_grad()
    def detect(self, model: TaskModel, samples, device, batch_size: int = 2,
               score_threshold: float | None = None) -> list:
        """-> per sample dict(boxes, scores, labels) (decode with an optional score threshold override)."""
        res = []
        for k in range(0, len(samples), batch_size):
            batch = samples[k:k + batch_size]
            pts, bidx = _cat(batch, device)
            feats = torch.cat(model.features(pts))
            xyz = torch.cat(pts)[:, :3]
            res.extend(model.head.decode(model.head(xyz, feats, bidx, len(batch)), xyz, bidx, score_threshold))
        return res

    @staticmethod
    def _in_camera(s, boxes) -> np.ndarray:
        """(M,) bool: box centre projects into the sample's image (KITTI labels exist only there)."""
        from ros_ncal.geometry import project_lidar
        if s.camera is None:
            raise ValueError(f'sample {s.index}: eval_region camera_fov needs the camera of the source sample')
        if len(boxes) == 0:
            return np.zeros(0, bool)
        K, T, hw = s.camera
        return project_lidar(np.asarray(boxes, np.float64)[:, :3], T, K, hw)[2]


class PanopticTask:
    """Semantic classes + instance centre offsets clustered per thing class; metric PQ."""
    name = 'panoptic'
    main_metric = 'PQ'

    def __init__(self, head_cfg: dict, num_classes: int = 20, class_names=SEMANTIC_CLASS_NAMES):
        cfg = dict(head_cfg or {})
        self.num_classes = int(cfg.pop('num_classes', num_classes))
        self.min_points = int(cfg.pop('eval_min_points', 10))
        self.head_cfg = cfg
        self.class_names = list(class_names)[:self.num_classes]
        self.weights: torch.Tensor | None = None

    def build_head(self, in_dim: int) -> nn.Module:
        return PanopticHead(in_dim, self.num_classes, **self.head_cfg)

    fit_statistics = SegTask.fit_statistics

    def loss(self, model: TaskModel, batch, device) -> dict:
        pts, bidx = _cat(batch, device)
        feats = torch.cat(model.features(pts))
        out = model.head(feats)
        labels = torch.cat([torch.from_numpy(s.labels) for s in batch]).to(device)
        inst = torch.cat([torch.from_numpy(s.instances) for s in batch]).to(device)
        return model.head.loss(out, torch.cat(pts)[:, :3], labels, inst, bidx, self.weights)

    @torch.no_grad()
    def evaluate(self, model: TaskModel, samples, device, batch_size: int = 2) -> dict:
        ev = PanopticEvaluator(self.num_classes, model.head.thing_classes, 0, self.min_points, self.class_names)
        for k in range(0, len(samples), batch_size):
            batch = samples[k:k + batch_size]
            pts, _ = _cat(batch, device)
            for s, p, f in zip(batch, pts, model.features(pts)):
                sem, inst = model.head.predict(model.head(f), p[:, :3])
                ev.add(sem, inst, s.labels, s.instances)
        return ev.compute()


def make_task(task: str, head_cfg: dict | None) -> Any:
    if task == 'seg':
        return SegTask(head_cfg or {})
    if task == 'det':
        return DetTask(head_cfg or {})
    if task == 'panoptic':
        return PanopticTask(head_cfg or {})
    raise ValueError(f'unknown task {task!r}; expected one of {TASKS}')
