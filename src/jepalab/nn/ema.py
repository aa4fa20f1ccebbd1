"""Exponential moving average of a module's parameters (teacher / target encoders)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def ema_momentum(progress: float, start: float, end: float, *, cosine: bool = False) -> float:
    """Momentum rising from `start` to `end` as training progress goes 0 -> 1: linearly
    (I-JEPA, DINO's code) or along a half cosine (BYOL Sec. 3.2, MoCo v3):
    end - (end - start) * (cos(pi * progress) + 1) / 2."""
    progress = min(max(progress, 0.0), 1.0)
    if cosine:
        return end - (end - start) * (math.cos(math.pi * progress) + 1) / 2
    return start + progress * (end - start)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, parameter by parameter. Under
    FSDP2 both are sharded alike (parallel.py): each process updates its own shards."""
    for teacher, student in zip(target.parameters(), online.parameters(), strict=True):
        teacher.lerp_(student.detach(), 1.0 - momentum)
