"""LeWorldModel-style world model (Maes et al. 2026): a JEPA trained end to end from pixels.

Per window of T frames (`data.window`, `data.frameskip` apart) and the T - 1 block actions
between them:
  z_t = projector(ViT(frame_t)[CLS])                 projector: Linear-BatchNorm-GELU-Linear
  ẑ_{t+1} = predictor(z_<=t, a_<=t)                   causal over `history` frames, actions
                                                      by AdaLN-zero (nn.predictor.ActionPredictor)
  loss = mean_t ||ẑ_{t+1} - z_{t+1}||² / D  +  sigreg_weight * mean_t SIGReg({z_t over the batch})
No EMA target, no stop-gradient: SIGReg alone keeps the embeddings from collapsing.
An option beyond LeWM: `rollout_steps` > 0 adds the same error for an autoregressive
rollout of that many blocks from the first frame (the predictor fed its own outputs, as
when planning), which keeps multi-step predictions on the data.
The paper's sizes are ViT-tiny at 224 px, a 2048-wide projector to 192 dimensions and a
6-layer predictor of width 192 (about 10 M parameters); the defaults here are scaled for a
CPU: vit_nano at `data.image_size`, a 512-wide projector to 64 dimensions, a 3-layer
predictor of width 128. lambda is 0.1 (paper; 0.09 in the authors' code).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from jepalab.data.images import resize_uint8
from jepalab.data.views import to_float
from jepalab.losses import sigreg
from jepalab.methods import StepOutput
from jepalab.nn.heads import Projected, mlp
from jepalab.nn.predictor import ActionPredictor
from jepalab.nn.vit import VisionTransformer, ViTSpec
from jepalab.world import check_sizes, rollout

DATA_KIND = "trajectories"


@dataclass
class Config:
    history: int = 3                # frames of context the predictor sees
    embed_dim: int = 64             # the latent (projector output)
    projector_hidden: int = 512
    predictor_width: int = 128
    predictor_depth: int = 3
    predictor_heads: int = 4
    sigreg_weight: float = 0.1
    sigreg_slices: int = 256
    rollout_steps: int = 0          # extra loss on an open-loop rollout (0: LeWM's loss)

    def validate(self) -> None:
        check_sizes(self, ("history", "embed_dim", "projector_hidden", "predictor_width",
                           "predictor_depth", "predictor_heads", "sigreg_slices"))
        if self.rollout_steps < 0:
            raise ValueError(f"method.rollout_steps must be >= 0, got {self.rollout_steps}")
        if self.sigreg_weight < 0:
            raise ValueError(f"method.sigreg_weight must be >= 0, got {self.sigreg_weight}")


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, action_dim: int):
        super().__init__()
        self.cfg, self.history = cfg, cfg.history
        self.encoder = VisionTransformer(dataclasses.replace(spec, class_token=True))
        self.projector = mlp(self.encoder.embed_dim, cfg.projector_hidden, cfg.embed_dim,
                             layers=2, activation=nn.GELU)
        self.predictor = ActionPredictor(cfg.embed_dim, action_dim, width=cfg.predictor_width,
                                         depth=cfg.predictor_depth,
                                         num_heads=cfg.predictor_heads, history=cfg.history)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """float normalised images (M, 3, S, S) -> latents (M, D)."""
        return self.projector(self.encoder.features(images))

    def forward(self, batch: dict) -> StepOutput:
        frames = batch["frames"]
        b, t = frames.shape[:2]
        z = self.embed(to_float(frames.flatten(0, 1))).view(b, t, 1, -1)
        predicted = self.predictor(z[:, :-1], batch["actions"])
        prediction = F.mse_loss(predicted, z[:, 1:])
        regulariser = sigreg(z[:, :, 0].transpose(0, 1), num_slices=self.cfg.sigreg_slices)
        loss = prediction + self.cfg.sigreg_weight * regulariser
        logs = {"prediction": prediction.detach(), "sigreg_term": regulariser.detach()}
        steps = self.cfg.rollout_steps
        if steps:
            if steps > t - 1:
                raise ValueError(f"method.rollout_steps {steps} needs data.window >= "
                                 f"{steps + 1}, got {t}")
            imagined = rollout(self, z[:, :1], batch["actions"][:, :0], batch["actions"][:, :steps])
            multi_step = F.mse_loss(imagined, z[:, 1:steps + 1])
            loss = loss + multi_step
            logs["rollout"] = multi_step.detach()
        return StepOutput(loss, logs)

    def on_step_end(self, progress: float) -> None:
        pass

    def eval_encoder(self) -> nn.Module:
        return self.encoder

    def embedder(self) -> nn.Module:
        return Projected(self.encoder, self.projector)

    # --- world-model interface (see jepalab.world) ----------------------------------------
    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, proprio: torch.Tensor | None = None) -> torch.Tensor:
        """(proprio is not read: this model sees pixels only)"""
        images = resize_uint8(pixels, self.encoder.spec.image_size)
        return self.embed(to_float(images))[:, None]

    def predict(self, latents: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.predictor(latents, actions)

    def cached_rollout(self, context, context_actions, plan) -> torch.Tensor:
        return self.predictor.rollout(context, context_actions, plan)
