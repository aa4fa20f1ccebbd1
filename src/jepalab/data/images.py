"""Image data sets held in memory as uint8 tensors: the types every image loader returns.

Every image data set, built in or read from disk, becomes an `ImageData`: train, val and
test splits of (images uint8 (N, 3, H, W), labels int64 (N,)) plus class names. Holding
the pixels as one tensor keeps batching a single index operation, which is what a 2-core
CPU can afford; augmentations then run batched (see `views.py`). An image folder too large
for memory streams instead: its splits hold `FileImages` (streaming.py), which index like the
tensor and decode only what is read. Data sets are named and loaded through `catalog.py`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from jepalab.errors import UserError


class DataError(UserError, ValueError):
    """A data set could not be loaded; the message names the path or value and what is valid."""


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, 3, H, W), or a streamed folder's FileImages (read lazily)
    labels: torch.Tensor  # int64 (N,)

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise DataError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} "
                            f"{tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(f"labels must be ({self.images.shape[0]},), got "
                            f"{tuple(self.labels.shape)}")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"images": self.images[index], "labels": self.labels[index]}


@dataclass
class ImageData:
    name: str
    train: Split
    val: Split
    test: Split
    classes: list[str]
    skipped: int = 0          # files left out as unreadable (imagefolder, data.on_bad_file=skip)

    @property
    def image_size(self) -> int:
        return self.train.images.shape[-1]

    @property
    def declares(self) -> int:
        """What a method is told of this data: its number of classes."""
        return len(self.classes)

    def monitor_inputs(self, n: int) -> torch.Tensor:
        """The validation images the collapse monitor encodes."""
        return self.val.images[:n]

    def describe(self) -> dict:
        """What a run trained on (its data.json)."""
        return {"kind": "images", "name": self.name, "image_size": self.image_size,
                "classes": list(self.classes), "train": len(self.train), "val": len(self.val),
                "test": len(self.test), "skipped_files": self.skipped}


def split_by_seed(n: int, fractions: tuple[float, float], seed: int) -> tuple[np.ndarray, ...]:
    """Shuffle range(n) with `seed`; cut off val and test fractions; return (train, val, test)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = int(round(n * fractions[0])), int(round(n * fractions[1]))
    return order[n_val + n_test:], order[:n_val], order[n_val:n_val + n_test]


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 (N, 3, h, w) to (N, 3, size, size) with antialiased bilinear filtering."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                        align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def load_digits(image_size: int = 32, seed: int = 0) -> ImageData:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels), upsampled, grey -> RGB."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    pixels = torch.from_numpy(bunch.images * (255.0 / 16.0)).round().to(torch.uint8)
    images = resize_uint8(pixels[:, None].expand(-1, 3, -1, -1).contiguous(), image_size)
    labels = torch.from_numpy(bunch.target)
    train, val, test = split_by_seed(len(labels), (0.15, 0.25), seed)
    return ImageData("digits", *(Split(images[i], labels[i]) for i in (train, val, test)),
                     classes=[str(d) for d in range(10)])
