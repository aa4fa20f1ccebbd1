"""`jepalab report`: one self-contained HTML page of a run (plots and GIFs embedded as data
URIs, no script, nothing fetched from the network).

It shows what a run holds: its config; loss, learning rate and gradient norm against step;
the collapse diagnostics (RankMe, spread, SIGReg statistic) with the collapse warnings
marked; the probe table with its baselines (probe.json); for world models each planning
table and GIF (plan-*/plan.json, episodes.gif). With `compare`, other runs' curves are
drawn over this run's.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from jepalab import checkpoint
from jepalab.report import read_metrics

CURVES = (("loss", "training loss"), ("lr", "learning rate"), ("grad_norm", "gradient norm"))
HEALTH = (("rankme", "RankMe"), ("spread", "spread (1 = isotropic)"),
          ("sigreg", "SIGReg statistic"))
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th:first-child,td:first-child{text-align:left}pre{background:#f6f6f6;
padding:.8em;overflow:auto;max-height:28em}.warn{color:#a40}img{max-width:100%}"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure(runs: list[tuple[str, list[dict]]], panels, title: str,
            warnings: list[tuple[int, str, bool]]) -> str | None:
    """A row of line plots, one per (key, label) that any run logged; None if none did;
    `warnings` (step, text, fell) as vertical lines: a collapse dashed, a recovery dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [(k, label) for k, label in panels
               if any(k in row for _, rows in runs for row in rows)]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(3.6 * len(present), 3.0), squeeze=False)
    for ax, (key, label) in zip(axes[0], present):
        for name, rows in runs:
            points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if points:
                ax.plot(*zip(*points), marker="o" if len(points) < 30 else None,
                        markersize=3, label=name)
        for step, _, fell in warnings:
            ax.axvline(step, color="#c40" if fell else "#080", linestyle="--" if fell else ":",
                       linewidth=1)
        ax.set(xlabel="step", title=label)
        if key in ("loss", "grad_norm") and all(
                r.get(key, 1) > 0 for _, rows in runs for r in rows if key in r):
            ax.set_yscale("log")
    if len(runs) > 1:
        axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _percent(value, std=0.0, seeds=1) -> str:
    if value is None:
        return ""
    return f"{100 * value:.1f}" + (f" ± {100 * std:.1f}" if seeds > 1 else "")


def _probe_section(run_dir: Path) -> str:
    path = run_dir / "probe.json"
    if not path.exists():
        return "<p>Not probed yet: <code>jepalab probe RUN_DIR</code>.</p>"
    result = json.loads(path.read_text())
    rows = [[r["name"], _percent(r["linear"], r.get("linear_std", 0), r.get("seeds", 1)),
             _percent(r["knn"], r.get("knn_std", 0), r.get("seeds", 1)),
             _percent(r.get("attentive"), r.get("attentive_std", 0), r.get("seeds", 1)),
             f"{r['rankme']:.1f}"] for r in result["rows"]]
    return (f"<p>{html.escape(str(result['data']))} · {result['arch']} · {result['steps']} "
            f"steps · probes fit on {result['probe_train_images']} images, test split</p>"
            + _table(["encoder", "linear top-1", "kNN top-1", "attentive top-1", "RankMe"],
                     rows))


def _plan_sections(run_dir: Path) -> str:
    parts = []
    for plan in sorted(run_dir.glob("plan*/plan.json")):
        rows = []  # summarise()'s rows: per category {success, ci95, episodes}, plan times
        for row in json.loads(plan.read_text()):
            for category in [k for k, v in row.items() if isinstance(v, dict) and "ci95" in v]:
                cell = row[category]
                low, high = (100 * x for x in cell["ci95"])
                rows.append([row["name"], category, f"{100 * cell['success']:.0f}",
                             f"[{low:.0f}, {high:.0f}]", cell["episodes"],
                             f"{row['plan_ms_median']:.0f}" if row.get("plans") else "-"])
        table = _table(["model / planner", "episodes of", "success %", "95% interval",
                        "episodes", "ms per plan (median)"], rows)
        parts.append(f"<h3>{html.escape(plan.parent.name)}</h3>{table}")
        gif = plan.parent / "episodes.gif"
        if gif.exists():
            data = base64.b64encode(gif.read_bytes()).decode()
            parts.append(f'<img alt="{html.escape(plan.parent.name)} episodes" '
                         f'src="data:image/gif;base64,{data}">')
    return "".join(parts)


def write_report(run_dir: str | Path, compare: list[str | Path] = (),
                 out: str | Path | None = None) -> Path:
    """Write the run's report (default RUN_DIR/report.html) and return its path."""
    from jepalab.errors import RunKindError

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise RunKindError(f"{run_dir} is not a jepalab run directory (no config.json)")
    config = json.loads((run_dir / "config.json").read_text())
    described = run_dir / "data.json"
    kind = json.loads(described.read_text()).get("kind", "") if described.exists() else ""
    runs = [(run_dir.name, read_metrics(run_dir))]
    for other in compare:
        if not (Path(other) / "metrics.jsonl").exists():
            raise RunKindError(f"--compare {other}: not a run directory (no metrics.jsonl)")
        runs.append((Path(other).name, read_metrics(Path(other))))
    warnings = [(r["step"], r[key], key == "collapse_warning") for r in runs[0][1]
                for key in ("collapse_warning", "collapse_recovered") if key in r]
    latest = checkpoint.latest(run_dir)
    title = (f"{config.get('recipe') or run_dir.name}: {config['method']['name']} on "
             f"{config['data']['name']}")
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>run {html.escape(str(run_dir))} · {kind or 'unknown kind'} · newest "
             f"checkpoint {latest.name if latest else 'none'}"
             + (f" · compared with {', '.join(html.escape(n) for n, _ in runs[1:])}"
                if compare else "") + "</p>", "<h2>Training</h2>"]
    for panels, caption in ((CURVES, "optimisation"), (HEALTH, "collapse diagnostics of the "
                                                                "embeddings the loss acts on")):
        image = _figure(runs, panels, caption, warnings if panels is HEALTH else [])
        parts.append(f'<img alt="{caption}" src="{image}">' if image else
                     f"<p>No {caption} logged.</p>")
    parts.append("".join(f'<p class="warn">collapse warning at step {s}: {html.escape(w)}</p>'
                         if fell else f"<p>recovered at step {s}: {html.escape(w)}</p>"
                         for s, w, fell in warnings) or "<p>No collapse warning.</p>")
    if kind == "trajectories":
        parts += ["<h2>Planning</h2>",
                  _plan_sections(run_dir) or "<p>Not planned yet: <code>jepalab plan ENV "
                                             "--model RUN_DIR</code>.</p>"]
    else:
        parts += ["<h2>Probes</h2>", _probe_section(run_dir)]
    parts += ["<h2>Config</h2>", f"<pre>{html.escape(json.dumps(config, indent=1))}</pre>"]
    page = ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
    out = Path(out) if out else run_dir / "report.html"
    checkpoint.atomic_write_text(out, page)
    return out
