"""Moving shapes: procedural clips whose ten action classes differ only by motion.

Each clip shows one shape (one of the eight outlines of `shapes.py` that a rotation
changes) that either translates in one of eight directions (the compass points and
diagonals) or turns on the spot, clockwise or anticlockwise, at a random speed. Every class
draws the shape, its colour, size, position and orientation from the same distribution,
and the canvas is a torus (a shape leaving one side comes back on the other), so each
frame's position and angle are uniform whatever the class: **a single frame carries no
label information** (the tests check that a probe on one frame sits at chance), and only
the change between frames does.

Difficulty:
  easy   flat background of a random colour, light pixel noise (the default: learnable
         within the video recipes' budget on 2 CPU cores)
  hard   two smaller distractor shapes that move and turn on their own, a background
         gradient, static clutter strokes and stronger noise

Rendered in numpy at twice the resolution and averaged 2x2 (antialiasing), all clips of
a chunk at once, one frame at a time; cached on disk like `shapes`.
"""
from __future__ import annotations

import numpy as np
import torch

from jepalab.data.images import DataError, ImageData, Split
from jepalab.data.shapes import _inside, _segments_mask, cached
from jepalab.data.video import VideoData, VideoSplit

DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1),
              "up-left": (-1, -1), "up-right": (1, -1), "down-left": (-1, 1),
              "down-right": (1, 1)}
CLASSES = (*DIRECTIONS, "clockwise", "anticlockwise")
OUTLINES = (2, 3, 4, 5, 6, 7, 8, 9)  # shapes.CLASSES that a turn changes (not circle, ring)
DIFFICULTIES = ("easy", "hard")
VERSION = 1  # bump when rendering changes, so cached clips are not reused
SPLIT_SIZES = {"train": 10000, "val": 1000, "test": 1000}
SPEED = (0.07, 0.14)   # translation, image half-widths per frame (1.1-2.2 px at 32 px)
TURN = (0.15, 0.3)     # rotation, radians per frame


def _motion(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per clip, velocity (N, 2) in half-widths per frame and turn rate (N,) in rad/frame."""
    n = len(labels)
    unit = np.array([np.array(d) / np.hypot(*d) for d in DIRECTIONS.values()] + [(0, 0)] * 2)
    velocity = unit[labels] * rng.uniform(*SPEED, n)[:, None]
    spin = np.select([labels == len(DIRECTIONS), labels == len(DIRECTIONS) + 1], [1.0, -1.0], 0)
    # image rows grow downwards, so a positive angle turns clockwise on screen
    return velocity.astype(np.float32), (spin * rng.uniform(*TURN, n)).astype(np.float32)


class _Objects:
    """N shapes (one per clip): outline, colour, scale, start position and angle, motion."""

    def __init__(self, n, rng, scale, velocity, spin):
        self.outline = rng.choice(OUTLINES, n)
        self.colour = rng.uniform(0, 1, (n, 3)).astype(np.float32)
        self.scale = rng.uniform(*scale, n).astype(np.float32)
        self.start = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        self.angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
        self.velocity, self.spin = velocity, spin

    def inside(self, t: int, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        """(N, S, S) bool: each clip's shape at frame t, on the torus [-1, 1)^2."""
        centre = self.start + t * self.velocity
        dx = np.mod(xx[None] - centre[:, 0, None, None] + 1, 2) - 1
        dy = np.mod(yy[None] - centre[:, 1, None, None] + 1, 2) - 1
        angle = self.angle + t * self.spin
        cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
        scale = self.scale[:, None, None]
        u, v = (cos * dx + sin * dy) / scale, (-sin * dx + cos * dy) / scale
        hit = np.zeros(u.shape, dtype=bool)
        for outline in np.unique(self.outline):
            rows = self.outline == outline
            hit[rows] = _inside(int(outline), u[rows], v[rows])
        return hit


def render(labels: np.ndarray, frames: int, image_size: int, rng: np.random.Generator,
           difficulty: str = "easy") -> np.ndarray:
    """uint8 clips (N, T, 3, S, S) of the given action labels."""
    n, s2, hard = len(labels), image_size * 2, difficulty == "hard"
    axis = ((np.arange(s2) + 0.5) / s2 * 2 - 1).astype(np.float32)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    target = _Objects(n, rng, (0.4, 0.55), *_motion(labels, rng))
    background = np.broadcast_to(rng.uniform(0, 1, (n, 1, 1, 3)).astype(np.float32),
                                 (n, s2, s2, 3)).copy()
    distractors = []
    if hard:
        tilt, direction = rng.uniform(-0.25, 0.25, (n, 3)), rng.uniform(0, 2 * np.pi, n)
        ramp = np.cos(direction)[:, None, None] * xx + np.sin(direction)[:, None, None] * yy
        background += (tilt[:, None, None, :] * ramp[..., None]).astype(np.float32)
        p0, p1 = rng.uniform(-1, 1, (n, 3, 2)), rng.uniform(-1, 1, (n, 3, 2))
        for k in range(3):
            hit = _segments_mask(xx, yy, p0[:, k:k + 1], p1[:, k:k + 1],
                                 rng.uniform(0.02, 0.05, (n, 1)))[:, 0]
            np.copyto(background, rng.uniform(0, 1, (n, 1, 1, 3)).astype(np.float32),
                      where=hit[..., None])
        for _ in range(2):
            heading = rng.uniform(0, 2 * np.pi, n)
            velocity = np.stack([np.cos(heading), np.sin(heading)], 1) * rng.uniform(
                *SPEED, n)[:, None]
            spin = rng.choice([-1.0, 0.0, 1.0], n) * rng.uniform(*TURN, n)
            distractors.append(_Objects(n, rng, (0.2, 0.3), velocity.astype(np.float32),
                                        spin.astype(np.float32)))
    # the shape's colour stays far enough from the background's mean to be seen
    mean = background.mean(axis=(1, 2))
    close = np.abs(target.colour - mean).sum(1) < 0.9
    target.colour[close] = 1.0 - mean[close]
    noise = 0.05 if hard else 0.02
    clips = np.empty((n, frames, 3, image_size, image_size), dtype=np.uint8)
    for t in range(frames):
        canvas = background.copy()
        for thing in (*distractors, target):  # the labelled shape on top
            np.copyto(canvas, thing.colour[:, None, None, :],
                      where=thing.inside(t, xx, yy)[..., None])
        canvas = canvas.reshape(n, image_size, 2, image_size, 2, 3).mean(axis=(2, 4))
        canvas += rng.normal(0, noise, canvas.shape).astype(np.float32)
        clips[:, t] = (np.clip(canvas, 0, 1) * 255).round().astype(np.uint8).transpose(0, 3, 1, 2)
    return clips


def make_split(size: int, frames: int, image_size: int, seed: int, difficulty: str = "easy",
               chunk: int = 500) -> VideoSplit:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), size)
    clips = np.concatenate([render(labels[i:i + chunk], frames, image_size, rng, difficulty)
                            for i in range(0, size, chunk)])
    return VideoSplit(torch.from_numpy(clips), torch.from_numpy(labels))


def load_moving_shapes(image_size: int = 32, frames: int = 8, seed: int = 0,
                       difficulty: str = "easy", num_train: int | None = None) -> VideoData:
    """Fixed train/val/test splits (10k/1k/1k clips by default) drawn from seeds derived
    from `seed`; rendered on the first call and cached on disk."""
    if difficulty not in DIFFICULTIES:
        raise DataError(f"moving_shapes difficulty {difficulty!r}; valid: "
                        f"{', '.join(DIFFICULTIES)}")
    if frames < 2:
        raise DataError(f"moving_shapes needs at least 2 frames to show motion, got {frames}")
    sizes = dict(SPLIT_SIZES, train=num_train or SPLIT_SIZES["train"])
    names = ("train", "val", "test")
    key = (f"moving-shapes-v{VERSION}-{difficulty}-{frames}f-{image_size}px-seed{seed}-"
           + "-".join(str(sizes[k]) for k in names))

    def make() -> dict[str, np.ndarray]:
        arrays = {}
        for i, k in enumerate(names):
            split = make_split(sizes[k], frames, image_size, 1000 * seed + 500 + i, difficulty)
            arrays[f"{k}_clips"], arrays[f"{k}_labels"] = split.clips.numpy(), split.labels.numpy()
        return arrays

    arrays = cached(key, make)
    splits = [VideoSplit(torch.from_numpy(arrays[f"{k}_clips"]),
                         torch.from_numpy(arrays[f"{k}_labels"])) for k in names]
    name = "moving_shapes" + ("_hard" if difficulty == "hard" else "")
    return VideoData(name, *splits, classes=list(CLASSES))


def frames_of(data: VideoData) -> ImageData:
    """Every frame of every clip as an image with its clip's label: what an image method
    (the per-frame I-JEPA baseline) trains on. One frame carries no label information, so
    probes on these images sit at chance; `eval/per_frame.py` reads such an encoder on clips."""
    def split(s: VideoSplit) -> Split:
        return Split(s.clips.flatten(0, 1), s.labels.repeat_interleave(s.clips.shape[1]))

    return ImageData(f"{data.name}_frames", split(data.train), split(data.val),
                     split(data.test), list(data.classes))
