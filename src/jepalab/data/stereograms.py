"""Random-dot stereograms of curved surfaces, after Becker & Hinton (Nature, 1992).

One example is a pair of 1-D strips, what a left and a right eye see of a textured
surface. The texture is a set of dots at random real-valued positions with random
intensities (or binary: on/off), each blurred by a Gaussian; the left strip samples it
at the pixel centres x, the right strip at x + d(x), so the right strip is the left one
shifted by a disparity d(x) that varies smoothly along the strip: a curved surface.
Because the texture is a continuous function, sub-pixel shifts are exact; no pixel of
either strip alone says anything about d.

The disparity of one strip is d(x) = offset + amplitude * sin(2 pi cycles x / width + phase),
with offset, amplitude, cycles and phase drawn per strip and |d| <= max_disparity.

Encoding as an image batch: uint8 (N, 3, 1, width), channel 0 the left eye, channel 1 the
right eye, channel 2 zeros. Labels for the standard probes: the strip's mean disparity
cut into `num_bins` equal bins over [-max_disparity, max_disparity].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from jepalab.data.images import ImageData, Split, split_by_seed

NUM_EXAMPLES = 5000        # split 4000 / 500 / 500
SPLIT_FRACTIONS = (0.1, 0.1)
NUM_BINS = 10
GAIN = 128.0               # pixel value of one isolated dot of intensity 1; overlaps may clip


@dataclass
class Stereograms:
    images: torch.Tensor           # uint8 (N, 3, 1, width): left, right, zeros
    disparity: torch.Tensor        # float32 (N, width): d(x) at each pixel
    module_disparity: torch.Tensor  # float32 (N, modules): mean of d over each module's patch


def disparity_curves(n: int, width: int, max_disparity: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Smooth disparity curves (n, width): a slow sinusoid around an offset, within the max."""
    offset = rng.uniform(-0.5, 0.5, (n, 1)) * max_disparity
    amplitude = rng.uniform(0.0, 1.0, (n, 1)) * (max_disparity - np.abs(offset))
    cycles = rng.uniform(0.25, 1.0, (n, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (n, 1))
    x = np.arange(width)[None]
    return offset + amplitude * np.sin(2 * np.pi * cycles * x / width + phase)


def render(positions: np.ndarray, intensities: np.ndarray, at: np.ndarray,
           blur: float) -> np.ndarray:
    """Sum of Gaussian-blurred dots (n, M) sampled at positions `at` (n, width), peak 1."""
    distance = at[:, :, None] - positions[:, None, :]
    return (intensities[:, None, :] * np.exp(-0.5 * (distance / blur) ** 2)).sum(-1)


def make_stereograms(n: int, *, width: int = 40, modules: int = 10, max_disparity: float = 2.0,
                     dots_per_pixel: float = 1.0, blur: float = 0.6, binary: bool = False,
                     seed: int = 0) -> Stereograms:
    """`n` stereograms of `width` pixels, a function of the arguments alone."""
    if width % modules:
        raise ValueError(f"stereogram width {width} must be a multiple of modules {modules}")
    rng = np.random.default_rng(seed)
    margin = max_disparity + 4 * blur  # dots just outside the strip still show in it
    count = int(round(dots_per_pixel * (width + 2 * margin)))
    positions = rng.uniform(-margin, width - 1 + margin, (n, count))
    intensities = (rng.random((n, count)) < 0.5 if binary else rng.random((n, count)))
    disparity = disparity_curves(n, width, max_disparity, rng)
    x = np.broadcast_to(np.arange(width, dtype=np.float64), (n, width))
    left = render(positions, intensities, x, blur)
    right = render(positions, intensities, x + disparity, blur)
    pixels = np.clip(np.stack([left, right, np.zeros_like(left)], axis=1) * GAIN, 0, 255)
    images = torch.from_numpy(pixels.round().astype(np.uint8)[:, :, None, :])
    per_module = disparity.reshape(n, modules, width // modules).mean(-1)
    return Stereograms(images, torch.from_numpy(disparity.astype(np.float32)),
                       torch.from_numpy(per_module.astype(np.float32)))


def disparity_labels(disparity: torch.Tensor, max_disparity: float,
                     num_bins: int = NUM_BINS) -> torch.Tensor:
    """Class of each strip: its mean disparity in one of `num_bins` equal bins."""
    edges = torch.linspace(-max_disparity, max_disparity, num_bins + 1)[1:-1]
    return torch.bucketize(disparity.mean(-1), edges)


def load_stereograms(image_size: int = 40, seed: int = 0,
                     max_disparity: float = 2.0) -> ImageData:
    """The built-in `stereograms` data: strips `image_size` pixels long (10 modules' worth
    when it is a multiple of 10), split into train / val / test by `seed`."""
    data = make_stereograms(NUM_EXAMPLES, width=image_size, modules=1,
                            max_disparity=max_disparity, seed=seed)
    labels = disparity_labels(data.disparity, max_disparity)
    edges = np.linspace(-max_disparity, max_disparity, NUM_BINS + 1)
    classes = [f"{lo:+.1f}..{hi:+.1f}" for lo, hi in zip(edges[:-1], edges[1:])]
    train, val, test = split_by_seed(NUM_EXAMPLES, SPLIT_FRACTIONS, seed)
    return ImageData("stereograms", *(Split(data.images[i], labels[i]) for i in (train, val, test)),
                     classes=classes)
