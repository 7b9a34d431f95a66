"""The learning-rate schedule of pretraining and fine-tuning: linear warm-up, then cosine decay."""
from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, warmup_steps: int, min_ratio: float) -> float:
    """LR multiplier at ``step`` (0-based) of ``total``: ``(step + 1) / warmup_steps`` during the warm-up, then
    cosine from 1 to ``min_ratio`` over the remaining steps (``min_ratio`` after ``total``)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
