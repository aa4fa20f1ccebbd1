"""Summarise `jepalab bench` runs over training seeds: mean, spread and a 95% interval.

Run from the repository root, one bench output folder per seed (each a `jepalab bench
... --seed S --out DIR`), e.g. for the principle tables in the README:

    python benchmarks/seeds.py runs/study-seed0 runs/study-seed1 runs/study-seed2

Reads each folder's bench.csv and prints a Markdown table: per (method, steps), linear
top-1 mean ± standard deviation over the seeds with a 95% Student-t interval of the mean,
the mean margin over the random-init row, kNN top-1, RankMe, training TFLOP and how many
seeds' collapse monitor warned. A bench's --variant rows are methods of their own here.
"""
from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from pathlib import Path

# two-sided 95% Student-t quantiles by degrees of freedom (n - 1)
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262}


def read(folder: Path) -> list[dict]:
    path = folder / "bench.csv"
    if not path.exists():
        sys.exit(f"seeds.py: {path} not found; give folders written by `jepalab bench --out`")
    with path.open() as f:
        return list(csv.DictReader(f))


def number(row: dict, key: str) -> float | None:
    return float(row[key]) if row.get(key) not in (None, "") else None


def interval(values: list[float]) -> str:
    mean = statistics.mean(values)
    if len(values) < 2:
        return f"{mean:.1f}"
    sd = statistics.stdev(values)
    half = T95.get(len(values) - 1, 1.96) * sd / math.sqrt(len(values))
    return f"{mean:.1f} ± {sd:.1f} [{mean - half:.1f}, {mean + half:.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    runs: dict[tuple[str, str], list[dict]] = {}
    random = []
    for folder in args.folders:
        for row in read(folder):
            if row["method"].startswith("random init"):
                random.append(float(row["linear_top1"]))
            elif row["linear_top1"]:
                runs.setdefault((row["method"], row["steps"]), []).append(row)
    print(f"{len(args.folders)} benches; random init linear top-1 {statistics.mean(random):.1f}")
    print("| method | steps | seeds | linear top-1 % (mean ± sd [95% CI]) | margin | "
          "kNN top-1 % | RankMe | train TFLOP | collapse warnings |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for (method, steps), rows in runs.items():
        linear = [float(r["linear_top1"]) for r in rows]
        flops = [number(r, "train_flops") for r in rows if number(r, "train_flops")]
        print(f"| {method} | {steps} | {len(rows)} | {interval(linear)} | "
              f"{statistics.mean(linear) - statistics.mean(random):+.1f} | "
              f"{interval([float(r['knn_top1']) for r in rows])} | "
              f"{statistics.mean(float(r['rankme']) for r in rows):.1f} | "
              + (f"{statistics.mean(flops) / 1e12:.3g} |" if flops else " |")
              + f" {sum('collapse warning' in r['note'] for r in rows)}/{len(rows)} |")


if __name__ == "__main__":
    main()
