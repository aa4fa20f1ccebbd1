"""Behaviour of the token masks in jepalab.masks (I-JEPA multi-block, V-JEPA tubes, MAE random).

Properties are checked on random grids, batch sizes and scale/aspect ranges with hypothesis;
every call uses a seeded torch.Generator, so a failing example replays exactly.
"""
from __future__ import annotations

import functools
import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jepalab.masks import block_size, multiblock_2d, multiblock_3d, random_mask, random_subset

pytestmark = pytest.mark.xdist_group("masks")  # module fixtures: built once

SETTINGS = settings(max_examples=60, deadline=None, database=None)
INFEASIBLE = "could not keep min_keep"
U_SCAN = [i / 2000 for i in range(2001)]  # 2001 points on [0, 1]

seeds = st.integers(0, 2**32 - 1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ordered_pair(low: float, high: float, max_width: float):
    """Strategy for (a, b) with low <= a <= b <= a + max_width."""
    return st.tuples(st.floats(low, high), st.floats(0.0, max_width)).map(
        lambda t: (t[0], t[0] + t[1]))


@st.composite
def multiblock_args(draw):
    height, width = draw(st.integers(4, 16)), draw(st.integers(4, 16))
    context_low = draw(st.floats(0.3, 1.0))
    return {
        "batch": draw(st.integers(1, 16)),
        "grid": (height, width),
        "num_targets": draw(st.integers(1, 4)),
        "target_scale": draw(ordered_pair(0.02, 0.5, 0.2)),
        "target_aspect": draw(ordered_pair(0.3, 2.0, 1.5)),
        "context_scale": (context_low, draw(st.floats(context_low, 1.0))),
        "min_keep": draw(st.integers(1, 16)),
        "seed": draw(seeds),
    }


def sample(args: dict):
    """multiblock_2d on args; infeasible combinations (documented ValueError) are skipped."""
    kwargs = {k: v for k, v in args.items() if k not in ("batch", "grid", "seed")}
    try:
        return multiblock_2d(args["batch"], args["grid"], generator=gen(args["seed"]), **kwargs)
    except ValueError as err:
        assert INFEASIBLE in str(err)
        assume(False)


@functools.lru_cache(maxsize=4096)
def achievable(grid, scale, aspect, extra=()) -> frozenset[tuple[int, int]]:
    """Every (h, w) that block_size gives for u on a fine grid of [0, 1] (plus `extra` u's).

    This is what 'a block size within the scale and aspect ranges' means once h and w are
    rounded to integers.
    """
    return frozenset(block_size(grid, scale, aspect, u) for u in (*U_SCAN, *extra))


def first_draws(seed: int) -> tuple[float, ...]:
    """The generator's first two uniforms: extra u candidates in [0, 1] for `achievable`.

    Adding any u in [0, 1] leaves the property unchanged; these make the scan exact in the
    common case where the first size draw is accepted, even if its (h, w) lives on a sliver
    of u narrower than the scan's step.
    """
    return tuple(torch.rand(2, generator=gen(seed)).tolist())


def rows_cols(index: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    return index // width, index % width


def span(coord: torch.Tensor) -> torch.Tensor:
    """Extent (max - min + 1) along the last dimension."""
    return coord.amax(-1) - coord.amin(-1) + 1


def covered(index: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Boolean (B, num_tokens): which tokens index (B, ...) touches."""
    mask = torch.zeros(index.shape[0], num_tokens, dtype=torch.bool)
    return mask.scatter_(1, index.flatten(1), True)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these tensors are tiny, and spare threads only add noise when the
    machine is busy. Restored afterwards for the other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# block_size


@pytest.mark.parametrize(("grid", "scale", "aspect", "u", "expected"), [
    # area = int(196 * 0.15) = int(29.4) = 29; h = round(sqrt(29 * 0.75)) = round(4.66) = 5;
    # w = round(sqrt(29 / 0.75)) = round(6.22) = 6
    ((14, 14), (0.15, 0.2), (0.75, 1.5), 0.0, (5, 6)),
    # area = int(196 * 0.2) = int(39.2) = 39, ratio 1.5; h = round(sqrt(58.5)) = round(7.65) = 8;
    # w = round(sqrt(26)) = round(5.10) = 5
    ((14, 14), (0.15, 0.2), (0.75, 1.5), 1.0, (8, 5)),
    # scale 0.175, area = int(34.3) = 34, ratio 1.125; h = round(sqrt(38.25)) = round(6.18) = 6;
    # w = round(sqrt(30.22)) = round(5.497) = 5
    ((14, 14), (0.15, 0.2), (0.75, 1.5), 0.5, (6, 5)),
    # context: area = int(196 * 0.85) = int(166.6) = 166; round(sqrt(166)) = round(12.88) = 13
    ((14, 14), (0.85, 1.0), (1.0, 1.0), 0.0, (13, 13)),
    # context: area = 196; sqrt = 14
    ((14, 14), (0.85, 1.0), (1.0, 1.0), 1.0, (14, 14)),
    # area = int(64 * 0.15) = int(9.6) = 9; h = round(sqrt(6.75)) = round(2.60) = 3;
    # w = round(sqrt(12)) = round(3.46) = 3
    ((8, 8), (0.15, 0.2), (0.75, 1.5), 0.0, (3, 3)),
    # area = int(64 * 0.2) = int(12.8) = 12, ratio 1.5; h = round(sqrt(18)) = round(4.24) = 4;
    # w = round(sqrt(8)) = round(2.83) = 3
    ((8, 8), (0.15, 0.2), (0.75, 1.5), 1.0, (4, 3)),
    # area = 64, round(sqrt(64)) = 8; h clipped to the grid's 4 rows, w = 8 fits in 16 columns
    ((4, 16), (1.0, 1.0), (1.0, 1.0), 0.0, (4, 8)),
    # area = int(4 * 0.1) = 0 -> h = w = round(0) = 0, clipped up to 1
    ((2, 2), (0.1, 0.1), (1.0, 1.0), 0.3, (1, 1)),
])
def test_block_size_by_hand(grid, scale, aspect, u, expected):
    assert block_size(grid, scale, aspect, u) == expected


@SETTINGS
@given(grid=st.tuples(st.integers(1, 32), st.integers(1, 32)),
       scale=ordered_pair(0.01, 1.0, 0.5), aspect=ordered_pair(0.2, 3.0, 2.0),
       u=st.floats(0.0, 1.0))
def test_block_size_fits_grid(grid, scale, aspect, u):
    h, w = block_size(grid, scale, aspect, u)
    assert isinstance(h, int) and isinstance(w, int)
    assert 1 <= h <= grid[0] and 1 <= w <= grid[1]


# ---------------------------------------------------------------------------------------------
# multiblock_2d


@SETTINGS
@given(args=multiblock_args())
def test_multiblock_shapes_and_ranges(args):
    context, targets = sample(args)
    (height, width), batch = args["grid"], args["batch"]
    assert context.dtype == torch.long and targets.dtype == torch.long
    # stacked: one (B, Nc) and one (B, M, Nt) tensor, so every row has the same length
    assert context.dim() == 2 and context.shape[0] == batch
    assert targets.dim() == 3 and targets.shape[:2] == (batch, args["num_targets"])
    assert context.shape[1] >= args["min_keep"]
    assert targets.shape[2] >= 1
    for index in (context, targets):
        assert int(index.min()) >= 0 and int(index.max()) < height * width


@SETTINGS
@given(args=multiblock_args())
def test_multiblock_context_disjoint_sorted_unique(args):
    context, targets = sample(args)
    num_tokens = args["grid"][0] * args["grid"][1]
    assert not (covered(context, num_tokens) & covered(targets, num_tokens)).any()
    # strictly increasing along each row: sorted ascending and no duplicates
    assert (context.diff(dim=1) > 0).all()


@SETTINGS
@given(args=multiblock_args())
def test_multiblock_targets_are_full_rectangles_of_one_size(args):
    _, targets = sample(args)
    (height, width), nt = args["grid"], targets.shape[2]
    rows, cols = rows_cols(targets, width)
    heights, widths = span(rows), span(cols)
    # no duplicate token inside a block, and the block fills its bounding box
    assert (targets.sort(dim=-1).values.diff(dim=-1) > 0).all()
    assert (heights * widths == nt).all()
    # one h x w for every block of the batch
    h, w = int(heights[0, 0]), int(widths[0, 0])
    assert (heights == h).all() and (widths == w).all()
    assert h <= height and w <= width and h * w <= height * width
    sizes = achievable(args["grid"], args["target_scale"], args["target_aspect"],
                       first_draws(args["seed"]))
    assert (h, w) in sizes, f"{(h, w)} is not a block_size of the target ranges: {sorted(sizes)}"


@SETTINGS
@given(args=multiblock_args())
def test_multiblock_context_inside_one_square_block(args):
    context, _ = sample(args)
    grid = args["grid"]
    sizes = achievable(grid, args["context_scale"], (1.0, 1.0), first_draws(args["seed"]))
    rows, cols = rows_cols(context, grid[1])
    heights, widths = span(rows), span(cols)
    # every row's context lies in a box no taller or wider than the largest context block ...
    assert int(heights.max()) <= max(h for h, _ in sizes)
    assert int(widths.max()) <= max(w for _, w in sizes)
    # ... and the whole batch fits one context block size (one size is drawn per batch)
    hmax, wmax = int(heights.max()), int(widths.max())
    assert any(hmax <= h and wmax <= w for h, w in sizes)
    assert context.shape[1] <= max(h * w for h, w in sizes)


@settings(max_examples=40, deadline=None, database=None)
@given(seed=seeds, batch=st.integers(1, 64), grid=st.sampled_from([(14, 14), (8, 8)]))
def test_multiblock_default_settings_never_raise(seed, batch, grid):
    context, targets = multiblock_2d(batch, grid, generator=gen(seed))
    assert context.shape[1] >= 10 and targets.shape[:2] == (batch, 4)


@pytest.mark.parametrize("grid", [(14, 14), (8, 8)])
def test_multiblock_default_settings_large_batch(grid):
    for seed in range(5):
        context, targets = multiblock_2d(256, grid, generator=gen(seed))
        assert context.shape[0] == 256 and context.shape[1] >= 10
        assert targets.shape[:2] == (256, 4)


def test_multiblock_deterministic_per_seed():
    first = multiblock_2d(8, (14, 14), generator=gen(123))
    again = multiblock_2d(8, (14, 14), generator=gen(123))
    other = multiblock_2d(8, (14, 14), generator=gen(124))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(a.shape == b.shape and torch.equal(a, b)
                   for a, b in zip(first, other, strict=True))


@SETTINGS
@given(args=multiblock_args())
def test_multiblock_deterministic_random_args(args):
    first, again = sample(args), sample(args)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_multiblock_positions_cover_whole_grid():
    """Block corners take every value in [0, H - h] and [0, W - w], so blocks reach the last
    row and column (the reference draws top from [0, H - h) and never touches them)."""
    height = width = 14
    def seen(coord, size):  # which of 0 .. size-1 occur in coord (bincount: unique is slow)
        return torch.bincount(coord.flatten(), minlength=size) > 0

    rows_seen = torch.zeros(height, dtype=torch.bool)
    cols_seen = torch.zeros(width, dtype=torch.bool)
    for seed in range(8):
        _, targets = multiblock_2d(256, (height, width), generator=gen(seed))
        rows, cols = rows_cols(targets, width)
        h, w = int(span(rows)[0, 0]), int(span(cols)[0, 0])
        tops, lefts = seen(rows.amin(-1), height), seen(cols.amin(-1), width)
        assert tops[:height - h + 1].all() and not tops[height - h + 1:].any()
        assert lefts[:width - w + 1].all() and not lefts[width - w + 1:].any()
        rows_seen |= seen(rows, height)
        cols_seen |= seen(cols, width)
    assert rows_seen.all() and cols_seen.all()


def test_multiblock_context_cut_is_not_raster_biased():
    """The cut to the batch's smallest context keeps a uniform subset, not the first tokens in
    raster order: the recipe is symmetric under flips, so top and bottom halves (and left and
    right halves) keep the same share of context tokens."""
    height = width = 14
    top = left = total = 0
    for seed in range(8):
        context, _ = multiblock_2d(256, (height, width), generator=gen(seed))
        rows, cols = rows_cols(context, width)
        top += int((rows < height // 2).sum())
        left += int((cols < width // 2).sum())
        total += context.numel()
    assert 0.45 < top / total < 0.55 and 0.45 < left / total < 0.55


def test_multiblock_infeasible_raises_documented_error():
    # a target covering the whole 4 x 4 grid leaves no context at all
    with pytest.raises(ValueError, match=INFEASIBLE):
        multiblock_2d(2, (4, 4), num_targets=1, target_scale=(1.0, 1.0),
                      target_aspect=(1.0, 1.0), min_keep=1,
                      generator=gen(0))


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"min_keep": 17}, "min_keep"),          # more than the 4 x 4 = 16 tokens
    ({"min_keep": 0}, "min_keep"),
    ({"target_scale": (0.3, 0.2)}, "target_scale"),
    ({"target_scale": (0.0, 0.2)}, "target_scale"),
    ({"context_scale": (1.0, 0.5)}, "context_scale"),
    ({"target_aspect": (2.0, 1.0)}, "target_aspect"),
])
def test_multiblock_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        multiblock_2d(2, (4, 4), generator=gen(0), **kwargs)


def test_multiblock_bad_grid():
    with pytest.raises(ValueError, match="grid"):
        multiblock_2d(2, (0, 4), generator=gen(0))


# ---------------------------------------------------------------------------------------------
# multiblock_3d


def spatial_sets(index: torch.Tensor, frames: int, per_frame: int) -> list[set[int]]:
    """Split one row of video indices t * per_frame + s into per-frame sets of s."""
    t, s = (index // per_frame).tolist(), (index % per_frame).tolist()
    out = [set() for _ in range(frames)]
    for ti, si in zip(t, s, strict=True):
        out[ti].add(si)
    return out


@settings(max_examples=60, deadline=None, database=None)
@given(frames=st.integers(1, 4), height=st.integers(3, 10), width=st.integers(3, 10),
       batch=st.integers(1, 6), num_blocks=st.integers(1, 8), scale=st.floats(0.05, 0.7),
       min_keep=st.integers(1, 4), seed=seeds)
def test_multiblock_3d_tubes(frames, height, width, batch, num_blocks, scale, min_keep, seed):
    grid, per_frame = (frames, height, width), height * width
    assume(min_keep < per_frame)
    try:
        context, targets = multiblock_3d(batch, grid, num_blocks=num_blocks,
                                         spatial_scale=(scale, scale), min_keep=min_keep,
                                         generator=gen(seed))
    except ValueError as err:
        assert "could not keep min_keep" in str(err)
        assume(False)
    assert context.dtype == torch.long and targets.dtype == torch.long
    assert context.shape[0] == targets.shape[0] == batch  # equal lengths: the batch stacks
    assert context.shape[1] % frames == 0 and targets.shape[1] % frames == 0
    assert context.shape[1] // frames >= min_keep and targets.shape[1] > 0
    assert int(context.max()) < frames * per_frame and int(targets.max()) < frames * per_frame
    assert (context.diff(dim=1) > 0).all() and (targets.diff(dim=1) > 0).all()
    areas = [h * w for h, w in (block_size((height, width), (scale, scale), (0.75, 1.5), u / 100)
                                for u in range(101))]
    for b in range(batch):
        ctx = spatial_sets(context[b], frames, per_frame)
        tube = spatial_sets(targets[b], frames, per_frame)
        assert all(s == ctx[0] for s in ctx) and all(s == tube[0] for s in tube)  # tubes
        assert not ctx[0] & tube[0]  # no target in the context
    # the union of the blocks (the batch's smallest) is one block or up to num_blocks of them
    assert min(areas) <= targets.shape[1] // frames <= min(per_frame - min_keep,
                                                            num_blocks * max(areas))


def test_vjepa_short_and_long_range_masks_cover_what_the_paper_says():
    """8 blocks of 0.15 mask most of a 14 x 14 grid's places; 2 blocks of 0.7 nearly all."""
    short, _ = multiblock_3d(64, (8, 14, 14), num_blocks=8, spatial_scale=(0.15, 0.15),
                             generator=gen(0))
    long, _ = multiblock_3d(64, (8, 14, 14), num_blocks=2, spatial_scale=(0.7, 0.7),
                            generator=gen(0))
    kept_short, kept_long = short.shape[1] / (8 * 196), long.shape[1] / (8 * 196)
    assert 0.05 < kept_short < 0.6 and 0 < kept_long < kept_short



# ---------------------------------------------------------------------------------------------
# random_mask and random_subset


@settings(max_examples=100, deadline=None, database=None)
@given(batch=st.integers(1, 8), num_tokens=st.integers(1, 300),
       mask_ratio=st.floats(0.0, 1.0, exclude_max=True), seed=seeds)
def test_random_mask_partitions(batch, num_tokens, mask_ratio, seed):
    keep, masked = random_mask(batch, num_tokens, mask_ratio=mask_ratio, generator=gen(seed))
    # K = round(N (1 - ratio)); at least one token is always kept
    expected = max(1, round(num_tokens * (1 - mask_ratio)))
    assert keep.shape == (batch, expected) and masked.shape == (batch, num_tokens - expected)
    assert keep.dtype == torch.long and masked.dtype == torch.long
    both = torch.cat([keep, masked], dim=1).sort(dim=1).values
    assert torch.equal(both, torch.arange(num_tokens).expand(batch, -1))
    assert (keep.diff(dim=1) > 0).all() and (masked.diff(dim=1) > 0).all()


def test_random_mask_deterministic_and_ratio_default():
    first = random_mask(4, 196, generator=gen(5))
    again = random_mask(4, 196, generator=gen(5))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert first[0].shape == (4, 49)  # round(196 * 0.25) = 49


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, math.nan])
def test_random_mask_bad_ratio(ratio):
    with pytest.raises(ValueError, match="mask_ratio"):
        random_mask(2, 16, mask_ratio=ratio)


@settings(max_examples=60, deadline=None, database=None)
@given(batch=st.integers(1, 8), num_tokens=st.integers(1, 64), data=st.data())
def test_random_subset_draws_from_true_entries(batch, num_tokens, data):
    seed = data.draw(seeds)
    mask = torch.rand(batch, num_tokens, generator=gen(seed)) < data.draw(st.floats(0.1, 1.0))
    mask[:, 0] = True
    size = data.draw(st.integers(1, int(mask.sum(1).min())))
    subset = random_subset(mask, size, gen(seed + 1))
    assert subset.shape == (batch, size) and subset.dtype == torch.long
    assert (subset.diff(dim=1) > 0).all()
    assert mask.gather(1, subset).all()
