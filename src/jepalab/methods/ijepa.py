"""I-JEPA (Assran et al., CVPR 2023): predict target-block embeddings from a context block.

Algorithm, per step:
  1. one view x of each image (random resized crop, no colour augmentation);
  2. multi-block masks: context_idx (B, Nc), target_idx (B, M, Nt);
  3. targets s_y = LayerNorm(target_encoder(x)) at target_idx, no gradient;
  4. s_x = context_encoder(x[context_idx]); s_hat_y = predictor(s_x, context_idx, target_idx);
  5. loss = latent regression between s_hat_y and s_y (smooth L1, or L2);
  6. after the optimiser step: target_encoder <- EMA of context_encoder, momentum 0.996 -> 1.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from jepalab import losses, masks
from jepalab.data.views import crop_flip
from jepalab.methods import StepOutput
from jepalab.nn.ema import check_momentum, ema_momentum, ema_update
from jepalab.nn.predictor import MaskedPredictor
from jepalab.nn.vit import VisionTransformer, ViTSpec, gather_tokens


@dataclass
class MaskedPredictionConfig:
    """The masks, predictor and view of I-JEPA, shared with its SIGReg variant."""
    predictor_width: int = 96
    predictor_depth: int = 4
    predictor_heads: int = 4
    num_targets: int = 4
    target_scale: tuple[float, float] = (0.15, 0.2)
    target_aspect: tuple[float, float] = (0.75, 1.5)
    context_scale: tuple[float, float] = (0.85, 1.0)
    min_keep: int = 10
    loss: str = "smooth_l1"  # or "l2"
    crop_scale: tuple[float, float] = (0.3, 1.0)
    hflip: bool = False

    def validate(self) -> None:
        if self.loss not in losses.LATENT_LOSSES:
            raise ValueError(f"method.loss must be one of {losses.LATENT_LOSSES}, "
                             f"got {self.loss!r}")

    def draw_masks(self, batch: int, grid: tuple[int, int], device) -> tuple[torch.Tensor,
                                                                            torch.Tensor]:
        """Multi-block masks: context_idx (B, Nc) and target_idx (B, M, Nt) on `device`."""
        context_idx, target_idx = masks.multiblock_2d(
            batch, grid, num_targets=self.num_targets, target_scale=self.target_scale,
            target_aspect=self.target_aspect, context_scale=self.context_scale,
            min_keep=self.min_keep)
        return masks.to_device(context_idx, device), masks.to_device(target_idx, device)


class TargetTokens(nn.Module):
    """What the latent loss regresses, for the collapse monitor: LayerNorm'd patch tokens of
    `encoder`, one row per token, at `per_image` evenly spaced positions (the monitor's cost
    grows with the rows). `features(images)` -> (B * per_image, D).

    When I-JEPA collapses these grow alike (measured on the old quickstart run: their spread
    0.46 -> 0.15 in 150 steps), while its pooled features fall no further than an early
    supervised run's do (spread 0.23 -> 0.08 vs 0.09); the tokens are what tell them apart."""

    def __init__(self, encoder: VisionTransformer, per_image: int = 8):
        super().__init__()
        self.encoder, self.per_image = encoder, per_image

    def features(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder.patch_tokens(images)
        positions = torch.linspace(0, tokens.shape[1] - 1, self.per_image).round().long()
        tokens = tokens[:, positions.unique().to(tokens.device)]
        return F.layer_norm(tokens, tokens.shape[-1:]).flatten(0, 1)


def block_targets(tokens: torch.Tensor, target_idx: torch.Tensor) -> torch.Tensor:
    """LayerNorm(tokens) (B, N, D) gathered at target_idx (B, M, Nt) -> (B, M, Nt, D)."""
    tokens = F.layer_norm(tokens, tokens.shape[-1:])
    b, m, nt = target_idx.shape
    return gather_tokens(tokens, target_idx.view(b, m * nt)).view(b, m, nt, -1)


@dataclass
class Config(MaskedPredictionConfig):
    ema_start: float = 0.996
    ema_end: float = 1.0

    def validate(self) -> None:
        super().validate()
        check_momentum(self.ema_start, self.ema_end)


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, num_classes: int):
        super().__init__()
        self.cfg, self.grid = cfg, spec.grid
        self.view = crop_flip(spec.image_size, cfg.crop_scale, cfg.hflip)
        self.context_encoder = VisionTransformer(spec)
        self.target_encoder = copy.deepcopy(self.context_encoder).requires_grad_(False)
        self.predictor = MaskedPredictor(self.context_encoder.embed_dim, spec.grid,
                                         cfg.predictor_width, cfg.predictor_depth,
                                         cfg.predictor_heads)

    def forward(self, batch: dict) -> StepOutput:
        cfg = self.cfg
        x = self.view(batch["images"])
        context_idx, target_idx = cfg.draw_masks(x.shape[0], self.grid, x.device)
        with torch.no_grad():
            targets = block_targets(self.target_encoder(x), target_idx)
        context = self.context_encoder(x, keep=context_idx)
        prediction = self.predictor(context, context_idx, target_idx)
        loss = losses.jepa_latent(prediction, targets, kind=cfg.loss)
        return StepOutput(loss, {"context_tokens": float(context_idx.shape[1])})

    def on_step_end(self, progress: float) -> None:
        momentum = ema_momentum(progress, self.cfg.ema_start, self.cfg.ema_end)
        ema_update(self.target_encoder, self.context_encoder, momentum)

    def eval_encoder(self) -> nn.Module:
        return self.target_encoder

    def embedder(self) -> nn.Module:
        return TargetTokens(self.target_encoder)
