"""MoCo v3 (Chen, Xie & He, ICCV 2021): momentum encoder, predictor, in-batch negatives,
symmetric loss; the recipe that trains ViTs stably.

Algorithm, per step:
  1. two views with BYOL's augmentations (as MoCo v3);
  2. q = predictor(projector(backbone(view))) for both views; the projector is 3 layers
     with BatchNorm, ending in a BatchNorm without affine; the predictor 2 layers with a
     BatchNorm inside only, as the authors' code builds them (Sec. 4);
  3. k = momentum projector(momentum backbone(view)) for both views, no gradient;
  4. loss = ctr(q1, k2) + ctr(q2, k1), ctr = 2 tau * InfoNCE on normalised vectors with
     the other images' keys (from every process) as negatives (Algorithm 1), tau = 0.2;
  5. after the optimiser step: momentum encoder <- EMA, momentum 0.99 -> 1 along a cosine.
The patch projection stays at its random initialisation (Sec. 5.3, "random patch
projection"), which the paper found stabilises ViT training.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from jepalab import losses
from jepalab.methods import StepOutput
from jepalab.methods.byol import byol_views
from jepalab.nn.ema import check_momentum, ema_momentum, ema_update
from jepalab.nn.heads import Projected, mlp
from jepalab.nn.vit import VisionTransformer, ViTSpec


@dataclass
class Config:
    temperature: float = 0.2
    ema_start: float = 0.99
    ema_end: float = 1.0
    projector_hidden: int = 512   # paper: 4096 -> 256; scaled to the small backbones
    projector_dim: int = 128
    freeze_patch_embed: bool = True
    crop_scale: tuple[float, float] = (0.08, 1.0)

    def validate(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"method.temperature must be > 0, got {self.temperature}")
        check_momentum(self.ema_start, self.ema_end)


def contrast(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo v3's ctr, scaled by 2 tau as the paper's pseudo-code: InfoNCE on normalised
    vectors, the keys of every process the candidates (info_nce gathers them); every
    process returns the global batch's loss."""
    loss = losses.info_nce(F.normalize(q, dim=1), F.normalize(k, dim=1),
                           temperature=temperature)
    return loss * 2 * temperature


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.views = nn.ModuleList(byol_views(spec.image_size, cfg.crop_scale))
        self.backbone = VisionTransformer(spec)
        if cfg.freeze_patch_embed:
            self.backbone.patch_embed.requires_grad_(False)
        self.projector = mlp(self.backbone.embed_dim, cfg.projector_hidden, cfg.projector_dim,
                             layers=3, last_norm=True)
        self.predictor = mlp(cfg.projector_dim, cfg.projector_hidden, cfg.projector_dim,
                             layers=2)
        self.momentum_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
        self.momentum_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def forward(self, batch: dict) -> StepOutput:
        images = batch["images"]
        views = [view(images) for view in self.views]
        q1, q2 = (self.predictor(self.projector(self.backbone.features(v))) for v in views)
        with torch.no_grad():
            k1, k2 = (self.momentum_projector(self.momentum_backbone.features(v)) for v in views)
        tau = self.cfg.temperature
        return StepOutput(contrast(q1, k2, tau) + contrast(q2, k1, tau))

    def on_step_end(self, progress: float) -> None:
        momentum = ema_momentum(progress, self.cfg.ema_start, self.cfg.ema_end, cosine=True)
        ema_update(self.momentum_backbone, self.backbone, momentum)
        ema_update(self.momentum_projector, self.projector, momentum)

    def eval_encoder(self) -> nn.Module:
        return self.backbone

    def embedder(self) -> nn.Module:
        return Projected(self.backbone, self.projector)
