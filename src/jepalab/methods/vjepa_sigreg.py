"""V-JEPA + SIGReg: V-JEPA's tube prediction with LeJEPA's SIGReg in place of the EMA
teacher (as I-JEPA + SIGReg is to I-JEPA). One encoder, no teacher.

Algorithm, per step:
  1. one view per clip and V-JEPA's two tube masks, as methods/vjepa.py;
  2. tokens = encoder(view) (all tubelets); targets = LayerNorm(tokens) at the masked
     tubes, with gradient unless `stop_gradient` (then SIGReg alone shapes the targets);
  3. per mask, prediction = predictor(encoder(view, keep = context), context, target);
  4. loss = (1 - lambda) * mean L1 over the masks + lambda * SIGReg of the embeddings:
     the mean-pooled clip embeddings (`sigreg_on: pooled`, as I-JEPA + SIGReg) or every
     token (`tokens`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from jepalab import losses
from jepalab.data.views import crop_flip
from jepalab.methods import StepOutput
from jepalab.methods.ijepa import TargetTokens
from jepalab.methods.vjepa import TubeMaskConfig, check_video, tube_preview
from jepalab.nn.predictor import MaskedPredictor
from jepalab.nn.vit import VisionTransformer, ViTSpec, gather_tokens

DATA_KIND = "videos"
SIGREG_ON = ("pooled", "tokens")


@dataclass
class Config(TubeMaskConfig):
    lam: float = 0.05
    num_slices: int = 1024
    knots: int = 17
    sigreg_on: str = "pooled"
    stop_gradient: bool = False

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.lam <= 1:
            raise ValueError(f"method.lam must be in [0, 1], got {self.lam}")
        if self.sigreg_on not in SIGREG_ON:
            raise ValueError(f"method.sigreg_on must be one of {SIGREG_ON}, got "
                             f"{self.sigreg_on!r}")


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, num_classes: int):
        super().__init__()
        check_video(spec, "vjepa-sigreg")
        self.cfg, self.grid = cfg, spec.grid
        self.view = crop_flip(spec.image_size, cfg.crop_scale, hflip=False)
        self.encoder = VisionTransformer(spec)
        self.predictor = MaskedPredictor(self.encoder.embed_dim, spec.grid, cfg.predictor_width,
                                         cfg.predictor_depth, cfg.predictor_heads)

    def forward(self, batch: dict) -> StepOutput:
        cfg = self.cfg
        x = self.view(batch["clips"])
        tokens = self.encoder(x)
        targets = F.layer_norm(tokens, tokens.shape[-1:])
        if cfg.stop_gradient:
            targets = targets.detach()
        terms = []
        for context_idx, target_idx in cfg.draw_masks(x.shape[0], self.grid, x.device):
            context = self.encoder(x, keep=context_idx)
            prediction = self.predictor(context, context_idx, target_idx[:, None])[:, 0]
            terms.append(losses.jepa_latent(prediction, gather_tokens(targets, target_idx),
                                            kind=cfg.loss))
        latent = torch.stack(terms).mean()
        embeddings = tokens.mean(1) if cfg.sigreg_on == "pooled" else tokens.flatten(0, 1)
        regulariser = losses.sigreg(embeddings, num_slices=cfg.num_slices, knots=cfg.knots)
        loss = (1 - cfg.lam) * latent + cfg.lam * regulariser
        return StepOutput(loss, {"prediction": latent.detach(), "sigreg": regulariser.detach()})

    def preview(self, batch: dict) -> np.ndarray:
        return tube_preview(batch["clips"], self.view, self.cfg, self.grid)

    def on_step_end(self, progress: float) -> None:
        pass

    def eval_encoder(self) -> nn.Module:
        return self.encoder

    def embedder(self) -> nn.Module:
        return TargetTokens(self.encoder)
