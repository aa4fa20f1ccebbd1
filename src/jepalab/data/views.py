"""Batched views of uint8 image batches: normalisation and augmentations on any device.

Augmentations come from kornia and draw from torch's global RNG, which the trainer
reseeds from (seed, step, rank) every step, so a resumed run draws the same views.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# ImageNet statistics: fine for natural-ish colour images and what exported weights expect.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """float images in [0, 1] (B, 3, H, W) -> normalised with MEAN and STD."""
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float normalised with MEAN and STD."""
    return normalise(images.float().div_(255.0))


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Normalised float images (..., 3, H, W) -> uint8, the inverse of to_float (to look at
    a view)."""
    mean = torch.tensor(MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(3, 1, 1)
    return (x.float() * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)


@dataclass(frozen=True)
class ViewSpec:
    """One augmentation pipeline, in the order the SimCLR / BYOL / DINO papers apply it:
    random resized crop (area fraction `scale`) to `size`, horizontal flip, colour jitter
    (brightness, contrast, saturation, hue) with probability `jitter_p`, grayscale,
    Gaussian blur, solarisation. A probability of 0 leaves the op out."""

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    hflip: bool = True
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    solarize_p: float = 0.0


class Augment(torch.nn.Module):
    """uint8 (B, 3, H, W) -> normalised float views (B, 3, size, size) drawn per image;
    clips (B, T, 3, H, W) -> (B, T, 3, size, size), one draw per clip applied to every
    frame (a crop drawn per frame would destroy the motion), for crop / flip views."""

    def __init__(self, spec: ViewSpec):
        super().__init__()
        import kornia.augmentation as K

        # "resample" crops the whole batch with one affine warp; kornia's default ("slice")
        # loops over the images. Same draws, same pixels to float rounding.
        ops = [K.RandomResizedCrop((spec.size, spec.size), scale=tuple(spec.scale),
                                   cropping_mode="resample")]
        if spec.hflip:
            ops.append(K.RandomHorizontalFlip())
        if spec.jitter_p > 0 and any(spec.jitter):
            ops.append(K.ColorJitter(*spec.jitter, p=spec.jitter_p))
        if spec.grayscale_p > 0:
            ops.append(K.RandomGrayscale(p=spec.grayscale_p))
        if spec.blur_p > 0:  # kernel about 10% of the image, as SimCLR
            kernel = max(3, (spec.size // 10) | 1)
            ops.append(K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=spec.blur_p))
        if spec.solarize_p > 0:
            ops.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=spec.solarize_p))
        self.ops = torch.nn.Sequential(*ops)
        self.geometric = len(ops) == 1 + spec.hflip  # crop (and flip): blind to channels

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim == 5:  # frames ride as channels, so each clip gets one draw
            if not self.geometric:
                raise ValueError("colour, blur and solarise views are drawn per image; clips "
                                 "take crop / flip views only (crop_flip)")
            frames = images.shape[1]
            out = self.ops(images.flatten(1, 2).float().div_(255.0))
            return normalise(out.unflatten(1, (frames, -1)))
        return normalise(self.ops(images.float().div_(255.0)))


def local_crop_size(size: int, patch: int, ratio: float) -> int:
    """Side of a multi-crop local view: `ratio` of the image, a whole number of patches."""
    return max(patch, round(size * ratio / patch) * patch)


def crop_flip(size: int, scale: tuple[float, float] = (0.3, 1.0), hflip: bool = False) -> Augment:
    """Crop (and flip) only: the geometric view I-JEPA, MAE and the supervised ceiling use."""
    return Augment(ViewSpec(size, tuple(scale), hflip, jitter_p=0.0, grayscale_p=0.0))
