"""SIGReg's cost: `jepalab.losses.sigreg` forward + backward beside the formula as the
LeJEPA paper writes it (autograd through the whole (N, slices, knots) tensor) and, given a
checkout of rbalestr-lab/lejepa (never vendored), that repository's EppsPulley on the same
projections; the values agree to 1e-5. Also SIGReg's share of a ViT-S/16 training step
(forward + backward of the encoder on V views, the LeJEPA minimal example's shape).

    python benchmarks/sigreg.py [--lejepa PATH] [--batch 128] [--views 8] [--dim 64]

Prints a table; timings are medians over --repeats runs in this process, side by side.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from jepalab import losses
from jepalab.nn.vit import VisionTransformer, ViTSpec


def as_written(z: torch.Tensor, directions: torch.Tensor, knots: int = 17,
               t_max: float = 3.0) -> torch.Tensor:
    """SIGReg straight from the paper: one (..., N, M, knots) tensor, autograd through it."""
    t = torch.linspace(0, t_max, knots)
    weights = torch.full((knots,), 2 * t_max / (knots - 1))
    weights[[0, -1]] /= 2
    window = torch.exp(-t.square() / 2)
    x = (z @ directions).unsqueeze(-1) * t
    error = (x.cos().mean(-3) - window).square() + x.sin().mean(-3).square()
    return ((error * weights * window).sum(-1) * z.shape[-2]).mean()


def reference(path: str):
    """The LeJEPA repository's Epps-Pulley test on given projections, from a checkout."""
    sys.path.insert(0, path)
    from lejepa.univariate import EppsPulley

    test = EppsPulley(t_max=3.0, n_points=17)
    return lambda z, directions: test(z @ directions).mean()


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def forward_backward(loss_fn, z, directions):
    def run():
        leaf = z.detach().requires_grad_()
        loss_fn(leaf, directions).backward()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lejepa", default="", help="a checkout of rbalestr-lab/lejepa")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64, help="projector output width")
    parser.add_argument("--slices", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    z = torch.randn(args.views, args.batch, args.dim) * 1.3 + 0.1
    directions = losses.sigreg_directions(args.dim, args.slices,
                                          generator=torch.Generator().manual_seed(0))
    candidates = {"jepalab.losses.sigreg": lambda x, d: losses.sigreg(x, directions=d),
                  "the paper's formula (autograd)": as_written}
    if args.lejepa:
        candidates["rbalestr-lab/lejepa EppsPulley"] = reference(args.lejepa)
    expected = as_written(z.double(), directions.double()).item()
    print(f"SIGReg of ({args.views}, {args.batch}, {args.dim}) embeddings, {args.slices} slices, "
          f"17 knots; {torch.get_num_threads()} threads; value as written (fp64) {expected:.6f}")
    print(f"| {'implementation':34s} | value rel. error | forward ms | forward+backward ms |")
    print(f"|{'-' * 36}|------------------|------------|---------------------|")
    timings = {}
    for name, fn in candidates.items():
        with torch.no_grad():
            value = fn(z, directions).item()
            forward = median_ms(lambda fn=fn: fn(z, directions), args.repeats)
        both = median_ms(forward_backward(fn, z, directions), args.repeats)
        timings[name] = both
        error = abs(value - expected) / abs(expected)
        assert error < 1e-5, f"{name}: value {value} differs from {expected}"
        print(f"| {name:34s} | {error:16.1e} | {forward:10.1f} | {both:19.1f} |")
    encoder = VisionTransformer(ViTSpec("vit_small", 224, 16))
    images = torch.randn(args.views * 4, 3, 224, 224)  # a few images per view: CPU-sized

    def vit_step():
        encoder.zero_grad()
        encoder(images).mean().backward()
    step = median_ms(vit_step, max(1, args.repeats // 2)) * args.batch / 4
    print(f"\nViT-S/16 forward+backward on {args.views} x {args.batch} images at 224 px: "
          f"{step / 1000:.1f} s (timed on {args.views * 4} images, scaled)")
    for name, ms in timings.items():
        print(f"  {name}: SIGReg is {100 * ms / (ms + step):.2f}% of the step")


if __name__ == "__main__":
    main()
