"""Token masks for masked-prediction methods, sampled for a whole batch at once.

Grids are raster-ordered: token (row, col) has index row * W + col (and for video,
t * H * W + row * W + col). Every function returns index tensors whose rows all have
the same length, so a batch stacks without padding.
"""
from __future__ import annotations

import math

import torch

MAX_POSITION_TRIES = 50
MAX_SIZE_TRIES = 20


def block_size(grid: tuple[int, int], scale: tuple[float, float], aspect: tuple[float, float],
               u: float) -> tuple[int, int]:
    """I-JEPA's block size: one uniform draw `u` sets both scale and aspect ratio (h / w).

    area = floor(H * W * scale), h = round(sqrt(area * aspect)), w = round(sqrt(area / aspect)),
    each clipped to [1, grid side].
    """
    height, width = grid
    area = int(height * width * (scale[0] + u * (scale[1] - scale[0])))
    ratio = aspect[0] + u * (aspect[1] - aspect[0])
    h = min(max(int(round(math.sqrt(area * ratio))), 1), height)
    w = min(max(int(round(math.sqrt(area / ratio))), 1), width)
    return h, w


def _blocks(batch: int, count: int, grid: tuple[int, int], size: tuple[int, int],
            generator: torch.Generator | None) -> torch.Tensor:
    """Indices (batch, count, h*w) of axis-aligned h x w blocks at uniform positions."""
    (height, width), (h, w) = grid, size
    top = torch.randint(0, height - h + 1, (batch, count, 1, 1), generator=generator)
    left = torch.randint(0, width - w + 1, (batch, count, 1, 1), generator=generator)
    rows = top + torch.arange(h).view(1, 1, h, 1)
    cols = left + torch.arange(w).view(1, 1, 1, w)
    return (rows * width + cols).flatten(2)


def _covered(batch: int, num_tokens: int, index: torch.Tensor) -> torch.Tensor:
    """Boolean (batch, num_tokens), True where any index in index (batch, ...) points."""
    mask = torch.zeros(batch, num_tokens, dtype=torch.bool)
    return mask.scatter_(1, index.flatten(1), True)


def random_subset(mask: torch.Tensor, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """Per row, `size` indices drawn uniformly among the True entries, sorted ascending."""
    scores = torch.rand(mask.shape, generator=generator).masked_fill_(~mask, -1.0)
    return scores.topk(size, dim=1).indices.sort(dim=1).values


def multiblock_2d(batch: int, grid: tuple[int, int], *, num_targets: int = 4,
                  target_scale: tuple[float, float] = (0.15, 0.2),
                  target_aspect: tuple[float, float] = (0.75, 1.5),
                  context_scale: tuple[float, float] = (0.85, 1.0), min_keep: int = 10,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """I-JEPA multi-block masks (Assran et al. 2023, Sec. 3 and Appendix C).

    Per batch, one target block size (scale x aspect) and one square context block size are
    drawn; per sample, `num_targets` target blocks and one context block are placed
    uniformly, and the context loses every token that any target covers. Context rows are
    cut to the batch's smallest context by a uniform random subset (the reference keeps the
    first tokens in raster order, which biases the context to the top of the image).

    Returns context_idx (B, Nc) and target_idx (B, num_targets, Nt), Nt = h * w, with
    Nc >= min_keep and no target token in the context.
    """
    height, width = grid
    num_tokens = height * width
    if height < 1 or width < 1:
        raise ValueError(f"grid must be positive, got {grid}")
    if batch < 1 or num_targets < 1:
        raise ValueError(f"batch and num_targets must be >= 1, got {batch} and {num_targets}")
    if not 1 <= min_keep <= num_tokens:
        raise ValueError(f"min_keep must be in [1, {num_tokens}] for grid {grid}, got {min_keep}")
    for name, (low, high) in (("target_scale", target_scale), ("context_scale", context_scale),
                              ("target_aspect", target_aspect)):
        if not 0 < low <= high:
            raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {(low, high)}")

    for _ in range(MAX_SIZE_TRIES):
        u_target, u_context = torch.rand(2, generator=generator).tolist()
        target_size = block_size(grid, target_scale, target_aspect, u_target)
        context_size = block_size(grid, context_scale, (1.0, 1.0), u_context)
        targets = torch.empty(batch, num_targets, target_size[0] * target_size[1],
                              dtype=torch.long)
        context = torch.zeros(batch, num_tokens, dtype=torch.bool)
        todo = torch.arange(batch)
        for _ in range(MAX_POSITION_TRIES):
            n = len(todo)
            targets[todo] = _blocks(n, num_targets, grid, target_size, generator)
            block = _covered(n, num_tokens, _blocks(n, 1, grid, context_size, generator))
            context[todo] = block & ~_covered(n, num_tokens, targets[todo])
            todo = todo[context[todo].sum(1) < min_keep]
            if len(todo) == 0:
                keep = int(context.sum(1).min())
                return random_subset(context, keep, generator), targets
    raise ValueError(
        f"could not keep min_keep={min_keep} context tokens on grid {grid} with "
        f"{num_targets} targets of scale {target_scale} and context scale {context_scale}; "
        "lower num_targets, target_scale or min_keep")


def multiblock_3d(batch: int, grid: tuple[int, int, int], *, num_blocks: int = 8,
                  spatial_scale: tuple[float, float] = (0.15, 0.15),
                  aspect: tuple[float, float] = (0.75, 1.5), min_keep: int = 1,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """V-JEPA's multi-block tube mask (Bardes et al. 2024, Sec. 3.2 and Appendix).

    Per batch, one block size (spatial scale x aspect, drawn as I-JEPA's); per clip,
    `num_blocks` blocks placed uniformly on the (H, W) grid. The target is their union,
    a tube through all T time steps; the context is its complement. V-JEPA draws two
    such masks per clip, short-range (8 blocks of scale 0.15) and long-range (2 blocks of
    0.7), and predicts each from its own context. Rows are cut to the batch's smallest
    target and context by uniform random subsets of whole tubes, so they stack.

    grid is (T, H, W), tokens t * H * W + row * W + col. Returns context_idx (B, T*Nc) and
    target_idx (B, T*Nt), sorted, with Nc >= min_keep and no target token in the context.
    """
    frames, height, width = grid
    per_frame = height * width
    if min(grid) < 1:
        raise ValueError(f"grid must be positive (T, H, W), got {grid}")
    if batch < 1 or num_blocks < 1:
        raise ValueError(f"batch and num_blocks must be >= 1, got {batch} and {num_blocks}")
    if not 1 <= min_keep < per_frame:
        raise ValueError(f"min_keep must be in [1, {per_frame - 1}] for grid {grid}, "
                         f"got {min_keep}")
    for name, (low, high) in (("spatial_scale", spatial_scale), ("aspect", aspect)):
        if not 0 < low <= high:
            raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {(low, high)}")
    offsets = torch.arange(frames) * per_frame

    def through_time(index):  # (B, K) places -> (B, T*K) tokens, sorted
        return (offsets.view(1, frames, 1) + index.unsqueeze(1)).flatten(1)

    for _ in range(MAX_SIZE_TRIES):
        size = block_size((height, width), spatial_scale, aspect,
                          float(torch.rand(1, generator=generator)))
        target = torch.zeros(batch, per_frame, dtype=torch.bool)
        todo = torch.arange(batch)
        for _ in range(MAX_POSITION_TRIES):
            target[todo] = _covered(len(todo), per_frame,
                                    _blocks(len(todo), num_blocks, (height, width), size,
                                            generator))
            todo = todo[(~target[todo]).sum(1) < min_keep]
            if len(todo) == 0:
                keep_target, keep_context = int(target.sum(1).min()), int((~target).sum(1).min())
                return (through_time(random_subset(~target, keep_context, generator)),
                        through_time(random_subset(target, keep_target, generator)))
    raise ValueError(
        f"could not keep min_keep={min_keep} context places on grid {grid} with {num_blocks} "
        f"blocks of scale {spatial_scale}; lower num_blocks, spatial_scale or min_keep")


def random_mask(batch: int, num_tokens: int, *, mask_ratio: float = 0.75,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE random masking: keep_idx (B, K) and masked_idx (B, N - K).

    K = max(1, round(N (1 - mask_ratio))): at least one token is always kept.
    """
    if not 0 <= mask_ratio < 1:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    keep = max(1, int(round(num_tokens * (1 - mask_ratio))))
    order = torch.rand(batch, num_tokens, generator=generator).argsort(dim=1)
    return order[:, :keep].sort(1).values, order[:, keep:].sort(1).values


def to_device(index: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A mask drawn on the host, moved to `device` without a host sync: on a GPU it is
    pinned and copied asynchronously (a copy from pageable memory waits for the GPU's queue
    to drain)."""
    if torch.device(device).type != "cuda":
        return index.to(device)
    return index.pin_memory().to(device, non_blocking=True)
