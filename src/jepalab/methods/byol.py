"""BYOL (Grill et al., NeurIPS 2020): predict a slow-moving target's projection of the
other view; no negatives.

Algorithm, per step:
  1. two views with the paper's asymmetric augmentations (Table 6): colour jitter
     (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale 0.2, blur p 1.0 / 0.1, solarise p 0 / 0.2;
  2. online: p = predictor(projector(backbone(view))) for both views;
  3. target (EMA copy of backbone + projector, no gradient): z' for both views;
  4. loss = byol(p1, z2') + byol(p2, z1'), each 2 - 2 cos (Eq. 2, symmetrised);
  5. after the optimiser step: target <- EMA of online, momentum 0.996 -> 1 along a cosine.
The ablation `predictor=false ema_start=0 ema_end=0` (target = the online weights, still
behind a stop-gradient) removes BYOL's anti-collapse ingredients and collapses.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn

from jepalab import losses
from jepalab.data.views import Augment, ViewSpec
from jepalab.methods import StepOutput
from jepalab.nn.ema import check_momentum, ema_momentum, ema_update
from jepalab.nn.heads import Projected, mlp
from jepalab.nn.vit import VisionTransformer, ViTSpec


@dataclass
class Config:
    projector_hidden: int = 512   # paper: 4096 -> 256; scaled to the small backbones
    projector_dim: int = 128
    predictor: bool = True
    ema_start: float = 0.996
    ema_end: float = 1.0
    crop_scale: tuple[float, float] = (0.08, 1.0)

    def validate(self) -> None:
        check_momentum(self.ema_start, self.ema_end)


def byol_views(size: int, crop_scale) -> tuple[Augment, Augment]:
    """BYOL's two asymmetric augmentation pipelines (also used by VICReg)."""
    common = {"scale": tuple(crop_scale), "jitter": (0.4, 0.4, 0.2, 0.1)}
    return (Augment(ViewSpec(size, blur_p=1.0, solarize_p=0.0, **common)),
            Augment(ViewSpec(size, blur_p=0.1, solarize_p=0.2, **common)))


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.views = nn.ModuleList(byol_views(spec.image_size, cfg.crop_scale))
        self.backbone = VisionTransformer(spec)
        self.projector = mlp(self.backbone.embed_dim, cfg.projector_hidden, cfg.projector_dim)
        self.predictor = (mlp(cfg.projector_dim, cfg.projector_hidden, cfg.projector_dim)
                          if cfg.predictor else nn.Identity())
        self.target_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def forward(self, batch: dict) -> StepOutput:
        images = batch["images"]
        views = torch.cat([view(images) for view in self.views])
        p1, p2 = self.predictor(self.projector(self.backbone.features(views))).chunk(2)
        with torch.no_grad():
            t1, t2 = self.target_projector(self.target_backbone.features(views)).chunk(2)
        return StepOutput(losses.byol(p1, t2) + losses.byol(p2, t1))

    def on_step_end(self, progress: float) -> None:
        momentum = ema_momentum(progress, self.cfg.ema_start, self.cfg.ema_end, cosine=True)
        ema_update(self.target_backbone, self.backbone, momentum)
        ema_update(self.target_projector, self.projector, momentum)

    def eval_encoder(self) -> nn.Module:
        return self.backbone

    def embedder(self) -> nn.Module:
        return Projected(self.backbone, self.projector)
