"""Training FLOPs of one step, counted by `torch.utils.flop_counter.FlopCounterMode`.

It counts the FLOPs of matrix multiplies, convolutions and attention (2 per multiply-add),
forward and backward; elementwise work, normalisation and the optimiser are not counted, and
neither is a teacher's EMA update. A step's count is the same at every step when the shapes
are; where a method's masks change the token counts from step to step (I-JEPA's: vit_nano
at 32 px 69-86 GFLOP a step over five draws), `train_step_flops` averages the first few
steps' draws.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from jepalab.build import build_method
from jepalab.config import Config
from jepalab.train import batch_indices, step_seed


def count_step_flops(method: torch.nn.Module, batch: dict) -> int:
    """FLOPs of one training step of `method` on `batch`: `method(batch)`, then
    `.loss.backward()` (no optimiser step). Leaves gradients in `method`."""
    method.train()
    with FlopCounterMode(display=False) as counter:
        method(batch).loss.backward()
    return int(counter.get_total_flops())


def train_step_flops(cfg: Config, data, device: torch.device, steps: int = 4) -> int:
    """FLOPs of one training step of `cfg`: a freshly built method on the batches and seeds
    the trainer uses for its first `steps` steps, averaged (masks drawn per step change a
    step's work), leaving the caller's random state as it was."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.train.seed)
        method = build_method(cfg, data.declares).to(device)
        counts = []
        for step in range(steps):
            torch.manual_seed(step_seed(cfg.train.seed, step))
            index = batch_indices(step, len(data.train), cfg.train.batch_size, cfg.train.seed)
            batch = {key: value.to(device) for key, value in data.train.batch(index).items()}
            counts.append(count_step_flops(method, batch))
            method.zero_grad(set_to_none=True)
        return round(sum(counts) / steps)
