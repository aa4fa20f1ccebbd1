"""LeJEPA (Balestriero & LeCun 2025): every view's embedding predicts the mean embedding of
the global views, and SIGReg keeps the embeddings an isotropic Gaussian; one
hyperparameter (lambda), no teacher, no stop-gradient.

Algorithm, per step:
  1. multi-crop: 2 global views (scale 0.3-1) and N local views (scale 0.05-0.3, about
     half the size), with the paper's colour jitter (0.8, 0.8, 0.8, 0.2), grayscale, blur,
     solarise;
  2. z = projector(backbone(view)) for every view -> (V, B, K); projector: 3-layer MLP
     with BatchNorm, as the paper's minimal example;
  3. loss = (1 - lambda) * mean ||mean_global(z) - z_v||^2 + lambda * mean_v SIGReg(z_v)
     (the paper's Eq. 12 / pseudo-code), lambda 0.05, 1024 slices, 17 knots on [0, 3].
The ablation `lam=0` leaves the prediction term alone, which a constant embedding solves.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from jepalab import losses
from jepalab.data.views import Augment, ViewSpec, local_crop_size
from jepalab.methods import StepOutput
from jepalab.nn.heads import Projected, mlp
from jepalab.nn.vit import VisionTransformer, ViTSpec


@dataclass
class Config:
    lam: float = 0.05
    num_slices: int = 1024
    knots: int = 17
    local_views: int = 6
    local_size_ratio: float = 0.5
    global_scale: tuple[float, float] = (0.3, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.3)
    projector_hidden: int = 512   # the paper's minimal example: 2048 -> 2048 -> 128
    projector_dim: int = 64

    def validate(self) -> None:
        if not 0 <= self.lam <= 1:
            raise ValueError(f"method.lam must be in [0, 1], got {self.lam}")
        if self.num_slices < 1 or self.knots < 2 or self.local_views < 0:
            raise ValueError("method needs num_slices >= 1, knots >= 2, local_views >= 0")


def multicrop_spec(size: int, scale, jitter) -> ViewSpec:
    return ViewSpec(size, tuple(scale), jitter=jitter, blur_p=0.5, solarize_p=0.2)


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, num_classes: int):
        super().__init__()
        self.cfg = cfg
        size, patch, jitter = spec.image_size, spec.patch_size, (0.8, 0.8, 0.8, 0.2)
        local_size = local_crop_size(size, patch, cfg.local_size_ratio)
        self.global_view = Augment(multicrop_spec(size, cfg.global_scale, jitter))
        self.local_view = Augment(multicrop_spec(local_size, cfg.local_scale, jitter))
        self.backbone = VisionTransformer(spec)
        self.projector = mlp(self.backbone.embed_dim, cfg.projector_hidden, cfg.projector_dim,
                             layers=3)

    def forward(self, batch: dict) -> StepOutput:
        images, n, cfg = batch["images"], len(batch["images"]), self.cfg
        features = [self.backbone.features(torch.cat([self.global_view(images)
                                                      for _ in range(2)]))]
        if cfg.local_views:
            locals_ = torch.cat([self.local_view(images) for _ in range(cfg.local_views)])
            features.append(self.backbone.features(locals_))
        z = self.projector(torch.cat(features)).view(-1, n, cfg.projector_dim)
        loss, logs = losses.lejepa(z, num_global=2, lam=cfg.lam, num_slices=cfg.num_slices,
                                   knots=cfg.knots)
        return StepOutput(loss, logs)

    def on_step_end(self, progress: float) -> None:
        pass

    def eval_encoder(self) -> nn.Module:
        return self.backbone

    def embedder(self) -> nn.Module:
        return Projected(self.backbone, self.projector)
