"""Pictures of what a run trains on and how its probe errs: masked clips as a GIF, a
confusion matrix as a PNG. Pure numpy, Pillow and matplotlib; it knows no method.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

TINT = np.array((255, 255, 255), dtype=np.float32)  # target tubes: washed, hatched, outlined
HATCH = (8, 2)        # diagonal hatch of the targets: period and stripe width, in pixels
DIM = 0.35            # tokens in neither context nor target: darkened to this brightness
BACKGROUND = (32, 32, 32)
GAP = 2               # pixels between cells
CELL_PIXELS = 128     # clips are upscaled (nearest) to about this side


def upscale_factor(size: int) -> int:
    """The whole factor that brings a clip of side `size` to about CELL_PIXELS."""
    return max(1, CELL_PIXELS // size)


def token_mask(index: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    """Token indices (B, K) over a raster-ordered grid -> bool (B, *grid)."""
    out = np.zeros((len(index), int(np.prod(grid))), dtype=bool)
    np.put_along_axis(out, np.asarray(index, dtype=np.int64), True, axis=1)
    return out.reshape(len(index), *grid)


def _to_pixels(mask: np.ndarray, frames: int, height: int, width: int) -> np.ndarray:
    """bool (B, t, h, w) over tubelets -> bool (B, frames, height, width) over pixels."""
    _, t, h, w = mask.shape
    return mask.repeat(frames // t, 1).repeat(height // h, 2).repeat(width // w, 3)


def _edge(mask: np.ndarray, width: int) -> np.ndarray:
    """The pixels of `mask` (…, H, W) within `width` of its border (the image edge counts)."""
    inner = mask
    for _ in range(width):
        padded = np.pad(inner, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
        inner = (padded[..., 1:-1, 1:-1] & padded[..., :-2, 1:-1] & padded[..., 2:, 1:-1]
                 & padded[..., 1:-1, :-2] & padded[..., 1:-1, 2:])
    return mask & ~inner


def masked_clips(clips: np.ndarray, context: np.ndarray, target: np.ndarray,
                 grid: tuple[int, int, int], scale: int = 1) -> np.ndarray:
    """uint8 clips (B, T, H, W, 3) with one tube mask drawn over them, upscaled `scale`x.

    `context` (B, Nc) and `target` (B, Nt) index the tubelet grid (t, row, column); a
    tubelet covers T/t frames x H/row x W/column pixels. Context tokens are left as they
    are; targets are veiled (washed halfway to TINT, hatched and outlined in it), so they
    stand out on any colour while their content stays visible; tokens in neither (cut so
    rows stack) are darkened. Returns uint8 (B, T, H*scale, W*scale, 3).
    """
    _, frames, height, width, _ = clips.shape
    big = clips.repeat(scale, 2).repeat(scale, 3).astype(np.float32)
    size = (frames, height * scale, width * scale)
    seen = _to_pixels(token_mask(context, grid), *size)
    hidden = _to_pixels(token_mask(target, grid), *size)
    out = np.where(hidden[..., None], 0.5 * big + 0.5 * TINT, big)
    out = np.where((seen | hidden)[..., None], out, DIM * big)
    rows, columns = np.indices(size[1:])
    stripes = (rows + columns) % HATCH[0] < HATCH[1]
    out[(hidden & stripes) | _edge(hidden, max(1, scale // 2))] = TINT
    return out.round().astype(np.uint8)


def _label_strip(names: list[str], cell: int, frames: int) -> np.ndarray:
    """uint8 (frames, height, width, 3): each name beside the middle of its row of cells."""
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = int(max(draw.textlength(name) for name in names)) + 2 * GAP + 4
    strip = Image.new("RGB", (width, len(names) * (cell + GAP) - GAP), BACKGROUND)
    draw = ImageDraw.Draw(strip)
    for row, name in enumerate(names):
        draw.text((GAP + 2, row * (cell + GAP) + cell // 2), name, fill=(230, 230, 230),
                  anchor="lm")
    return np.broadcast_to(np.asarray(strip), (frames, *np.asarray(strip).shape))


def grid_frames(rows: list[np.ndarray], names: list[str] | None = None) -> np.ndarray:
    """Rows of clips, each uint8 (B, T, H, W, 3), tiled into frames (T, height, width, 3):
    one row per entry of `rows`, clips side by side, `names` on the left when given."""
    b, frames, height, width, _ = rows[0].shape
    canvas = np.empty((frames, len(rows) * (height + GAP) - GAP,
                       b * (width + GAP) - GAP, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND
    for r, clips in enumerate(rows):
        for c in range(b):
            y, x = r * (height + GAP), c * (width + GAP)
            canvas[:, y:y + height, x:x + width] = clips[c]
    if names:
        canvas = np.concatenate([_label_strip(names, height, frames), canvas], axis=2)
    return canvas


def write_gif(frames: np.ndarray, path: str | Path, frame_ms: int = 200) -> Path:
    """uint8 frames (T, H, W, 3) as a looping GIF at `path` (written whole, then renamed).
    Pillow merges identical consecutive frames into one longer frame."""
    path = Path(path)
    images = [Image.fromarray(frame) for frame in frames]
    partial = path.with_name(path.name + ".partial")
    images[0].save(partial, format="GIF", save_all=True, append_images=images[1:],
                   duration=frame_ms, loop=0)
    os.replace(partial, path)
    return path


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """Row-normalised confusion (num_classes, num_classes): [i, j] is the share of class
    i's examples predicted as j, so each row of a class with examples sums to 1 (a class
    without examples has a row of zeros)."""
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    totals = counts.sum(1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def confusion_png(labels, predictions, class_names: list[str], path: str | Path,
                  title: str = "") -> Path:
    """The row-normalised confusion matrix of `predictions` against `labels` (class
    indices, numpy or CPU tensors) as a PNG: true class down, predicted across, in each
    cell the percentage of the row's examples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = confusion_matrix(labels, predictions, len(class_names))
    n = len(class_names)
    side = max(4.0, 0.6 * n + 2.0)
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), share in np.ndenumerate(matrix):
        ax.text(j, i, f"{100 * share:.0f}%", ha="center", va="center", fontsize=8,
                color="white" if share > 0.5 else "black")
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
