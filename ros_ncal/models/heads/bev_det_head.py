"""CenterPoint-style 3D detection head on per-point backbone features.

1. Scatter: per-point features are mean-pooled into a bird's-eye-view grid over ``x_range`` x ``y_range``
   (cell ``cell_size`` m), plus one occupancy channel log(1 + points in cell). Points outside are dropped.
2. Neck: a small 2D U-shaped conv net (stride 1 and 2 blocks, upsampled and concatenated).
3. Heads: a heatmap per class (car, pedestrian, cyclist), trained with the CenterNet focal loss against
   Gaussian peaks at the box centres, and 8 regression channels at the centre cell: sub-cell offset
   (dx, dy), centre z, log(l), log(w), log(h), sin(yaw), cos(yaw), trained with L1.
4. Decode: 3x3 max-pool peaks, top-k over classes and cells, per-class score calibration (Platt), score
   threshold, boxes with fewer than ``min_points_in_box`` input points dropped, rotated BEV NMS per class.

Grid layout: tensor ``[b, c, ix, iy]`` with ``ix = floor((x - x_min) / cell)``, ``iy = floor((y - y_min) / cell)``.
Boxes: (x, y, z, l, w, h, yaw) in the LiDAR frame, z at the box centre (ros_ncal.eval.box_geometry).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from ros_ncal.geometry.boxes import rotated_nms

NUM_REG = 8  # dx, dy, z, log l, log w, log h, sin yaw, cos yaw


@dataclass
class BEVDetConfig:
    """Grid, network and decoding settings of the BEV detection head."""
    class_names: tuple = ('car', 'pedestrian', 'cyclist')
    x_range: tuple = (-32.0, 32.0)      # metres, LiDAR frame
    y_range: tuple = (-32.0, 32.0)
    cell_size: float = 0.5              # metres per BEV cell
    neck_channels: int = 64
    min_overlap: float = 0.5            # IoU kept by a centre shift of one Gaussian radius
    min_radius: int = 1                 # cells
    heatmap_weight: float = 1.0
    regression_weight: float = 2.0
    top_k: int = 100
    score_threshold: float = 0.1
    nms_iou: float = 0.1                # rotated BEV IoU above which a lower-scoring box is suppressed
    max_detections: int = 50
    min_points_in_box: int = 0          # decode keeps a box only with at least this many input points inside it
    score_calibration: dict = None      # {class name: [a, b]}: score = sigmoid(a * logit(peak) + b) (Platt, fitted
                                        # on held-out frames; ros_ncal.eval.det_calibration); None / missing = raw

    def __post_init__(self):
        if self.score_calibration is None:
            self.score_calibration = {}

    @classmethod
    def from_dict(cls, cfg: dict) -> 'BEVDetConfig':
        """From a YAML / checkpoint head section (lists for the tuple fields), validated."""
        cfg = dict(cfg or {})
        for key in ('class_names', 'x_range', 'y_range'):
            if key in cfg:
                cfg[key] = tuple(cfg[key])
        return cls(**cfg).validate()

    @property
    def grid_shape(self) -> tuple[int, int]:
        nx = int(round((self.x_range[1] - self.x_range[0]) / self.cell_size))
        ny = int(round((self.y_range[1] - self.y_range[0]) / self.cell_size))
        return nx, ny

    def validate(self) -> 'BEVDetConfig':
        if not self.cell_size > 0:
            raise ValueError(f'cell_size must be positive, got {self.cell_size}')
        if self.x_range[1] <= self.x_range[0] or self.y_range[1] <= self.y_range[0]:
            raise ValueError(f'empty BEV range: x {self.x_range}, y {self.y_range}')
        nx, ny = self.grid_shape
        if nx < 4 or ny < 4 or nx % 2 or ny % 2:
            raise ValueError(f'BEV grid must be at least 4x4 cells with even sides, got {nx}x{ny}')
        return self

    def boxes_in_range(self, boxes) -> np.ndarray:
        """(M, 7) boxes -> (M,) bool: centre inside the BEV grid (the only boxes the head can find)."""
        b = np.asarray(boxes, np.float64).reshape(-1, 7)
        return ((b[:, 0] >= self.x_range[0]) & (b[:, 0] < self.x_range[1])
                & (b[:, 1] >= self.y_range[0]) & (b[:, 1] < self.y_range[1]))


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def gaussian_radius(length_cells: float, width_cells: float, min_overlap: float) -> float:
    """Largest diagonal centre shift r (cells) keeping IoU >= min_overlap between a box and its shifted copy.

    With the box shifted by r along both axes: (l - r)(w - r) / (2 l w - (l - r)(w - r)) = o, i.e.
    (l - r)(w - r) = k with k = 2 o l w / (1 + o); the smaller root of r^2 - (l + w) r + l w - k = 0.
    """
    l, w, o = float(length_cells), float(width_cells), float(min_overlap)
    k = 2.0 * o * l * w / (1.0 + o)
    b = l + w
    disc = max(b * b - 4.0 * (l * w - k), 0.0)
    return max(0.0, (b - math.sqrt(disc)) / 2.0)


def draw_gaussian(heat: torch.Tensor, cx: int, cy: int, radius: int) -> None:
    """In place: heat (H, W) = max(heat, Gaussian peak 1 at (cx, cy), sigma = (2 r + 1) / 6)."""
    H, W = heat.shape
    sigma = (2 * radius + 1) / 6.0
    x0, x1 = max(0, cx - radius), min(H, cx + radius + 1)
    y0, y1 = max(0, cy - radius), min(W, cy + radius + 1)
    if x0 >= x1 or y0 >= y1:
        return
    xs = torch.arange(x0, x1, device=heat.device, dtype=heat.dtype) - cx
    ys = torch.arange(y0, y1, device=heat.device, dtype=heat.dtype) - cy
    g = torch.exp(-(xs[:, None] ** 2 + ys[None, :] ** 2) / (2 * sigma * sigma))
    heat[x0:x1, y0:y1] = torch.maximum(heat[x0:x1, y0:y1], g)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """CenterNet penalty-reduced focal loss; logits, target (B, C, H, W); normalised by the number of peaks."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1.0 - pos
    pos_loss = -torch.log(p) * (1 - p) ** alpha * pos
    neg_loss = -torch.log(1 - p) * p ** alpha * (1 - target) ** beta * neg
    num_pos = pos.sum().clamp_min(1.0)
    return (pos_loss.sum() + neg_loss.sum()) / num_pos


class BEVDetHead(nn.Module):
    """Per-point features -> BEV heatmaps + box regression; loss and decoding.

    in_dim: backbone per-point feature dimension; cfg: BEVDetConfig.
    """

    def __init__(self, in_dim: int, cfg: BEVDetConfig | None = None):
        super().__init__()
        self.cfg = (cfg or BEVDetConfig()).validate()
        c = self.cfg.neck_channels
        self.num_classes = len(self.cfg.class_names)
        self.block1 = nn.Sequential(_conv_bn_relu(in_dim + 1, c), _conv_bn_relu(c, c))
        self.block2 = nn.Sequential(_conv_bn_relu(c, 2 * c, stride=2), _conv_bn_relu(2 * c, 2 * c),
                                    _conv_bn_relu(2 * c, 2 * c))
        self.up2 = nn.Sequential(nn.ConvTranspose2d(2 * c, c, 2, 2, bias=False), nn.BatchNorm2d(c),
                                 nn.ReLU(inplace=True))
        self.fuse = _conv_bn_relu(2 * c, c)
        self.heatmap = nn.Sequential(_conv_bn_relu(c, c), nn.Conv2d(c, self.num_classes, 1))
        self.regression = nn.Sequential(_conv_bn_relu(c, c), nn.Conv2d(c, NUM_REG, 1))
        nn.init.constant_(self.heatmap[-1].bias, -2.19)  # prior probability 0.1 (CenterNet)

    # ------------------------------------------------------------------ BEV
    def scatter(self, xyz: torch.Tensor, feats: torch.Tensor, batch_idx: torch.Tensor, batch_size: int) -> torch.Tensor:
        """xyz (N, 3), feats (N, D), batch_idx (N,) -> BEV (B, D + 1, nx, ny): mean feature + log(1 + count)."""
        cfg = self.cfg
        nx, ny = cfg.grid_shape
        ix = torch.floor((xyz[:, 0] - cfg.x_range[0]) / cfg.cell_size).long()
        iy = torch.floor((xyz[:, 1] - cfg.y_range[0]) / cfg.cell_size).long()
        inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        flat = (batch_idx[inside].long() * nx + ix[inside]) * ny + iy[inside]
        D = feats.shape[1]
        total = batch_size * nx * ny
        sums = feats.new_zeros(total, D).index_add_(0, flat, feats[inside])
        counts = feats.new_zeros(total).index_add_(0, flat, feats.new_ones(flat.shape[0]))
        mean = sums / counts.clamp_min(1.0)[:, None]
        grid = torch.cat([mean, torch.log1p(counts)[:, None]], dim=1)
        return grid.view(batch_size, nx, ny, D + 1).permute(0, 3, 1, 2).contiguous()

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor, batch_idx: torch.Tensor, batch_size: int) -> dict:
        """-> {'heatmap': (B, K, nx, ny) logits, 'regression': (B, 8, nx, ny)}."""
        bev = self.scatter(xyz, feats, batch_idx, batch_size)
        x1 = self.block1(bev)
        x2 = self.up2(self.block2(x1))
        y = self.fuse(torch.cat([x1, x2], dim=1))
        return {'heatmap': self.heatmap(y), 'regression': self.regression(y)}

    # ------------------------------------------------------------------ training
    def build_targets(self, boxes: list, labels: list, device) -> dict:
        """boxes: list of (M_i, 7) tensors/arrays, labels: list of (M_i,) class ids (0..K-1; others skipped).

        -> heatmap (B, K, nx, ny), reg (B, 8, nx, ny), mask (B, nx, ny) bool of supervised centre cells.
        """
        cfg = self.cfg
        nx, ny = cfg.grid_shape
        B = len(boxes)
        heat = torch.zeros(B, self.num_classes, nx, ny)
        reg = torch.zeros(B, NUM_REG, nx, ny)
        mask = torch.zeros(B, nx, ny, dtype=torch.bool)
        for b in range(B):
            bx = np.asarray(torch.as_tensor(boxes[b]).detach().cpu(), np.float64).reshape(-1, 7)
            lb = np.asarray(torch.as_tensor(labels[b]).detach().cpu(), np.int64).reshape(-1)
            for box, c in zip(bx, lb):
                if not 0 <= c < self.num_classes:
                    continue
                fx = (box[0] - cfg.x_range[0]) / cfg.cell_size
                fy = (box[1] - cfg.y_range[0]) / cfg.cell_size
                cx, cy = int(math.floor(fx)), int(math.floor(fy))
                if not (0 <= cx < nx and 0 <= cy < ny):
                    continue
                r = gaussian_radius(box[3] / cfg.cell_size, box[4] / cfg.cell_size, cfg.min_overlap)
                draw_gaussian(heat[b, c], cx, cy, max(cfg.min_radius, int(r)))
                reg[b, :, cx, cy] = torch.tensor([fx - cx, fy - cy, box[2], math.log(box[3]), math.log(box[4]),
                                                  math.log(box[5]), math.sin(box[6]), math.cos(box[6])])
                mask[b, cx, cy] = True
        return {'heatmap': heat.to(device), 'regression': reg.to(device), 'mask': mask.to(device)}

    def loss(self, out: dict, targets: dict) -> dict:
        """-> {'loss', 'heatmap', 'regression'} scalars."""
        hm = focal_loss(out['heatmap'], targets['heatmap'])
        m = targets['mask']
        if bool(m.any()):
            pred = out['regression'].permute(0, 2, 3, 1)[m]
            tgt = targets['regression'].permute(0, 2, 3, 1)[m]
            rg = F.l1_loss(pred, tgt, reduction='mean')
        else:
            rg = out['regression'].sum() * 0.0
        total = self.cfg.heatmap_weight * hm + self.cfg.regression_weight * rg
        return {'loss': total, 'heatmap': hm.detach(), 'regression': rg.detach()}

    # ------------------------------------------------------------------ inference
    def calibrate_scores(self, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Raw peak probabilities (D,) of classes (D,) -> calibrated probabilities (Platt per class)."""
        out = np.asarray(scores, np.float64).copy()
        for c, name in enumerate(self.cfg.class_names):
            ab = self.cfg.score_calibration.get(name)
            if not ab:
                continue
            sel = np.asarray(labels) == c
            p = np.clip(out[sel], 1e-6, 1 - 1e-6)
            out[sel] = 1.0 / (1.0 + np.exp(-(float(ab[0]) * np.log(p / (1 - p)) + float(ab[1]))))
        return out.astype(np.float32)

    @torch.no_grad()
    def decode(self, out: dict, points=None, batch_idx=None, score_threshold: float | None = None) -> list:
        """-> per sample dict(boxes (D, 7) float32 np, scores (D,), labels (D,) int64), best score first.

        points (N, 3+) / batch_idx (N,): the input cloud(s), needed for ``min_points_in_box``.
        score_threshold: overrides cfg.score_threshold (calibration fitting decodes everything).
        """
        from ros_ncal.geometry.boxes import points_in_boxes
        cfg = self.cfg
        thr = cfg.score_threshold if score_threshold is None else float(score_threshold)
        heat = torch.sigmoid(out['heatmap'].float())
        reg = out['regression'].float()
        B, K, nx, ny = heat.shape
        peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat).float()
        pts_np = bidx_np = None
        if points is not None and cfg.min_points_in_box > 0:
            pts_np = torch.as_tensor(points)[:, :3].detach().float().cpu().numpy()
            bidx_np = (np.zeros(len(pts_np), np.int64) if batch_idx is None
                       else torch.as_tensor(batch_idx).detach().cpu().numpy())
        results = []
        for b in range(B):
            k = min(cfg.top_k, K * nx * ny)
            scores, idx = peaks[b].reshape(-1).topk(k)
            keep = scores > min(thr, 0.01) if cfg.score_calibration else scores > thr
            scores, idx = scores[keep], idx[keep]
            cls = idx // (nx * ny)
            cell = idx % (nx * ny)
            ix, iy = cell // ny, cell % ny
            r = reg[b][:, ix, iy].T  # (D, 8)
            x = (ix.float() + r[:, 0]) * cfg.cell_size + cfg.x_range[0]
            y = (iy.float() + r[:, 1]) * cfg.cell_size + cfg.y_range[0]
            size = torch.exp(r[:, 3:6].clamp(-5.0, 5.0))
            yaw = torch.atan2(r[:, 6], r[:, 7])
            boxes = torch.cat([x[:, None], y[:, None], r[:, 2:3], size, yaw[:, None]], 1).cpu().numpy()
            scores_np, cls_np = scores.cpu().numpy(), cls.cpu().numpy()
            if cfg.score_calibration:
                scores_np = self.calibrate_scores(scores_np, cls_np)
                sel = scores_np > thr
                boxes, scores_np, cls_np = boxes[sel], scores_np[sel], cls_np[sel]
            if pts_np is not None and len(boxes):
                n_in = points_in_boxes(pts_np[bidx_np == b], boxes).sum(axis=1)
                sel = n_in >= cfg.min_points_in_box
                boxes, scores_np, cls_np = boxes[sel], scores_np[sel], cls_np[sel]
            kept = []
            for c in np.unique(cls_np):
                sel = np.where(cls_np == c)[0]
                kept.extend(sel[rotated_nms(boxes[sel], scores_np[sel], cfg.nms_iou)].tolist())
            kept = np.asarray(sorted(kept, key=lambda i: -scores_np[i])[:cfg.max_detections], np.int64)
            results.append({'boxes': boxes[kept].astype(np.float32), 'scores': scores_np[kept].astype(np.float32),
                            'labels': cls_np[kept].astype(np.int64)})
        return results
