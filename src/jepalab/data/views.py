"""Batched views of uint8 image batches: normalisation and augmentations on any device.

Augmentations come from kornia and draw from torch's global RNG, which the trainer
reseeds from (seed, step, rank) every step, so a resumed run draws the same views.
"""
from __future__ import annotations

import torch

# ImageNet statistics: fine for natural-ish colour images and what exported weights expect.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float normalised with MEAN and STD."""
    x = images.float().div_(255.0)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class CropFlip(torch.nn.Module):
    """Random resized crop (area fraction in `scale`) and optional horizontal flip."""

    def __init__(self, size: int, scale: tuple[float, float] = (0.3, 1.0), hflip: bool = False):
        super().__init__()
        import kornia.augmentation as K

        ops = [K.RandomResizedCrop((size, size), scale=tuple(scale))]
        if hflip:
            ops.append(K.RandomHorizontalFlip())
        self.ops = torch.nn.Sequential(*ops)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> normalised float views (B, 3, size, size)."""
        return self.ops(to_float(images))
