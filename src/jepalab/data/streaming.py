"""Data read from disk on demand (data.stream=true), for data sets larger than memory.

`LazyRows` is what a streamed data set holds in place of a pixel tensor: where its rows
are, no pixels. It answers `len`, `shape`, `dtype`, `ndim` and indexing (an int, a slice,
an index tensor or array of any shape) with uint8 pixels, reading just the rows selected.
A split takes it as its images or clips, so `split.batch(index)` reads only the batch, and
code that reads `split.images[i:j]` (probes, the collapse monitor) reads only that slice.
Its kinds: `FileImages` here (an image folder), `video_files.FileClips` (a video folder,
a clip per file) and `trajectories.FileFrames` (an HDF5 trajectory file's frames, read by
window). Files are decoded several at once in a small thread pool: PIL and PyAV decode
without the GIL (16 video clips: 727 ms on one thread, 350 ms on two, 2 cores).

Reading draws no random numbers, so a batch depends only on its indices and the files:
exact resume holds, and the trainer may fetch a batch from another thread.
"""
from __future__ import annotations

import copy
import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from jepalab.data.images import DataError

DECODE_THREADS = min(8, os.cpu_count() or 1)
STREAM_HINT = ("a streamed folder (data.stream=true) reads each file when a batch needs it: "
               "replace the file, or remove it and start the run afresh (the file list is "
               "fixed when a run starts)")


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


class LazyRows:
    """A lazy uint8 array (N, *row_shape) whose rows are read on demand: it answers `len`,
    `shape`, `dtype`, `ndim` and indexing (an int, a slice, or an index tensor or array of
    any shape) with pixels, reading just the rows selected. A subclass says how rows are
    read (`read(positions) -> uint8 (n, *row_shape)`) and how a subset of them is named."""

    dtype = torch.uint8

    def __init__(self, count: int, row_shape: tuple[int, ...]):
        self.count, self.row_shape = count, tuple(row_shape)

    def __len__(self) -> int:
        return self.count

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.row_shape))

    def _positions(self, key) -> torch.Tensor:
        """The row positions `key` selects, in its shape (0-dim: one row, no batch axis)."""
        if isinstance(key, (int, np.integer)):
            return torch.tensor(range(len(self))[key])
        if isinstance(key, slice):
            return torch.arange(len(self))[key]
        return torch.arange(len(self))[torch.as_tensor(key)]  # tensors, arrays, masks

    def read(self, positions: list[int]) -> torch.Tensor:
        raise NotImplementedError

    def subset(self, key) -> LazyRows:
        raise NotImplementedError

    def __getitem__(self, key) -> torch.Tensor:
        positions = self._positions(key)
        rows = self.read(positions.reshape(-1).tolist())
        return rows.reshape(*positions.shape, *self.row_shape)


class FileRows(LazyRows):
    """A `LazyRows` of one file per row: a subclass's `decode(file)` gives the row. A read
    decodes the files selected several at once in the decode pool, straight into the batch;
    an unreadable file stops it, named."""

    def __init__(self, files: list, row_shape: tuple[int, ...]):
        super().__init__(len(files), row_shape)
        self.files = list(files)

    def decode(self, file) -> torch.Tensor:
        raise NotImplementedError

    def subset(self, key) -> FileRows:
        """The rows `key` selects, still on disk."""
        out = copy.copy(self)
        out.files = [self.files[i] for i in self._positions(key).reshape(-1).tolist()]
        out.count = len(out.files)
        return out

    def read(self, positions: list[int]) -> torch.Tensor:
        out = torch.empty(len(positions), *self.row_shape, dtype=torch.uint8)

        def fill(row: int, position: int) -> None:  # straight into the batch: one copy
            out[row] = self.decode(self.files[position])

        try:
            list(_pool().map(fill, range(len(positions)), positions))
        except DataError as e:
            raise DataError(f"{e}; {STREAM_HINT}") from None
        return out


class FileImages(FileRows):
    """A lazy uint8 (N, 3, size, size) array of image files; indexing decodes those files."""

    def __init__(self, files: list[str], size: int):
        super().__init__(files, (3, size, size))
        self.size = size

    def __repr__(self) -> str:
        return f"FileImages({len(self)} files at {self.size} px)"

    def decode(self, file) -> torch.Tensor:
        return torch.from_numpy(read_image(file, self.size).transpose(2, 0, 1))


def select(images, key):
    """The rows `key` selects without reading any: a tensor indexed, a `LazyRows` subset
    (still on disk)."""
    return images.subset(key) if isinstance(images, LazyRows) else images[key]
