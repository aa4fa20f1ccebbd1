"""Exponential moving average of a module's parameters (teacher / target encoders)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def check_momentum(start: float, end: float) -> None:
    """A method config's `ema_start`, `ema_end`: 0 <= start <= end <= 1."""
    if not 0.0 <= start <= end <= 1.0:
        raise ValueError("method.ema_start and method.ema_end need 0 <= start <= end <= 1, "
                         f"got {start}, {end}")


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
