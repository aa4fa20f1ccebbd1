"""A run's metrics: metrics.jsonl always; TensorBoard (`train.tensorboard=true`) and
Weights & Biases (`train.wandb=true`; `WANDB_MODE=offline` needs no network) if asked.
Written by rank 0 only. On resume, lines past the checkpoint resumed from are dropped, so
each step appears once, as if the run had never stopped."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from jepalab import checkpoint
from jepalab.config import Config
from jepalab.errors import MissingExtra
from jepalab.report import read_metrics


def _numbers(values: dict) -> dict:
    return {k: v for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


class MetricsLog:
    def __init__(self, run_dir: Path, resume_step: int, cfg: Config, enabled: bool):
        self.enabled, self.path = enabled, run_dir / "metrics.jsonl"
        self.writer = self.wandb = None
        if not enabled:
            return
        if self.path.exists():  # drop lines past the checkpoint we resume from
            kept = [row for row in read_metrics(run_dir) if row["step"] <= resume_step]
            checkpoint.atomic_write_text(self.path, "".join(json.dumps(row) + "\n"
                                                            for row in kept))
        if cfg.train.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise MissingExtra("train.tensorboard=true needs tensorboard: "
                                   "pip install -e '.[log]'") from e
            self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        if cfg.train.wandb:
            try:
                import wandb
            except ImportError as e:
                raise MissingExtra("train.wandb=true needs wandb: pip install -e '.[log]'") from e
            # one W&B run per run directory, continued on resume
            where = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:8]
            run_id = re.sub(r"[^\w-]", "_", run_dir.name)[:48] + "-" + where
            self.wandb = wandb.init(project="jepalab", dir=str(run_dir), name=run_dir.name,
                                    id=run_id, resume="allow", config=cfg.to_dict())

    def write(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        numbers = _numbers(values)  # a collapse warning's text goes to metrics.jsonl alone
        if self.writer:
            for key, value in numbers.items():
                self.writer.add_scalar(key, value, step)
        if self.wandb:
            self.wandb.log(numbers, step=step)

    def close(self):
        if self.writer:
            self.writer.close()
        if self.wandb:
            self.wandb.finish()
