"""Time jepalab.masks.multiblock_2d against a per-sample Python loop of the same recipe.

Run from the repository root:  python benchmarks/masks.py  (add --calls N to change the count).

Settings timed (default I-JEPA mask settings: 4 targets of scale 0.15-0.2, aspect 0.75-1.5,
context scale 0.85-1.0, min_keep 10):
  * 14 x 14 grid, batch 256  (ViT at 224 px / patch 16, I-JEPA's ImageNet setting)
  * 8 x 8 grid, batch 128    (our CPU recipe)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from jepalab.masks import block_size, multiblock_2d

DEFAULTS = {"num_targets": 4, "target_scale": (0.15, 0.2), "target_aspect": (0.75, 1.5),
            "context_scale": (0.85, 1.0), "min_keep": 10}
CASES = [((14, 14), 256), ((8, 8), 128)]


def reference_loop_multiblock_2d(batch, grid, *, num_targets=4, target_scale=(0.15, 0.2),
                                 target_aspect=(0.75, 1.5), context_scale=(0.85, 1.0),
                                 min_keep=10, generator=None, max_size_tries=20,
                                 max_position_tries=50):
    """REFERENCE LOOP FOR COMPARISON ONLY: the same multi-block recipe, one sample at a time.

    One target size and one square context size per batch (via block_size); per sample,
    num_targets target blocks and one context block at uniform positions, placed again until
    the context minus the targets keeps min_keep tokens; contexts are then cut to the batch's
    smallest by a uniform random subset. Written for this benchmark; not used by the package.
    """
    height, width = grid

    def place(h, w):
        top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
        mask = torch.zeros(height, width, dtype=torch.bool)
        mask[top:top + h, left:left + w] = True
        return mask

    for _ in range(max_size_tries):
        u_target, u_context = torch.rand(2, generator=generator).tolist()
        th, tw = block_size(grid, target_scale, target_aspect, u_target)
        ch, cw = block_size(grid, context_scale, (1.0, 1.0), u_context)
        contexts, targets = [], []
        for _ in range(batch):
            for _ in range(max_position_tries):
                blocks = [place(th, tw) for _ in range(num_targets)]
                context = place(ch, cw)
                for block in blocks:
                    context &= ~block
                if int(context.sum()) >= min_keep:
                    break
            else:
                break  # this sample never fitted: draw new sizes for the whole batch
            contexts.append(context.flatten().nonzero().squeeze(1))
            targets.append(torch.stack([b.flatten().nonzero().squeeze(1) for b in blocks]))
        else:
            keep = min(len(c) for c in contexts)
            cut = [c[torch.randperm(len(c), generator=generator)[:keep]].sort().values
                   for c in contexts]
            return torch.stack(cut), torch.stack(targets)
    raise ValueError(f"could not keep min_keep={min_keep} context tokens on grid {grid}")


def check(context, targets, batch, grid):
    """Cheap sanity check that an implementation returned valid masks."""
    num_tokens = grid[0] * grid[1]
    assert context.shape[0] == batch and context.shape[1] >= DEFAULTS["min_keep"]
    assert targets.shape[:2] == (batch, DEFAULTS["num_targets"])
    hit = torch.zeros(batch, num_tokens, dtype=torch.bool).scatter_(1, targets.flatten(1), True)
    assert not hit.gather(1, context).any(), "a target token is in the context"


def time_calls(fn, calls, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), statistics.quantiles(times, n=10, method="inclusive")[8]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="timed calls, vectorised")
    parser.add_argument("--loop-calls", type=int, default=200,
                        help="timed calls, per-sample reference loop (it is much slower)")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"calls: vectorised {args.calls}, loop {args.loop_calls} (after {args.warmup} warm-up)")
    print(f"settings: {DEFAULTS}")

    header = f"{'grid':>7} {'batch':>5}  {'implementation':<16} {'median ms':>10} {'p90 ms':>9} " \
             f"{'speed-up':>9}"
    print(header)
    print("-" * len(header))
    for grid, batch in CASES:
        generator = torch.Generator().manual_seed(0)
        rows = {}
        for name, fn, calls in (("vectorised", multiblock_2d, args.calls),
                                ("per-sample loop", reference_loop_multiblock_2d,
                                 args.loop_calls)):
            def call(fn=fn, batch=batch, grid=grid, generator=generator):
                return fn(batch, grid, generator=generator, **DEFAULTS)

            check(*call(), batch, grid)
            rows[name] = time_calls(call, calls, args.warmup)
        loop_median = rows["per-sample loop"][0]
        for name, (median, p90) in rows.items():
            size = f"{grid[0]}x{grid[1]}"
            print(f"{size:>7} {batch:>5}  {name:<16} {median:>10.2f} {p90:>9.2f} "
                  f"{loop_median / median:>8.1f}x")
    print("speed-up = per-sample loop median / row median (same grid and batch)")


if __name__ == "__main__":
    main()
