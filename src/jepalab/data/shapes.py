"""Procedural shapes: ten classes of outline with nuisance variation, generated in numpy.

Each image holds one shape whose class is the label. Everything else is nuisance:
position, size, rotation, shape colour, background colour and gradient, 0-3 distractor
strokes, 0-2 dots (clutter), and pixel noise. Because the class is the only thing the
shape's outline carries, raw pixels and random features sit far below a trained model:
a linear read-out of pixels cannot undo translation and rotation, and random features
mostly see colour.

Shapes are drawn as implicit regions in the shape's own frame (u, v in about [-1, 1]),
rendered at twice the resolution and averaged 2x2 for antialiasing. The three splits
come from three seeds derived from `seed`, so they are fixed and disjoint in draws.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import numpy as np
import torch

from jepalab.data.images import ImageData, Split

CLASSES = ("circle", "ring", "triangle", "square", "star", "cross", "crescent",
           "half-disk", "tee", "ell")
VERSION = 3  # bump when rendering changes, so cached pixels are not reused
MAX_ROTATION = np.pi / 4  # radians either way
SPLIT_SIZES = {"train": 20000, "val": 2000, "test": 2000}


def _ngon(r, a, n, radius):
    """Inside a regular n-gon of circumradius `radius` (polar coordinates r, a)."""
    sector = 2 * np.pi / n
    return r * np.cos(np.mod(a, sector) - sector / 2) <= radius * np.cos(np.pi / n)


def _inside(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r, a = np.hypot(u, v), np.arctan2(v, u)
    if label == 0:
        return r < 0.9
    if label == 1:
        return (r > 0.5) & (r < 0.95)
    if label == 2:
        return _ngon(r, a, 3, 1.05)
    if label == 3:
        return np.maximum(np.abs(u), np.abs(v)) < 0.72
    if label == 4:
        phase = np.abs(np.mod(a * 5 / (2 * np.pi), 1.0) - 0.5) * 2  # 1 at the tips
        return r < 0.38 + 0.62 * phase**1.5
    if label == 5:
        return ((np.abs(u) < 0.28) & (np.abs(v) < 0.95)) | ((np.abs(v) < 0.28) & (np.abs(u) < 0.95))
    if label == 6:
        return (r < 0.95) & (np.hypot(u - 0.5, v) > 0.72)
    if label == 7:
        return (r < 0.95) & (v > -0.15)
    if label == 8:
        bar = (np.abs(u) < 0.9) & (v > 0.45) & (v < 0.9)
        stem = (np.abs(u) < 0.24) & (v > -0.95) & (v <= 0.45)
        return bar | stem
    if label == 9:
        upright = (u > -0.7) & (u < -0.22) & (np.abs(v) < 0.9)
        foot = (u > -0.7) & (u < 0.7) & (v > -0.9) & (v < -0.42)
        return upright | foot
    raise ValueError(f"shape label must be in 0..{len(CLASSES) - 1}, got {label}")


def _segments_mask(xx, yy, p0, p1, width):
    """(B, H, W) bool: within `width` of any of K segments p0[b,k] -> p1[b,k] (B, K, 2)."""
    d = p1 - p0
    px = xx[None, None] - p0[..., 0, None, None]
    py = yy[None, None] - p0[..., 1, None, None]
    length2 = (d**2).sum(-1)[..., None, None] + 1e-9
    t = np.clip((px * d[..., 0, None, None] + py * d[..., 1, None, None]) / length2, 0, 1)
    dist = np.hypot(px - t * d[..., 0, None, None], py - t * d[..., 1, None, None])
    return dist < width[..., None, None]


def render(labels: np.ndarray, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Render uint8 (N, 3, S, S) images of the given shape labels with random nuisances."""
    n, s2 = len(labels), image_size * 2
    axis = ((np.arange(s2) + 0.5) / s2 * 2 - 1).astype(np.float32)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")

    def uniform(low, high, size):
        return rng.uniform(low, high, size).astype(np.float32)

    def paint(hit, colour):  # in place: canvas (N, S, S, 3), hit (N, S, S), colour (N, 3)
        np.copyto(canvas, colour[:, None, None, :], where=hit[..., None])

    # background: base colour plus a linear gradient in a random direction
    base, tilt = uniform(0.0, 1.0, (n, 3)), uniform(-0.25, 0.25, (n, 3))
    direction = uniform(0, 2 * np.pi, n)
    ramp = np.cos(direction)[:, None, None] * xx + np.sin(direction)[:, None, None] * yy
    canvas = base[:, None, None, :] + tilt[:, None, None, :] * ramp[..., None]

    # clutter: up to 3 thin strokes and up to 2 dots, each its own colour, under the shape
    num_strokes = rng.integers(0, 4, n)
    p0, p1 = uniform(-1, 1, (n, 4, 2)), uniform(-1, 1, (n, 4, 2))
    width = np.where(np.arange(4)[None] < num_strokes[:, None], uniform(0.02, 0.05, (n, 4)), -1)
    for k in range(4):
        hit = _segments_mask(xx, yy, p0[:, k:k + 1], p1[:, k:k + 1], width[:, k:k + 1])[:, 0]
        paint(hit, uniform(0, 1, (n, 3)))
    num_dots = rng.integers(0, 3, n)
    for k in range(3):
        centre = uniform(-1, 1, (n, 2))
        radius = np.where(k < num_dots, uniform(0.05, 0.12, n), -1)
        hit = np.hypot(xx - centre[:, 0, None, None], yy - centre[:, 1, None, None])
        paint(hit < radius[:, None, None], uniform(0, 1, (n, 3)))

    # the shape: its frame is scaled, rotated and translated into the image
    scale = uniform(0.45, 0.75, n)
    centre = uniform(-1, 1, (n, 2)) * (1 - scale[:, None])
    angle = uniform(-MAX_ROTATION, MAX_ROTATION, n)
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    dx = (xx[None] - centre[:, 0, None, None]) / scale[:, None, None]
    dy = (yy[None] - centre[:, 1, None, None]) / scale[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    inside = np.zeros((n, s2, s2), dtype=bool)
    for label in np.unique(labels):
        rows = labels == label
        inside[rows] = _inside(int(label), u[rows], v[rows])
    # shape colour far enough from the background mean to stay visible
    colour = uniform(0, 1, (n, 3))
    background_mean = canvas.mean(axis=(1, 2))
    close = np.abs(colour - background_mean).sum(1) < 0.9
    colour[close] = 1.0 - background_mean[close]
    paint(inside, colour)

    canvas = canvas.reshape(n, image_size, 2, image_size, 2, 3).mean(axis=(2, 4))
    canvas += rng.normal(0, 0.02, canvas.shape).astype(np.float32)
    pixels = (np.clip(canvas, 0, 1) * 255).round().astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))


def make_split(size: int, image_size: int, seed: int, chunk: int = 2000) -> Split:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), size)
    images = np.concatenate([render(labels[i:i + chunk], image_size, rng)
                             for i in range(0, size, chunk)])
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


def cache_dir() -> Path:
    """Where generated data sets are kept: $JEPALAB_CACHE, else ~/.cache/jepalab."""
    return Path(os.environ.get("JEPALAB_CACHE", Path.home() / ".cache" / "jepalab"))


def cached(key: str, make) -> dict[str, np.ndarray]:
    """Arrays kept in cache_dir()/KEY.npz: read back if there, else `make()`d and written
    atomically (a temporary file, then a rename), so a killed writer leaves no half file.
    Processes asking for the same key at once (parallel test workers, two runs) take turns:
    one makes it, the others read it."""
    path = cache_dir() / f"{key}.npz"
    if not path.exists():  # a file that is there is whole (renamed into place): no lock
        path.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(path.with_suffix(".lock")):
            if not path.exists():  # nobody made it while this process waited
                arrays = make()
                temporary = path.with_suffix(f".{os.getpid()}.tmp.npz")
                np.savez(temporary, **arrays)
                os.replace(temporary, path)
                return arrays
    with np.load(path) as stored:
        return {name: stored[name] for name in stored.files}


@contextlib.contextmanager
def _exclusive(lock: Path):
    """Hold an advisory lock on the file `lock` (POSIX; elsewhere no lock is taken, and a
    race only costs a second render: the rename is atomic)."""
    with open(lock, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def load_shapes(image_size: int = 32, seed: int = 0, num_train: int | None = None) -> ImageData:
    """Fixed train/val/test splits (20k/2k/2k by default) drawn from seeds derived from `seed`.

    The first call renders them (about 1 ms an image) and caches the pixels on disk.
    """
    sizes = dict(SPLIT_SIZES, train=num_train or SPLIT_SIZES["train"])
    names = ("train", "val", "test")
    key = f"shapes-v{VERSION}-{image_size}px-seed{seed}-" + "-".join(str(sizes[k]) for k in names)

    def make() -> dict[str, np.ndarray]:
        arrays = {}
        for i, k in enumerate(names):
            split = make_split(sizes[k], image_size, seed=1000 * seed + i)
            arrays[f"{k}_images"] = split.images.numpy()
            arrays[f"{k}_labels"] = split.labels.numpy()
        return arrays

    arrays = cached(key, make)
    splits = [Split(torch.from_numpy(arrays[f"{k}_images"]),
                    torch.from_numpy(arrays[f"{k}_labels"])) for k in names]
    return ImageData("shapes", *splits, classes=list(CLASSES))
