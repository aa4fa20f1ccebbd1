"""Attention on CPUs: `F.scaled_dot_product_attention`'s fused kernel against plain matmuls
(what `jepalab.nn.vit.attention` uses on CPUs), side by side in one run.

Run from the repository root:
  python benchmarks/attention.py [--steps 10] [--threads 2] [--archs vit_nano]
      [--sizes 16 32] [--precisions fp32]

Times one training step (forward under autocast, backward, AdamW) of the I-JEPA recipe
(4 px patches and batch 128 up to 64 px, 16 px patches and batch 16 above), and checks the
two paths agree. Measured on 2 idle cores without AVX-512, torch 2.13.0+cpu, vit_nano fp32:
294 -> 250 ms (1.18x) at 16 tokens, 681 -> 657 ms (1.04x) at 64.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from jepalab.build import build_method  # noqa: E402
from jepalab.config import load_config  # noqa: E402
from jepalab.nn import vit  # noqa: E402
from jepalab.train import autocast, parameter_groups  # noqa: E402


def fused(q, k, v, mask=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def patch_and_batch(image_size: int) -> tuple[int, int]:
    """4 px patches and batch 128 up to 64 px, 16 px patches and batch 16 above (as
    throughput.py)."""
    return (4, 128) if image_size <= 64 else (16, 16)


def step_times(arch: str, image_size: int, precision: str, steps: int, path) -> list[float]:
    patch, batch_size = patch_and_batch(image_size)
    cfg = load_config("ijepa-shapes", [f"model.arch={arch}", f"model.patch_size={patch}",
                                       f"data.image_size={image_size}"])
    torch.manual_seed(0)
    method = build_method(cfg, 10)
    optimizer = torch.optim.AdamW(parameter_groups(method), lr=1e-4)
    batch = {"images": torch.randint(0, 256, (batch_size, 3, image_size, image_size),
                                     dtype=torch.uint8)}
    times = []
    with mock.patch.object(vit, "attention", path):
        for i in range(steps + 2):
            start = time.perf_counter()
            torch.manual_seed(1)  # the same masks for both paths
            with autocast(torch.device("cpu"), precision):
                out = method(batch)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            if i >= 2:  # two warm-up steps
                times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--archs", nargs="+", default=["vit_nano"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[16, 32])
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    q, k, v = torch.randn(3, 64, 4, 64, 32).unbind(0)
    mask = torch.rand(64, 64) > 0.3
    mask.fill_diagonal_(True)
    for m in (None, mask):
        assert torch.allclose(vit.attention(q, k, v, m), fused(q, k, v, m), atol=1e-5)
    print(f"torch {torch.__version__}, {args.threads} threads, I-JEPA training step")
    print("| arch | px | tokens | precision | fused SDPA median ms | matmuls median ms | "
          "speed-up of fused |\n|---|---|---|---|---|---|---|")
    for arch in args.archs:
        for size in args.sizes:
            for precision in args.precisions:
                # alternate the two paths so a busy machine slows both alike
                runs = {"fused": [], "matmul": []}
                for _ in range(2):
                    for name, path in (("fused", fused), ("matmul", vit.attention)):
                        runs[name] += step_times(arch, size, precision, args.steps // 2, path)
                a, b = (statistics.median(runs[k]) * 1000 for k in ("fused", "matmul"))
                tokens = (size // patch_and_batch(size)[0]) ** 2
                print(f"| {arch} | {size} | {tokens} | {precision} | {a:.0f} | {b:.0f} | "
                      f"{b / a:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
