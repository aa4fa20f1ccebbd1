"""I-JEPA + SIGReg: I-JEPA's masked latent prediction with LeJEPA's SIGReg in place of the
EMA teacher. One encoder, no teacher, no stop-gradient.

Algorithm, per step:
  1. one view (crop) and I-JEPA's multi-block masks, as methods/ijepa.py;
  2. tokens = encoder(view) (all patches); targets = LayerNorm(tokens) at the target
     blocks (with gradient: there is no teacher to hold them still);
  3. prediction = predictor(encoder(view, keep = context), context, targets), as I-JEPA;
  4. loss = (1 - lambda) * latent regression + lambda * SIGReg(mean-pooled embeddings of
     the full view), lambda 0.05 as LeJEPA: SIGReg is what keeps the targets from
     collapsing to a constant that the predictor would match trivially.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from jepalab import losses
from jepalab.data.views import crop_flip
from jepalab.methods import StepOutput
from jepalab.methods.ijepa import MaskedPredictionConfig, TargetTokens, block_targets
from jepalab.nn.predictor import MaskedPredictor
from jepalab.nn.vit import VisionTransformer, ViTSpec


@dataclass
class Config(MaskedPredictionConfig):
    lam: float = 0.05
    num_slices: int = 1024
    knots: int = 17

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.lam <= 1:
            raise ValueError(f"method.lam must be in [0, 1], got {self.lam}")


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, num_classes: int):
        super().__init__()
        self.cfg, self.grid = cfg, spec.grid
        self.view = crop_flip(spec.image_size, cfg.crop_scale, cfg.hflip)
        self.encoder = VisionTransformer(spec)
        self.predictor = MaskedPredictor(self.encoder.embed_dim, spec.grid, cfg.predictor_width,
                                         cfg.predictor_depth, cfg.predictor_heads)

    def forward(self, batch: dict) -> StepOutput:
        cfg = self.cfg
        x = self.view(batch["images"])
        context_idx, target_idx = cfg.draw_masks(x.shape[0], self.grid, x.device)
        tokens = self.encoder(x)
        targets = block_targets(tokens, target_idx)
        prediction = self.predictor(self.encoder(x, keep=context_idx), context_idx, target_idx)
        latent = losses.jepa_latent(prediction, targets, kind=cfg.loss)
        regulariser = losses.sigreg(tokens.mean(1), num_slices=cfg.num_slices, knots=cfg.knots)
        loss = (1 - cfg.lam) * latent + cfg.lam * regulariser
        return StepOutput(loss, {"prediction": latent.detach(), "sigreg": regulariser.detach()})

    def on_step_end(self, progress: float) -> None:
        pass

    def eval_encoder(self) -> nn.Module:
        return self.encoder

    def embedder(self) -> nn.Module:
        return TargetTokens(self.encoder)
