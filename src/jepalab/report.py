"""Run reports: curves from metrics.jsonl and the probe table."""
from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import torch

from jepalab import checkpoint


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl; a line torn by a killed process is left out."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


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
    right.set(xlabel="step", ylabel="RankMe (the embeddings the loss acts on)", title="RankMe")
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
    attentive = any(row.get("attentive") is not None for row in result["rows"])
    columns = ["encoder", "linear top-1", "kNN top-1 (k=20)"] + ["attentive top-1"] * attentive
    for column in (*columns, "RankMe"):
        table.add_column(column, justify="left" if column == "encoder" else "right")
    def pct(value, std, seeds):
        if value is None:
            return ""
        return f"{100 * value:.1f}" + (f" ± {100 * std:.1f}" if seeds > 1 else "")

    for row in result["rows"]:
        name = row["name"] + (f" ({row['seeds']} seeds)" if row["seeds"] > 1 else "")
        cells = [pct(row["linear"], row["linear_std"], row["seeds"]),
                 pct(row["knn"], row["knn_std"], row["seeds"])]
        if attentive:
            cells.append(pct(row.get("attentive"), row.get("attentive_std", 0), row["seeds"]))
        table.add_row(name, *cells, f"{row['rankme']:.1f}")
    return table


# ----- jepalab bench: its table, CSV and chart; with several budgets, the frontier -----
BENCH_COLUMNS = ["method", "steps", "linear top-1 %", "kNN top-1 %", "attentive top-1 %",
                 "RankMe",
                 "linear vs random init", "samples/s", "train TFLOP", "peak MiB", "wall s",
                 "note"]
# bench.csv: column -> row key; accuracies and their spreads in percent, the rest as measured
BENCH_CSV_FIELDS = {"method": "name", "steps": "steps", "linear_top1": "linear",
                    "linear_std": "linear_std", "knn_top1": "knn", "knn_std": "knn_std",
                    "attentive_top1": "attentive", "rankme": "rankme",
                    "linear_margin": "linear_margin",
                    "samples_per_s": "samples_per_s", "train_flops": "train_flops",
                    "peak_memory_mib": "peak_memory_mib", "train_s": "train_s",
                    "wall_s": "wall_s", "note": "note"}
# frontier.csv: one line per (method, budget); train_s is the training loop alone
FRONTIER_CSV_FIELDS = {"method": "name", "steps": "steps", "train_s": "train_s",
                       "wall_s": "wall_s", "train_flops": "train_flops",
                       "linear_top1": "linear", "knn_top1": "knn", "rankme": "rankme"}
PERCENT = ("linear", "linear_std", "knn", "knn_std", "attentive", "attentive_std")


def bench_cells(row: dict) -> list[str]:
    def pct(key):
        if row.get(key) is None:
            return ""
        spread = f" ± {100 * row[key + '_std']:.1f}" if row.get("seeds", 1) > 1 else ""
        return f"{100 * row[key]:.1f}{spread}"

    def number(key, spec):
        return "" if row.get(key) is None else format(row[key], spec)

    tflop = "" if row.get("train_flops") is None else f"{row['train_flops'] / 1e12:.3g}"
    return [row["name"], number("steps", "d"), pct("linear"), pct("knn"), pct("attentive"),
            number("rankme", ".1f"), number("linear_margin", "+.1f"),
            number("samples_per_s", ".0f"), tflop, number("peak_memory_mib", ".0f"),
            number("wall_s", ".1f"), row["note"]]


def bench_table(rows: list[dict], title: str, notes: list[str]):
    from rich.table import Table

    result = Table(title=title, caption="\n".join(notes), caption_justify="left")
    for column in BENCH_COLUMNS:
        result.add_column(column, justify="left" if column in ("method", "note") else "right")
    for row in rows:
        result.add_row(*bench_cells(row))
    return result


def write_bench(out: Path, rows: list[dict], title: str, notes: list[str],
                device: torch.device, command: str, frontier: bool = False) -> None:
    """bench.md, bench.csv and bench.png; with `frontier` (several budgets; the last row is
    random init) also frontier.png, frontier.csv and a table per budget in bench.md."""
    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{threads} torch thread{'s' * (threads > 1)}"
    lines = ["# jepalab bench", "", f"{title} · {time.strftime('%Y-%m-%d %H:%M')} · torch "
             f"{torch.__version__} · {device} ({name})", "", f"`{command}`", "",
             "| " + " | ".join(BENCH_COLUMNS) + " |", "|" + "---|" * len(BENCH_COLUMNS)]
    lines += ["| " + " | ".join(bench_cells(row)) + " |" for row in rows]
    if frontier:
        lines += ["", *frontier_table(rows)]
        _write_csv(out / "frontier.csv", rows[:-1], FRONTIER_CSV_FIELDS)
        plot_frontier(rows, title, out / "frontier.png")
    checkpoint.atomic_write_text(out / "bench.md", "\n".join(lines + [""] + notes) + "\n")
    _write_csv(out / "bench.csv", rows, BENCH_CSV_FIELDS)
    plot_bench(rows, title, out / "bench.png")


def _write_csv(path: Path, rows: list[dict], fields: dict[str, str]) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(fields)
    for row in rows:
        writer.writerow([_bench_csv(row, key) for key in fields.values()])
    checkpoint.atomic_write_text(path, text.getvalue())


def _bench_csv(row: dict, key: str):
    value = row.get(key)
    if key.endswith("_std") and row.get("seeds", 1) == 1:  # one measurement: no spread
        return ""
    if not isinstance(value, float):
        return "" if value is None else value
    return round((100 if key in PERCENT else 1) * value, 3)


def plot_bench(rows: list[dict], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods, random = rows[:-1], rows[-1]
    x, width = range(len(methods)), 0.38
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(methods) + 3), 3.8))
    for shift, key, label, color in ((-1, "linear", "linear top-1", "C0"),
                                     (1, "knn", "kNN top-1", "C1")):
        ax.bar([i + shift * width / 2 for i in x], [100 * (r.get(key) or 0) for r in methods],
               width, label=label, color=color)
    ax.axhline(100 * random["linear"], color="C0", linestyle="--", label="random init, linear")
    ax.axhline(100 * random["knn"], color="C1", linestyle=":", label="random init, kNN")
    several = len({r.get("steps") for r in methods}) > 1
    ax.set_xticks(list(x), [r["name"] + f" @ {r['steps']}" * several for r in methods],
                  rotation=30, ha="right")
    ax.set(ylabel="top-1 (%)", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bench_notes(rows: list[dict], warmups: dict[str, list[str]], warmup_fraction: float,
                probe_images: int) -> list[str]:
    """The bench table's footer: how each column was measured; each row's warmup steps
    (label -> one per budget)."""
    lines = [f"Probes fit on {probe_images} training images, reported on the test split; "
             "linear: softmax regression, lr x weight decay picked on val; kNN: k=20, cosine.",
             "samples/s: steps x batch / training-loop time; wall: training loop (summed over "
             "resumed sessions) + probing.",
             "train TFLOP: one training step (forward and backward on step 0's batch) counted "
             "by torch FlopCounterMode (matrix multiplies, convolutions, attention), x steps."]
    lines += [f"Peak memory: {m}." for m in dict.fromkeys(r["memory_measure"] for r in rows
                                                          if r.get("memory_measure"))]
    lines.append(f"Warmup steps (each recipe's, capped at {warmup_fraction:.0%} of the budget): "
                 + ", ".join(f"{label} {'/'.join(w)}" for label, w in warmups.items()) + ".")
    if "supervised (ceiling)" in warmups:
        lines.append("supervised (ceiling): the same backbone trained with labels for the same "
                     f"budget, with the optimiser settings of {next(iter(warmups))}.")
    return lines


def by_method(rows: list[dict]) -> dict[str, dict[int, dict]]:
    """Method rows (all but the last, random init) as label -> steps -> row."""
    methods: dict[str, dict[int, dict]] = {}
    for row in rows[:-1]:
        methods.setdefault(row["name"], {})[row["steps"]] = row
    return methods


def frontier_table(rows: list[dict]) -> list[str]:
    """Markdown: linear top-1 % of each method (a line) at each budget (a column)."""
    methods, random = by_method(rows), rows[-1]
    budgets = sorted({steps for runs in methods.values() for steps in runs})
    lines = ["Linear top-1 % by training budget (steps):", "",
             "| method | " + " | ".join(map(str, budgets)) + " |",
             "|---|" + "---|" * len(budgets)]
    for name, runs in methods.items():
        cells = [f"{100 * runs[s]['linear']:.1f}" if runs.get(s, {}).get("linear") is not None
                 else "" for s in budgets]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(f"| {random['name']} | " + " | ".join(
        [f"{100 * random['linear']:.1f}"] * len(budgets)) + " |")
    return lines


def plot_frontier(rows: list[dict], title: str, path: Path) -> None:
    """Linear top-1 against training-loop seconds and against training FLOPs (log x), one
    line per method through its budgets, random init as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods, random = by_method(rows), rows[-1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, label in ((axes[0], "train_s", "training time (s)"),
                           (axes[1], "train_flops", "training FLOPs")):
        for i, (name, runs) in enumerate(methods.items()):
            done = [runs[s] for s in sorted(runs) if runs[s].get("linear") is not None]
            ax.plot([r[key] for r in done], [100 * r["linear"] for r in done],
                    marker="os^Dv"[i // 10 % 5], linestyle="-" if i < 10 else "--",
                    color=f"C{i % 10}", label=name)  # 10 colours, then new marks
        ax.axhline(100 * random["linear"], color="gray", linestyle="--", label=random["name"])
        ax.set_xscale("log")
        ax.set(xlabel=label)
    axes[0].set(ylabel="linear top-1 (%)")
    fig.suptitle(title, fontsize=9)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
