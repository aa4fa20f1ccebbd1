"""V-JEPA (Bardes et al. 2024): predict masked spatio-temporal tubes of a clip in latent space.

Algorithm, per step:
  1. one view x of each clip (random resized crop drawn once per clip, every frame alike);
  2. two tube masks (masks.multiblock_3d): short-range, the union of 8 blocks of spatial
     scale 0.15, and long-range, 2 blocks of 0.7, each through all frames; each has its
     context (the complement) and its targets;
  3. targets s_y = LayerNorm(target_encoder(x)) at the masked tokens, no gradient;
  4. per mask: s_x = context_encoder(x[context]); s_hat_y = predictor(s_x, context, target);
  5. loss = mean over the two masks of L1(s_hat_y, s_y) (the paper's Eq. 1);
  6. after the optimiser step: target_encoder <- EMA of context_encoder, 0.998 -> 1.
The tubelets are 2 frames x p x p (nn/vit.py); the predictor is narrow, with 3D positions.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from jepalab import figures, losses, masks
from jepalab.data.views import crop_flip, to_uint8
from jepalab.methods import StepOutput
from jepalab.methods.ijepa import TargetTokens
from jepalab.nn.ema import check_momentum, ema_momentum, ema_update
from jepalab.nn.predictor import MaskedPredictor
from jepalab.nn.vit import VisionTransformer, ViTSpec, gather_tokens

DATA_KIND = "videos"
PREVIEW_CLIPS = 4


@dataclass
class TubeMaskConfig:
    """V-JEPA's two tube masks, the predictor and the clip view (shared with its SIGReg
    variant)."""
    predictor_width: int = 96
    predictor_depth: int = 4
    predictor_heads: int = 4
    short_blocks: int = 8
    short_scale: float = 0.15
    long_blocks: int = 2
    long_scale: float = 0.7
    aspect: tuple[float, float] = (0.75, 1.5)
    loss: str = "l1"
    crop_scale: tuple[float, float] = (0.3, 1.0)

    def validate(self) -> None:
        if self.loss not in losses.LATENT_LOSSES:
            raise ValueError(f"method.loss must be one of {losses.LATENT_LOSSES}, "
                             f"got {self.loss!r}")
        for name in ("short_scale", "long_scale"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"method.{name} must be in (0, 1), got {getattr(self, name)}")

    def draw_masks(self, batch: int, grid: tuple[int, int, int], device) -> list[tuple]:
        """[(context_idx (B, Nc), target_idx (B, Nt))] for the short- and the long-range
        mask, on `device`."""
        out = []
        for blocks, scale in ((self.short_blocks, self.short_scale),
                              (self.long_blocks, self.long_scale)):
            context, target = masks.multiblock_3d(batch, grid, num_blocks=blocks,
                                                  spatial_scale=(scale, scale),
                                                  aspect=self.aspect)
            out.append((masks.to_device(context, device), masks.to_device(target, device)))
        return out


def tube_preview(clips: torch.Tensor, view, cfg: TubeMaskConfig,
                 grid: tuple[int, int, int]) -> np.ndarray:
    """Frames (T, H, W, 3) of the first PREVIEW_CLIPS clips' views side by side, one row per
    tube mask (short-, then long-range), drawn in a step's order: the view, then the masks."""
    x = view(clips[:PREVIEW_CLIPS])
    shown = to_uint8(x).permute(0, 1, 3, 4, 2).cpu().numpy()
    scale = figures.upscale_factor(shown.shape[2])
    rows = [figures.masked_clips(shown, context.cpu().numpy(), target.cpu().numpy(), grid, scale)
            for context, target in cfg.draw_masks(len(x), grid, "cpu")]
    return figures.grid_frames(rows, ["short", "long"])


def check_video(spec: ViTSpec, method: str) -> None:
    if not spec.video:
        raise ValueError(f"{method} trains on clips: the data must be a video set "
                         "(e.g. data.name=moving_shapes) with data.frames >= 2")


@dataclass
class Config(TubeMaskConfig):
    ema_start: float = 0.998
    ema_end: float = 1.0

    def validate(self) -> None:
        super().validate()
        check_momentum(self.ema_start, self.ema_end)


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, num_classes: int):
        super().__init__()
        check_video(spec, "vjepa")
        self.cfg, self.grid = cfg, spec.grid
        self.view = crop_flip(spec.image_size, cfg.crop_scale, hflip=False)
        self.context_encoder = VisionTransformer(spec)
        self.target_encoder = copy.deepcopy(self.context_encoder).requires_grad_(False)
        self.predictor = MaskedPredictor(self.context_encoder.embed_dim, spec.grid,
                                         cfg.predictor_width, cfg.predictor_depth,
                                         cfg.predictor_heads)

    def forward(self, batch: dict) -> StepOutput:
        cfg = self.cfg
        x = self.view(batch["clips"])
        with torch.no_grad():
            tokens = self.target_encoder(x)
            tokens = F.layer_norm(tokens, tokens.shape[-1:])
        terms, logs = [], {}
        for name, (context_idx, target_idx) in zip(("short", "long"),
                                                   cfg.draw_masks(x.shape[0], self.grid,
                                                                  x.device)):
            context = self.context_encoder(x, keep=context_idx)
            prediction = self.predictor(context, context_idx, target_idx[:, None])[:, 0]
            terms.append(losses.jepa_latent(prediction, gather_tokens(tokens, target_idx),
                                            kind=cfg.loss))
            logs[f"{name}_loss"] = terms[-1].detach()
            logs[f"{name}_context_tokens"] = float(context_idx.shape[1])
        return StepOutput(torch.stack(terms).mean(), logs)

    def preview(self, batch: dict) -> np.ndarray:
        return tube_preview(batch["clips"], self.view, self.cfg, self.grid)

    def on_step_end(self, progress: float) -> None:
        momentum = ema_momentum(progress, self.cfg.ema_start, self.cfg.ema_end)
        ema_update(self.target_encoder, self.context_encoder, momentum)

    def eval_encoder(self) -> nn.Module:
        return self.target_encoder

    def embedder(self) -> nn.Module:
        return TargetTokens(self.target_encoder)
