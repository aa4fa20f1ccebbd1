"""SimCLR (Chen et al., ICML 2020): contrast two augmented views with NT-Xent.

Algorithm, per step:
  1. two views of each image: random resized crop, flip, colour jitter (strength s = 0.5,
     the paper's CIFAR setting: 0.4, 0.4, 0.4, 0.1 scaled), grayscale 0.2; no blur at 32 px;
  2. h = backbone(view) (mean-pooled), z = projector(h) with BatchNorm (SimCLR v2 style);
  3. loss = NT-Xent(z1, z2) at temperature 0.5 (Eq. 1; 2N - 2 in-batch negatives).
The probes read h, the backbone's features, as the paper does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from jepalab import losses
from jepalab.data.views import Augment, ViewSpec
from jepalab.methods import StepOutput
from jepalab.nn.heads import Projected, mlp
from jepalab.nn.vit import VisionTransformer, ViTSpec


@dataclass
class Config:
    temperature: float = 0.5
    projector_hidden: int = 512   # paper: 2048 (ResNet-50); scaled to the small backbones
    projector_dim: int = 128
    projector_layers: int = 2
    crop_scale: tuple[float, float] = (0.08, 1.0)

    def validate(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"method.temperature must be > 0, got {self.temperature}")


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.view = Augment(ViewSpec(spec.image_size, cfg.crop_scale,
                                     jitter=(0.4, 0.4, 0.4, 0.1)))
        self.backbone = VisionTransformer(spec)
        self.projector = mlp(self.backbone.embed_dim, cfg.projector_hidden, cfg.projector_dim,
                             cfg.projector_layers)

    def forward(self, batch: dict) -> StepOutput:
        images = batch["images"]
        views = torch.cat([self.view(images), self.view(images)])
        z1, z2 = self.projector(self.backbone.features(views)).chunk(2)
        return StepOutput(losses.ntxent(z1, z2, temperature=self.cfg.temperature))

    def on_step_end(self, progress: float) -> None:
        pass

    def eval_encoder(self) -> nn.Module:
        return self.backbone

    def embedder(self) -> nn.Module:
        return Projected(self.backbone, self.projector)
