"""MAE (He et al., CVPR 2022): mask 75% of the patches at random, encode the visible ones,
reconstruct the pixels of the masked ones with a light decoder.

Algorithm, per step:
  1. one view (random resized crop 0.2-1, flip: MAE's only augmentations);
  2. random mask: keep 25% of the tokens per image (masks.random_mask);
  3. latent = encoder(view, keep = visible tokens): the encoder never sees mask tokens;
  4. decoder: project to the decoder width, put a shared learned mask token at every
     masked position, add fixed sin-cos positions, a few transformer blocks, a linear layer
     to patch^2 * 3 pixels;
  5. loss = MSE on the masked patches only, each target patch normalised by its own mean
     and variance (norm_pix, Sec. 3 "Reconstruction target").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from jepalab import losses, masks
from jepalab.data.views import crop_flip
from jepalab.methods import StepOutput
from jepalab.nn.vit import Block, VisionTransformer, ViTSpec, init_transformer, sincos_2d


@dataclass
class Config:
    mask_ratio: float = 0.75
    decoder_width: int = 128      # paper: 512 wide, 8 deep for ViT-L; light relative to the encoder
    decoder_depth: int = 2
    decoder_heads: int = 4
    norm_pix: bool = True
    crop_scale: tuple[float, float] = (0.2, 1.0)

    def validate(self) -> None:
        if not 0 <= self.mask_ratio < 1:
            raise ValueError(f"method.mask_ratio must be in [0, 1), got {self.mask_ratio}")


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, patch * patch * C), patches in raster order."""
    b, c, h, w = images.shape
    x = images.view(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), -1)


class Decoder(nn.Module):
    def __init__(self, embed_dim: int, spec: ViTSpec, width: int, depth: int, heads: int):
        super().__init__()
        self.embed = nn.Linear(embed_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.register_buffer("pos_embed", sincos_2d(width, spec.grid)[None])
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.pred = nn.Linear(width, spec.patch_size ** 2 * spec.in_chans)
        init_transformer(self, self.blocks)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """latent (B, K, D) at positions keep (B, K) -> pixels (B, N, patch^2 * C)."""
        x = self.embed(latent)
        b, n = x.shape[0], self.pos_embed.shape[1]
        full = self.mask_token.to(x.dtype).expand(b, n, -1).clone()  # bf16 under autocast
        full.scatter_(1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]), x)
        full = full + self.pos_embed
        for block in self.blocks:
            full = block(full)
        return self.pred(self.norm(full))


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, num_classes: int):
        super().__init__()
        self.cfg, self.spec = cfg, spec
        self.view = crop_flip(spec.image_size, cfg.crop_scale, hflip=True)
        self.encoder = VisionTransformer(spec)
        self.decoder = Decoder(self.encoder.embed_dim, spec, cfg.decoder_width,
                               cfg.decoder_depth, cfg.decoder_heads)

    def forward(self, batch: dict) -> StepOutput:
        x = self.view(batch["images"])
        n = self.encoder.num_patches
        keep, masked = masks.random_mask(len(x), n, mask_ratio=self.cfg.mask_ratio)
        keep, masked = masks.to_device(keep, x.device), masks.to_device(masked, x.device)
        prediction = self.decoder(self.encoder(x, keep=keep), keep)
        mask = torch.zeros(len(x), n, device=x.device).scatter_(1, masked, 1.0)
        loss = losses.mae_pixel(prediction, patchify(x, self.spec.patch_size), mask,
                                norm_pix=self.cfg.norm_pix)
        return StepOutput(loss)

    def on_step_end(self, progress: float) -> None:
        pass

    def eval_encoder(self) -> nn.Module:
        return self.encoder
