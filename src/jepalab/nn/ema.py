"""Exponential moving average of a module's parameters (teacher / target encoders)."""
from __future__ import annotations

import torch
import torch.nn as nn


def ema_momentum(progress: float, start: float, end: float) -> float:
    """Momentum rising linearly from `start` to `end` as training progress goes 0 -> 1."""
    return start + min(max(progress, 0.0), 1.0) * (end - start)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, parameter by parameter."""
    for teacher, student in zip(target.parameters(), online.parameters(), strict=True):
        teacher.lerp_(student.detach(), 1.0 - momentum)
