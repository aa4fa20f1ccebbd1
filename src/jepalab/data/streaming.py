"""Image files decoded on demand: `read_image` for one file, `FileImages` for many.

`FileImages` is what a streamed image folder (`data.stream=true`) holds in place of a pixel
tensor: the file names and a size, no pixels. It answers `len`, `shape`, `dtype`, `ndim`
and indexing (an int, a slice, an index tensor or array) with uint8 pixels, decoding just
those files, several at once in a small thread pool (PIL decodes and resizes without the
GIL). A `Split` takes it as its images, so `split.batch(index)` reads only the batch, and
code that reads `split.images[i:j]` (probes, the collapse monitor) reads only that slice.

Decoding draws no random numbers, so a batch depends only on its indices and the files:
exact resume holds, and the trainer may fetch a batch from another thread.
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from jepalab.data.images import DataError

DECODE_THREADS = min(8, os.cpu_count() or 1)


def _to_rgb(im):
    """Any PIL image as 8-bit RGB: grey, palette and alpha images converted (alpha dropped),
    16-bit and 32-bit integer greys scaled down to 8 bits rather than clipped."""
    from PIL import Image

    if im.mode.startswith("I"):  # I;16, I;16B, I;16L, I: integer greys above 255
        grey = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or grey.max() <= 65535 else grey.max()
        im = Image.fromarray(np.clip(grey / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    elif im.mode == "F":
        grey = np.nan_to_num(np.asarray(im, dtype=np.float64))
        span = grey.max() - grey.min()
        im = Image.fromarray(((grey - grey.min()) / (span or 1.0) * 255).astype(np.uint8))
    return im.convert("RGB")


def read_image(file, size: int) -> np.ndarray:
    """One image file as uint8 (size, size, 3) RGB; any decoding failure names the file."""
    from PIL import Image

    try:
        with Image.open(file) as im:
            rgb = _to_rgb(im)
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)
    except MemoryError:  # out of memory is no fault of the file
        raise
    except Exception as e:  # PIL raises OSError, ValueError, DecompressionBombError, ...
        raise DataError(f"cannot read image file {str(file)!r}: {e}") from e


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="jepalab-decode")


os.register_at_fork(after_in_child=_pool.cache_clear)  # a forked child starts its own pool


class FileImages:
    """A lazy uint8 (N, 3, size, size) array of image files; indexing decodes those files."""

    dtype = torch.uint8
    ndim = 4

    def __init__(self, files: list[str], size: int):
        self.files, self.size = list(files), size

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"FileImages({len(self)} files at {self.size} px)"

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), 3, self.size, self.size))

    def _positions(self, key) -> tuple[list[int], bool]:
        """The file positions `key` selects, and whether it selects one image (no batch axis)."""
        if isinstance(key, (slice, int, np.integer)):
            selected = range(len(self))[key]
            return ([selected], True) if isinstance(selected, int) else (list(selected), False)
        selected = torch.arange(len(self))[torch.as_tensor(key)]  # tensors, arrays, masks
        return selected.reshape(-1).tolist(), selected.ndim == 0

    def subset(self, key) -> FileImages:
        """The images `key` selects, still on disk."""
        positions, _ = self._positions(key)
        return FileImages([self.files[i] for i in positions], self.size)

    def __getitem__(self, key) -> torch.Tensor:
        positions, single = self._positions(key)
        pixels = torch.empty(len(positions), 3, self.size, self.size, dtype=torch.uint8)
        rows = pixels.numpy()

        def decode(row: int, position: int) -> None:  # straight into the batch: one copy
            rows[row] = read_image(self.files[position], self.size).transpose(2, 0, 1)

        try:
            list(_pool().map(decode, range(len(positions)), positions))
        except DataError as e:
            raise DataError(f"{e}; a streamed folder (data.stream=true) reads each file when a "
                            "batch needs it: replace the file, or remove it and start the run "
                            "afresh (the file list is fixed when a run starts)") from None
        return pixels[0] if single else pixels


def select(images, key):
    """The images `key` selects without decoding any: a tensor indexed, a `FileImages`
    subset (still on disk)."""
    return images.subset(key) if isinstance(images, FileImages) else images[key]
