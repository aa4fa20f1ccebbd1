"""DINO (Caron et al., ICCV 2021): self-distillation with no labels; a student matches a
momentum teacher's centred, sharpened distribution over K prototypes, across crops.

Algorithm, per step:
  1. multi-crop: 2 global crops (scale 0.4-1, full size; blur p 1.0 / 0.1, solarise p 0 /
     0.2) and N local crops (scale 0.05-0.4, about 0.43 of the size as 96/224; blur p 0.5);
  2. student logits = head(backbone(crop)) for every crop (Vs = 2 + N views);
  3. teacher logits for the 2 global crops (EMA copy, no gradient);
  4. loss = DINO cross-entropy (Eq. 1-3): teacher centred by `center` and sharpened at
     teacher temperature (0.04 warming up linearly to 0.07 over the first 30% of training,
     as the paper's 30 of 100 epochs), student at 0.1, over all pairs of different crops;
  5. after the optimiser step: teacher <- EMA of student (0.996 -> 1 along a cosine), and
     center <- 0.9 center + 0.1 mean of this step's teacher logits (over every process).
The probes read the teacher's backbone, as the paper evaluates the teacher.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn

from jepalab import losses
from jepalab.data.views import Augment, ViewSpec, local_crop_size
from jepalab.distributed import all_gather_tensor
from jepalab.methods import StepOutput
from jepalab.nn.ema import check_momentum, ema_momentum, ema_update
from jepalab.nn.heads import DINOHead
from jepalab.nn.vit import VisionTransformer, ViTSpec


@dataclass
class Config:
    out_dim: int = 1024           # paper: 65536 prototypes; scaled to the small backbones
    head_hidden: int = 512        # paper: 2048
    head_bottleneck: int = 128    # paper: 256
    local_crops: int = 8
    local_size_ratio: float = 0.43
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    student_temp: float = 0.1
    teacher_temp_start: float = 0.04
    teacher_temp: float = 0.07
    teacher_temp_warmup: float = 0.3   # fraction of training
    center_momentum: float = 0.9
    ema_start: float = 0.996
    ema_end: float = 1.0

    def validate(self) -> None:
        if min(self.student_temp, self.teacher_temp, self.teacher_temp_start) <= 0:
            raise ValueError("method temperatures must be > 0")
        check_momentum(self.ema_start, self.ema_end)
        if self.local_crops < 0 or not 0 < self.local_size_ratio <= 1:
            raise ValueError("method.local_crops must be >= 0 and local_size_ratio in (0, 1]")


def update_center(center: torch.Tensor, teacher: torch.Tensor, momentum: float) -> None:
    """center <- momentum * center + (1 - momentum) * mean of the teacher logits (V, N, K)
    over views and the global batch (DINO Eq. 4)."""
    batch_mean = all_gather_tensor(teacher.flatten(0, 1)).mean(0)
    center.mul_(momentum).add_(batch_mean, alpha=1 - momentum)


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, num_classes: int):
        super().__init__()
        self.cfg = cfg
        size, patch = spec.image_size, spec.patch_size
        local_size = local_crop_size(size, patch, cfg.local_size_ratio)
        jitter = (0.4, 0.4, 0.2, 0.1)
        self.global_views = nn.ModuleList([
            Augment(ViewSpec(size, cfg.global_scale, jitter=jitter, blur_p=1.0)),
            Augment(ViewSpec(size, cfg.global_scale, jitter=jitter, blur_p=0.1, solarize_p=0.2))])
        self.local_view = Augment(ViewSpec(local_size, cfg.local_scale, jitter=jitter, blur_p=0.5))
        self.backbone = VisionTransformer(spec)
        self.head = DINOHead(self.backbone.embed_dim, cfg.out_dim, cfg.head_hidden,
                             cfg.head_bottleneck)
        self.teacher_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
        self.teacher_head = copy.deepcopy(self.head).requires_grad_(False)
        self.register_buffer("center", torch.zeros(cfg.out_dim))
        self.register_buffer("progress", torch.zeros(()))
        self._teacher_logits = None

    def teacher_temperature(self) -> torch.Tensor:
        """The teacher's temperature at the training progress, linear from teacher_temp_start
        to teacher_temp over the warm-up; a 0-dim tensor on the buffers' device (no host
        sync)."""
        cfg = self.cfg
        if cfg.teacher_temp_warmup <= 0:
            return torch.full((), cfg.teacher_temp, device=self.progress.device)
        fraction = (self.progress / cfg.teacher_temp_warmup).clamp(max=1.0)
        return cfg.teacher_temp_start + fraction * (cfg.teacher_temp - cfg.teacher_temp_start)

    def forward(self, batch: dict) -> StepOutput:
        images, n = batch["images"], len(batch["images"])
        globals_ = torch.cat([view(images) for view in self.global_views])
        student = self.head(self.backbone.features(globals_))
        if self.cfg.local_crops:
            locals_ = torch.cat([self.local_view(images) for _ in range(self.cfg.local_crops)])
            student = torch.cat([student, self.head(self.backbone.features(locals_))])
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_backbone.features(globals_))
        student, teacher = student.view(-1, n, self.cfg.out_dim), teacher.view(2, n, -1)
        temperature = self.teacher_temperature()
        loss = losses.dino(student, teacher, self.center, student_temp=self.cfg.student_temp,
                           teacher_temp=temperature)
        self._teacher_logits = teacher
        return StepOutput(loss, {"teacher_temp": temperature.detach()})

    def on_step_end(self, progress: float) -> None:
        momentum = ema_momentum(progress, self.cfg.ema_start, self.cfg.ema_end, cosine=True)
        ema_update(self.teacher_backbone, self.backbone, momentum)
        ema_update(self.teacher_head, self.head, momentum)
        if self._teacher_logits is not None:
            update_center(self.center, self._teacher_logits.float(), self.cfg.center_momentum)
            self._teacher_logits = None
        self.progress.fill_(progress)

    def eval_encoder(self) -> nn.Module:
        return self.teacher_backbone
