"""CPC (van den Oord et al. 2018, Sec. 3.2, images): predict the rows below from the rows above.

Set-up: the image is the ViT's grid of patches, read top to bottom one row at a time, as
CPC reads its 7x7 grid of crops. CPC encodes every crop on its own, so nothing of a later
row can reach an earlier row's code; here each row of tokens is encoded on its own the
same way: the batch is replicated once per row and replicate r keeps only row r's tokens
(`VisionTransformer.forward(x, keep=...)`, one batched call), so tokens attend within
their row only. A row's code z_t is the mean of its tokens.

Algorithm, per step:
  1. one view x of each image (random resized crop, horizontal flip);
  2. z_t = mean of encoder(x, keep=row t), for rows t = 1..T, giving z (B, T, D);
  3. c_t = GRU(z_1..z_t), the autoregressive context, top to bottom (B, T, C);
  4. for each offset k = 1..K and row t = 1..T-k, a linear map W_k (C -> D) scores a
     candidate row code z with the log-bilinear density ratio (Eq. 3)
         f_k(z, c_t) = exp(z^T W_k c_t),
     and InfoNCE (Eq. 4) picks the true z_{t+k} among the same row of the other images
     in the batch (the in-batch negatives; under torch.distributed, of every process's batch):
         L_{k,t} = -E log( f_k(z_{t+k}, c_t) / sum_j f_k(z^j_{t+k}, c_t) ),
     computed as losses.info_nce(W_k c_t, z_{t+k});
  5. loss = mean of L_{k,t} over all (k, t); every part is trained through it.
log(B) - L_{k,t} lower-bounds the mutual information I(z_{t+k}; c_t) (Sec. 2.3); the logs
report that bound per offset k in nats.

Departures from the paper: CPC keeps one code per crop and predicts each crop of a later
row with a PixelCNN-style context (a row-GRU gave similar results there); here a row is
one code and the context is a plain GRU over rows. Negatives come from the same row of
other images only, so a row's position cannot tell the true row from a negative.

Evaluation: `eval_encoder()` is the ViT backbone, and probes run it on whole images (all
rows attending to each other), unlike training, where it never sees two rows at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from jepalab import losses
from jepalab.data.views import Augment, ViewSpec
from jepalab.distributed import world_size
from jepalab.methods import StepOutput
from jepalab.nn.vit import VisionTransformer, ViTSpec


@dataclass
class Config:
    prediction_steps: int = 5            # K: rows ahead to predict (CPC: up to 5)
    context_dim: int = 256               # GRU width (CPC's audio model: 256)
    temperature: float = 1.0             # 1: CPC's plain exp(z^T W_k c_t)
    crop_scale: tuple[float, float] = (0.7, 1.0)  # about CPC's 256-of-300 crop (0.73)
    hflip: bool = True                   # CPC flips half the images
    grayscale_p: float = 0.0             # CPC made every image grey (1.0); off: probes see colour

    def validate(self) -> None:
        if self.prediction_steps < 1:
            raise ValueError(f"method.prediction_steps must be >= 1, got {self.prediction_steps}")
        if self.context_dim < 1:
            raise ValueError(f"method.context_dim must be >= 1, got {self.context_dim}")
        if not self.temperature > 0:
            raise ValueError(f"method.temperature must be > 0, got {self.temperature}")
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"method.crop_scale needs 0 < low <= high <= 1, got {self.crop_scale}")
        if not 0.0 <= self.grayscale_p <= 1.0:
            raise ValueError(f"method.grayscale_p must be in [0, 1], got {self.grayscale_p}")


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, num_classes: int):
        super().__init__()
        rows, cols = spec.grid
        if not 1 <= cfg.prediction_steps <= rows - 1:
            raise ValueError(f"method.prediction_steps must be between 1 and the token grid's "
                             f"rows - 1 = {rows - 1} (image_size / patch_size rows), got "
                             f"{cfg.prediction_steps}")
        self.cfg = cfg
        self.view = Augment(ViewSpec(spec.image_size, tuple(cfg.crop_scale), cfg.hflip,
                                     jitter_p=0.0, grayscale_p=cfg.grayscale_p))
        self.encoder = VisionTransformer(spec)
        dim = self.encoder.embed_dim
        self.context = nn.GRU(dim, cfg.context_dim, batch_first=True)
        self.predictors = nn.ModuleList(nn.Linear(cfg.context_dim, dim, bias=False)
                                        for _ in range(cfg.prediction_steps))
        # row r's token indices in the raster-ordered grid; not saved in checkpoints
        self.register_buffer("row_tokens", torch.arange(rows * cols).view(rows, cols),
                             persistent=False)

    def encode_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Float images (B, 3, H, W) -> row codes z (B, T, D), each row encoded on its own."""
        b, rows = x.shape[0], self.row_tokens.shape[0]
        keep = self.row_tokens.repeat_interleave(b, dim=0)   # replicate r*B + i keeps row r
        tokens = self.encoder(x.repeat(rows, 1, 1, 1), keep=keep)  # (T*B, cols, D)
        return tokens.mean(dim=1).view(rows, b, -1).transpose(0, 1)

    def contexts(self, z: torch.Tensor) -> torch.Tensor:
        """Row codes (B, T, D) -> contexts c (B, T, C); c_t has seen rows 1..t only."""
        return self.context(z)[0]

    def forward(self, batch: dict) -> StepOutput:
        x = self.view(batch["images"])
        z = self.encode_rows(x)
        c = self.contexts(z)
        rows, per_offset = z.shape[1], []
        for k, predict in enumerate(self.predictors, start=1):
            query = predict(c[:, :rows - k])                  # W_k c_t for t = 1..T-k
            per_offset.append(torch.stack([
                losses.info_nce(query[:, t], z[:, t + k], temperature=self.cfg.temperature)
                for t in range(rows - k)]))
        loss = torch.cat(per_offset).mean()
        candidates = x.shape[0] * world_size()   # info_nce contrasts with every process's rows
        logs = {f"mi_bound_k{k}": math.log(candidates) - terms.detach().mean()
                for k, terms in enumerate(per_offset, start=1)}
        return StepOutput(loss, logs)

    def on_step_end(self, progress: float) -> None:
        pass

    def eval_encoder(self) -> nn.Module:
        return self.encoder
