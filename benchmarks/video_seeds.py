"""Summarise one recipe trained with several seeds: each run's probes, mean ± spread and a
95% interval, beside the baselines of the first run's probe.json.

    python benchmarks/video_seeds.py runs/vjepa-s0 runs/vjepa-s1 runs/vjepa-s2

A run's own row (linear, kNN, attentive top-1, RankMe) is read from its probe.json when
`jepalab probe` has written one, else measured here the same way (`probe_encoder`, the
attentive probe on the tokens for video runs) without re-probing the baselines. Prints a
Markdown table: per seed, then mean ± standard deviation with a Student-t 95% interval of
the mean; then the first run's baseline rows (random init, raw pixels, per-frame, ceiling).
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from seeds import T95

from jepalab import load
from jepalab.build import backbone_spec, load_data
from jepalab.eval.baselines import probe_encoder
from jepalab.probe import run_config

PROBES = ("linear", "knn", "attentive", "rankme")


def own_row(run: Path) -> dict:
    path = run / "probe.json"
    if path.exists():
        return json.loads(path.read_text())["rows"][0]
    cfg = run_config(run)
    row = probe_encoder(cfg.method_name, load(run), load_data(cfg),
                        attentive=backbone_spec(cfg).video)
    return {key: getattr(row, key) for key in ("name", *PROBES)}


def cell(value, scale=100.0) -> str:
    return "" if value is None else f"{scale * value:.1f}"


def summary(values: list[float], scale=100.0) -> str:
    mean = statistics.mean(values)
    if len(values) < 2:
        return f"{scale * mean:.1f}"
    std = statistics.stdev(values)
    half = T95[len(values) - 1] * std / len(values) ** 0.5
    return (f"{scale * mean:.1f} ± {scale * std:.1f} "
            f"[{scale * (mean - half):.1f}, {scale * (mean + half):.1f}]")


def main(runs: list[Path]) -> None:
    rows = [own_row(run) for run in runs]
    print("| run | linear | kNN | attentive | RankMe |\n|---|---|---|---|---|")
    for run, row in zip(runs, rows):
        print(f"| {run} | " + " | ".join(cell(row[k], 1 if k == "rankme" else 100)
                                         for k in PROBES) + " |")
    print(f"| mean ± sd [95% CI], {len(rows)} seeds | " + " | ".join(
        summary([r[k] for r in rows], 1 if k == "rankme" else 100)
        if all(r[k] is not None for r in rows) else "" for k in PROBES) + " |")
    first = runs[0] / "probe.json"
    if first.exists():
        for row in json.loads(first.read_text())["rows"][1:]:
            print(f"| {row['name']} ({row['seeds']} seed{'s' * (row['seeds'] > 1)}) | "
                  + " | ".join(cell(row[k], 1 if k == "rankme" else 100) for k in PROBES)
                  + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main([Path(a) for a in sys.argv[1:]])
