"""Supervised ceiling: the same encoder trained with labels (mean-pooled tokens -> linear).

Not self-supervised; it is the reference every report prints beside the methods, trained
with the same architecture, data, views and step budget. On images or on clips (a video
ViT; the crop is drawn once per clip).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
import torch.nn.functional as F

from jepalab.data.views import crop_flip
from jepalab.methods import StepOutput
from jepalab.nn.vit import VisionTransformer, ViTSpec

DATA_KIND = ("images", "videos")


@dataclass
class Config:
    # milder than I-JEPA's (0.3, 1): small objects anywhere in the frame must stay in the crop
    crop_scale: tuple[float, float] = (0.7, 1.0)
    hflip: bool = False
    label_smoothing: float = 0.1

    def validate(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("method.label_smoothing must be in [0, 1), got "
                             f"{self.label_smoothing}")


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.view = crop_flip(spec.image_size, cfg.crop_scale, cfg.hflip)
        self.encoder = VisionTransformer(spec)
        self.head = nn.Linear(self.encoder.embed_dim, num_classes)

    def forward(self, batch: dict) -> StepOutput:
        inputs = batch["clips"] if "clips" in batch else batch["images"]
        logits = self.head(self.encoder.features(self.view(inputs)))
        loss = F.cross_entropy(logits, batch["labels"], label_smoothing=self.cfg.label_smoothing)
        accuracy = (logits.argmax(1) == batch["labels"]).float().mean().detach()
        return StepOutput(loss, {"train_acc": accuracy})

    def on_step_end(self, progress: float) -> None:
        pass

    def eval_encoder(self) -> nn.Module:
        return self.encoder
