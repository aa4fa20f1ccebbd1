"""train.on_nonfinite: what a NaN or inf loss or gradient does to a run, checked without a
host sync per step.

Every step's loss and gradient norm are checked on the device. With `stop` (the default)
the check is not read at each step: the first bad step (its number, loss and gradient norm)
is kept on the device and read where the loop reads the host anyway (a log step, before
every checkpoint, at the end). The run then stops naming that step; the updates after it
are never saved, so the newest checkpoint is the last good one. With `skip` the check
decides the step's own update, so it is read at every step (one sync per step).
"""
from __future__ import annotations

from pathlib import Path

import torch

from jepalab import checkpoint


class NonFinite(FloatingPointError):
    """A NaN or inf loss or gradient with train.on_nonfinite=stop."""


class FiniteCheck:
    def __init__(self, policy: str, device: torch.device):
        self.policy = policy
        self.first_step = torch.full((), -1, dtype=torch.long, device=device)  # -1: none yet
        self.first_values = torch.zeros(2, device=device)  # its loss and gradient norm

    def check(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor,
              gradient: bool = True) -> bool:
        """Check step `step` (1-based): whether its update is to be applied. With `stop`
        always (a bad step is recorded, and stops the run at the next read); with `skip`
        whether the step is finite (read at once). `gradient=False` checks the loss alone
        (an fp16 gradient scaler skips overflowing gradients itself)."""
        loss, grad_norm = loss.detach().float(), grad_norm.detach().float()
        bad = ~torch.isfinite(loss + grad_norm if gradient else loss)
        if self.policy == "skip":
            return not bool(bad)
        first = bad & (self.first_step < 0)
        self.first_step = torch.where(first, step, self.first_step)
        self.first_values = torch.where(first, torch.stack([loss, grad_norm]), self.first_values)
        return True

    def raise_if_bad(self, method_name: str, run_dir: Path) -> None:
        """Raise NonFinite naming the first bad step, if there was one (reads the device)."""
        step = int(self.first_step)
        if step < 0:
            return
        loss, grad_norm = self.first_values.tolist()
        good = checkpoint.latest(run_dir)
        raise NonFinite(
            f"non-finite training at step {step} (method {method_name}): loss {loss:.4g}, "
            f"gradient norm {grad_norm:.4g}; the last good checkpoint is "
            f"{good or 'none (none was written yet)'}. Lower optim.lr, check the data, or set "
            "train.on_nonfinite=skip to skip such steps")
