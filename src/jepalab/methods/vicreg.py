"""VICReg (Bardes, Ponce & LeCun, ICLR 2022): variance, invariance and covariance terms on
the embeddings of two views; no negatives, no teacher, no stop-gradient.

Algorithm, per step:
  1. two views with BYOL's augmentations (the paper uses them, Appendix C);
  2. z = expander(backbone(view)), a 3-layer MLP with BatchNorm (Sec. 4.1);
  3. loss = 25 * invariance + 25 * variance + 1 * covariance (Eq. 6).
The ablation `std_coeff=0` drops the variance term and collapses (the paper's Table 7).
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
    sim_coeff: float = 25.0
    std_coeff: float = 25.0
    cov_coeff: float = 1.0
    expander_dim: int = 512       # paper: 8192; scaled to the small backbones
    expander_layers: int = 3
    crop_scale: tuple[float, float] = (0.08, 1.0)

    def validate(self) -> None:
        for key in ("sim_coeff", "std_coeff", "cov_coeff"):
            if getattr(self, key) < 0:
                raise ValueError(f"method.{key} must be >= 0, got {getattr(self, key)}")


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.views = nn.ModuleList(byol_views(spec.image_size, cfg.crop_scale))
        self.backbone = VisionTransformer(spec)
        self.expander = mlp(self.backbone.embed_dim, cfg.expander_dim, cfg.expander_dim,
                            cfg.expander_layers)

    def forward(self, batch: dict) -> StepOutput:
        images = batch["images"]
        views = torch.cat([view(images) for view in self.views])
        z1, z2 = self.expander(self.backbone.features(views)).chunk(2)
        cfg = self.cfg
        loss = losses.vicreg(z1, z2, sim_coeff=cfg.sim_coeff, std_coeff=cfg.std_coeff,
                             cov_coeff=cfg.cov_coeff)
        return StepOutput(loss)

    def on_step_end(self, progress: float) -> None:
        pass

    def eval_encoder(self) -> nn.Module:
        return self.backbone

    def embedder(self) -> nn.Module:
        return Projected(self.backbone, self.expander)
