"""Run reports: curves from metrics.jsonl and the probe table."""
from __future__ import annotations

import json
from pathlib import Path


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(run_dir: str | Path) -> Path:
    """Training loss and RankMe against step, saved as RUN_DIR/curves.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = [r for r in read_metrics(run_dir) if "loss" in r]  # step 0 has no loss yet
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot([r["step"] for r in rows], [r["loss"] for r in rows])
    left.set(xlabel="step", ylabel="training loss", title="loss")
    monitored = [r for r in read_metrics(run_dir) if "rankme" in r]
    right.plot([r["step"] for r in monitored], [r["rankme"] for r in monitored], marker="o")
    right.set(xlabel="step", ylabel="RankMe (eval encoder)", title="RankMe")
    fig.tight_layout()
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def probe_table(result: dict):
    """A rich Table of probe rows (accuracies in percent, spread over seeds where measured)."""
    from rich.table import Table

    table = Table(title=f"{result['data']} · {result['arch']} · {result['steps']} steps · "
                        f"probes fit on {result['probe_train_images']} images, test split")
    for column in ("encoder", "linear top-1", "kNN top-1 (k=20)", "RankMe"):
        table.add_column(column, justify="left" if column == "encoder" else "right")
    def pct(value, std, seeds):
        return f"{100 * value:.1f}" + (f" ± {100 * std:.1f}" if seeds > 1 else "")

    for row in result["rows"]:
        name = row["name"] + (f" ({row['seeds']} seeds)" if row["seeds"] > 1 else "")
        table.add_row(name, pct(row["linear"], row["linear_std"], row["seeds"]),
                      pct(row["knn"], row["knn_std"], row["seeds"]), f"{row['rankme']:.1f}")
    return table
