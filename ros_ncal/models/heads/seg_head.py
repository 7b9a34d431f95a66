"""Semantic segmentation head: per-point classifier on backbone features, class-balanced cross-entropy.

Logits cover all ``num_classes`` ids including the ignore class 0 so that label ids index them directly;
the ignore logit never receives a target (``ignore_index``) and is masked out at prediction, so the head
predicts ids 1..C-1 only.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class SegHead(nn.Module):
    """feats (N, in_dim) -> logits (N, num_classes).

    hidden: 0 gives a single linear layer (the linear-probing classifier); > 0 an MLP with one hidden
    layer (Linear-BN-ReLU-Linear).
    """

    def __init__(self, in_dim: int, num_classes: int = 20, hidden: int = 0, ignore_index: int = 0,
                 dropout: float = 0.0):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f'num_classes must be >= 2, got {num_classes}')
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        if hidden > 0:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                     nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, num_classes))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, C) logits -> (N,) int64 class ids, never the ignore id."""
        masked = logits.detach().clone()
        masked[:, self.ignore_index] = float('-inf')
        return masked.argmax(dim=1)


def class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N,) int labels -> (num_classes,) int64 counts."""
    return torch.bincount(labels.reshape(-1).long(), minlength=num_classes)[:num_classes]


def inverse_sqrt_frequency_weights(counts, ignore_index: int = 0) -> torch.Tensor:
    """(C,) class counts -> (C,) float32 CE weights w_c proportional to 1 / sqrt(freq_c).

    Normalised so the frequency-weighted mean weight over labelled points is 1 (the loss keeps its scale).
    Classes absent from the counts and the ignore class get weight 0 (they never appear as targets).
    """
    c = torch.as_tensor(counts, dtype=torch.float64).clone()
    c[ignore_index] = 0
    total = c.sum()
    if total <= 0:
        raise ValueError('inverse_sqrt_frequency_weights: no labelled points (all counts are zero or ignored)')
    freq = c / total
    w = torch.where(c > 0, 1.0 / torch.sqrt(freq.clamp_min(1e-12)), torch.zeros_like(freq))
    w = w / (w * freq).sum()
    return w.float()


def seg_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None,
             ignore_index: int = 0) -> torch.Tensor:
    """Weighted CE ignoring ``ignore_index``; 0 (with a gradient path) when no point is labelled."""
    labels = labels.long()
    if not bool((labels != ignore_index).any()):
        return logits.sum() * 0.0
    w = None if weights is None else weights.to(logits.device, logits.dtype)
    return F.cross_entropy(logits, labels, weight=w, ignore_index=ignore_index)
