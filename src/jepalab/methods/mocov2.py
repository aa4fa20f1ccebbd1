"""MoCo v2 (He et al., CVPR 2020; Chen et al. 2020 "Improved baselines"): a momentum key
encoder and a queue of past keys as negatives.

Algorithm, per step:
  1. two views (SimCLR's augmentations plus blur, as MoCo v2);
  2. q = normalise(projector(backbone(view 1))), a 2-layer MLP head without BatchNorm;
  3. k = normalise(key projector(key backbone(view 2))), no gradient (Eq. 2's momentum
     encoder);
  4. loss = InfoNCE(q, k, negatives = queue) at temperature 0.2 (Eq. 1): K + 1 candidates;
  5. after the optimiser step: key encoder <- EMA of the query encoder (momentum m), then
     the batch's keys (gathered from every process) replace the queue's oldest entries.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from jepalab import losses
from jepalab.data.views import Augment, ViewSpec
from jepalab.distributed import all_gather_tensor
from jepalab.methods import StepOutput
from jepalab.nn.ema import ema_update
from jepalab.nn.heads import Projected, mlp
from jepalab.nn.vit import VisionTransformer, ViTSpec


@dataclass
class Config:
    temperature: float = 0.2
    queue_size: int = 4096        # paper: 65536 for ImageNet's 1.28M images; shapes has 20k
    momentum: float = 0.99        # paper: 0.999 over 200 epochs; short runs need a faster key
    projector_hidden: int = 512   # paper: 2048 -> 128
    projector_dim: int = 128
    crop_scale: tuple[float, float] = (0.2, 1.0)   # MoCo's crop scale

    def validate(self) -> None:
        if self.temperature <= 0 or self.queue_size < 1 or not 0 <= self.momentum <= 1:
            raise ValueError("method needs temperature > 0, queue_size >= 1 and momentum in "
                             f"[0, 1]; got {self.temperature}, {self.queue_size}, "
                             f"{self.momentum}")


class Queue(nn.Module):
    """A ring buffer of unit-norm keys (K, D); `push` overwrites the oldest entries."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        size = len(self.keys)  # the pointer stays on the device: no host sync
        index = (self.pointer + torch.arange(len(keys), device=keys.device)) % size
        self.keys[index[-size:]] = keys[-size:].to(self.keys.dtype)
        self.pointer.copy_((self.pointer + len(keys)) % size)


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.view = Augment(ViewSpec(spec.image_size, cfg.crop_scale, blur_p=0.5))
        self.backbone = VisionTransformer(spec)
        self.projector = mlp(self.backbone.embed_dim, cfg.projector_hidden, cfg.projector_dim,
                             batch_norm=False)
        self.key_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
        self.key_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.queue = Queue(cfg.queue_size, cfg.projector_dim)
        self._keys = None

    def forward(self, batch: dict) -> StepOutput:
        images = batch["images"]
        q = F.normalize(self.projector(self.backbone.features(self.view(images))), dim=1)
        with torch.no_grad():
            k = self.key_projector(self.key_backbone.features(self.view(images)))
            k = F.normalize(k, dim=1)
        loss = losses.info_nce(q, k, self.queue.keys.clone(), temperature=self.cfg.temperature)
        self._keys = k
        return StepOutput(loss)

    def on_step_end(self, progress: float) -> None:
        ema_update(self.key_backbone, self.backbone, self.cfg.momentum)
        ema_update(self.key_projector, self.projector, self.cfg.momentum)
        if self._keys is not None:
            self.queue.push(all_gather_tensor(self._keys))
            self._keys = None

    def eval_encoder(self) -> nn.Module:
        return self.backbone

    def embedder(self) -> nn.Module:
        return Projected(self.backbone, self.projector)
