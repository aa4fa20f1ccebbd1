"""Barlow Twins (Zbontar et al., ICML 2021): make the cross-correlation of the two views'
embeddings the identity; no negatives, no teacher.

Algorithm, per step:
  1. two views with BYOL's augmentations (the paper uses them, Sec. 3);
  2. z = projector(backbone(view)), 3 linear layers with BatchNorm and ReLU (Sec. 3);
  3. loss = sum_i (1 - C_ii)^2 + 5e-3 * sum_{i != j} C_ij^2 on the batch-standardised
     cross-correlation C (Eq. 1-2).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from jepalab import losses
from jepalab.methods import StepOutput
from jepalab.methods.byol import byol_views
from jepalab.nn.heads import Projected, mlp
from jepalab.nn.vit import VisionTransformer, ViTSpec


@dataclass
class Config:
    lambd: float = 5e-3
    projector_dim: int = 512      # paper: 8192; scaled to the small backbones
    projector_layers: int = 3
    crop_scale: tuple[float, float] = (0.08, 1.0)

    def validate(self) -> None:
        if self.lambd < 0:
            raise ValueError(f"method.lambd must be >= 0, got {self.lambd}")


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.views = nn.ModuleList(byol_views(spec.image_size, cfg.crop_scale))
        self.backbone = VisionTransformer(spec)
        self.projector = mlp(self.backbone.embed_dim, cfg.projector_dim, cfg.projector_dim,
                             cfg.projector_layers)

    def forward(self, batch: dict) -> StepOutput:
        images = batch["images"]
        views = torch.cat([view(images) for view in self.views])
        z1, z2 = self.projector(self.backbone.features(views)).chunk(2)
        return StepOutput(losses.barlow_twins(z1, z2, lambd=self.cfg.lambd))

    def on_step_end(self, progress: float) -> None:
        pass

    def eval_encoder(self) -> nn.Module:
        return self.backbone

    def embedder(self) -> nn.Module:
        return Projected(self.backbone, self.projector)
