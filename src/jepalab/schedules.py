"""Learning-rate, weight-decay and momentum schedules as pure functions of the step."""
from __future__ import annotations

import math


def cosine(progress: float, start: float, end: float) -> float:
    """Half-cosine from `start` (progress 0) to `end` (progress 1)."""
    progress = min(max(progress, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(step: int, total: int, warmup: int, peak: float, final: float) -> float:
    """Linear warmup 0 -> peak over `warmup` steps, then cosine peak -> final at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return cosine((step - warmup) / max(1, total - warmup), peak, final)


def apply(optimizer, step: int, total: int, optim) -> tuple[float, float]:
    """Set lr (warmup + cosine) and weight decay (cosine) of `optimizer` for `step`.

    `optim` is an OptimConfig; groups marked apply_decay=False keep weight decay 0.
    """
    lr = warmup_cosine(step, total, optim.warmup_steps, optim.lr, optim.min_lr)
    weight_decay = cosine(step / max(1, total - 1), optim.weight_decay, optim.weight_decay_end)
    for group in optimizer.param_groups:
        group["lr"] = lr
        if group.get("apply_decay", True):
            group["weight_decay"] = weight_decay
    return lr, weight_decay
