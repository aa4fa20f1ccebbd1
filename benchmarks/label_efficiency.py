"""Label efficiency of a video encoder's frozen tokens: the attentive probe fit on a few
labelled clips (V-JEPA's low-shot frozen evaluation), beside random-init encoders.

    python benchmarks/label_efficiency.py runs/vjepa-s0 runs/vjepa-s1 runs/vjepa-s2
        [--labels 300 1000 3000] [--draws 1] [--random-seeds 3] [--steps 400] [--json out.json]

For each number of labelled training clips n and each draw (a random subset of the
training split, the same subset for every encoder), every encoder's tokens go through the
attentive probe exactly as `jepalab probe` runs it (whitened, the same learning-rate x
weight-decay grid, best on the full validation split, reported on test), except that the
probe trains for about `--steps` optimiser steps whatever n is (10 epochs of the 10,000
clips `jepalab probe` uses are 790), so a small n is not also a short training. The
random-init encoders are `jepalab probe`'s (`eval.baselines.random_init`). Prints a Markdown
table (mean over the runs and over the random seeds, each with its spread) and the margin.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import torch

from jepalab import load
from jepalab.build import backbone_spec, load_data
from jepalab.eval.attentive import attentive_probe, extract_tokens
from jepalab.eval.baselines import random_init
from jepalab.probe import run_config


def encoders(runs: list[Path], random_seeds: int):
    spec = backbone_spec(run_config(runs[0]))
    for run in runs:
        yield "trained", str(run), load(run)
    for seed in range(random_seeds):
        yield "random init", f"random init, seed {seed}", random_init(spec, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--labels", nargs="+", type=int, default=[300, 1000, 3000])
    parser.add_argument("--draws", type=int, default=1)
    parser.add_argument("--random-seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = load_data(run_config(args.runs[0]))
    num_classes = len(data.classes)
    subsets = {(n, d): torch.randperm(len(data.train.labels),
                                      generator=torch.Generator().manual_seed(d))[:n]
               for n in args.labels for d in range(args.draws)}
    needed = torch.cat(list(subsets.values())).unique()
    results = []
    for kind, name, encoder in encoders(args.runs, args.random_seeds):
        train = extract_tokens(encoder, data.train.images[needed])  # needed is sorted
        val, test = (extract_tokens(encoder, x) for x in (data.val.images, data.test.images))
        for (n, draw), index in subsets.items():
            epochs = max(1, math.ceil(args.steps / math.ceil(n / args.batch)))
            result = attentive_probe(train[torch.searchsorted(needed, index)],
                                     data.train.labels[index], val, data.val.labels, test,
                                     data.test.labels, num_classes=num_classes,
                                     epochs=epochs, batch_size=args.batch)
            results.append(dict(kind=kind, encoder=name, labels=n, draw=draw,
                                test=result.test_acc, val=result.val_acc, lr=result.lr,
                                weight_decay=result.weight_decay))
            print(json.dumps(results[-1]), flush=True)
    print(table(results, args.labels))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def table(results: list[dict], labels: list[int]) -> str:
    def cell(kind, n):
        values = [100 * r["test"] for r in results if r["kind"] == kind and r["labels"] == n]
        if not values:
            return None, ""
        spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
        return statistics.mean(values), f"{statistics.mean(values):.1f}{spread} ({len(values)})"

    lines = ["| labelled clips | trained (runs x draws) | random init (seeds x draws) | margin |",
             "|---|---|---|---|"]
    for n in labels:
        (trained, a), (random, b) = cell("trained", n), cell("random init", n)
        margin = "" if trained is None or random is None else f"{trained - random:+.1f}"
        lines.append(f"| {n} | {a} | {b} | {margin} |")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
