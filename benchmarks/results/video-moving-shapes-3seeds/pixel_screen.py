"""Screen: V-JEPA with a pixel term beside its latent one (and, with LATENT=0, pixels alone:
VideoMAE-like, V-JEPA's masks and predictor as the decoder). A linear head on the
predictor's output at each target token regresses the tubelet's pixels (2 frames x 8 x 8 x
3), each normalised by its own mean and variance as MAE's norm_pix; the loss per mask is
LATENT * L1(latent) + PIXEL * MSE(pixels). Does a target that cannot collapse keep the
motion V-JEPA's latent targets lose?

    PIXEL=1 LATENT=1 python pixel_screen.py train vjepa-moving-shapes train.threads=1 \
        train.run_dir=R
    python quick_screen.py R
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from jepalab import losses
from jepalab.methods import StepOutput, vjepa
from jepalab.nn.vit import gather_tokens

PIXEL, LATENT = float(os.environ.get("PIXEL", "1")), float(os.environ.get("LATENT", "1"))


def tubelets(x: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, N, tubelet * C * patch^2) in the ViT's (time, row, column) order,
    each normalised by its own mean and variance."""
    b, t, c, h, w = x.shape
    x = x.reshape(b, t // tubelet, tubelet, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 1, 4, 6, 2, 3, 5, 7).reshape(b, -1, tubelet * c * patch * patch)
    return (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True) + 1e-6).sqrt()


original_init = vjepa.Method.__init__


def init(self, cfg, spec, num_classes):
    original_init(self, cfg, spec, num_classes)
    self.tubelet, self.patch = spec.tubelet, spec.patch_size
    self.pixel_head = nn.Linear(self.context_encoder.embed_dim,
                                spec.tubelet * spec.in_chans * spec.patch_size ** 2)


def forward(self, batch):
    cfg = self.cfg
    x = self.view(batch["clips"])
    pixels = tubelets(x.float(), self.tubelet, self.patch)
    with torch.no_grad():
        tokens = self.target_encoder(x)
        tokens = F.layer_norm(tokens, tokens.shape[-1:])
    terms, logs = [], {}
    for name, (context_idx, target_idx) in zip(("short", "long"),
                                               cfg.draw_masks(x.shape[0], self.grid, x.device)):
        context = self.context_encoder(x, keep=context_idx)
        prediction = self.predictor(context, context_idx, target_idx[:, None])[:, 0]
        latent = losses.jepa_latent(prediction, gather_tokens(tokens, target_idx), kind=cfg.loss)
        pixel = F.mse_loss(self.pixel_head(prediction), gather_tokens(pixels, target_idx))
        terms.append(LATENT * latent + PIXEL * pixel)
        logs[f"{name}_latent"], logs[f"{name}_pixel"] = latent.detach(), pixel.detach()
    return StepOutput(torch.stack(terms).mean(), logs)


vjepa.Method.__init__, vjepa.Method.forward = init, forward
if __name__ == "__main__":
    from jepalab.cli import main
    sys.exit(main())
