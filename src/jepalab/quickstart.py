"""`jepalab quickstart`: the main job in a few minutes on a CPU, over the public verbs.

1. train I-JEPA on the built-in shapes data (recipe `ijepa-quickstart`);
2. probe it beside a random-init encoder (3 seeds), raw pixels and a supervised model of
   the same architecture trained for the same steps (the ceiling);
3. print the table and where the run directory, curves and checkpoint are.
"""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from jepalab import checkpoint
from jepalab.config import load_config
from jepalab.eval.baselines import probe_run
from jepalab.report import plot_curves, probe_table
from jepalab.train import ensure_trained

RECIPE = "ijepa-quickstart"


def quickstart(out: Path, show_progress: bool = True) -> dict:
    console = Console()
    run_dir = Path(out) / "ijepa"
    cfg = load_config(RECIPE)
    console.print(f"[bold]1/2[/bold] training I-JEPA ({RECIPE}: {cfg.model.arch}, "
                  f"{cfg.train.steps} steps of {cfg.train.batch_size}) into {run_dir}")
    ensure_trained(cfg, run_dir, show_progress)
    console.print("[bold]2/2[/bold] probing it beside random init, raw pixels and the "
                  "same-budget supervised ceiling")
    result = probe_run(run_dir, show_progress=show_progress)
    console.print(probe_table(result))
    rows = {row["name"]: row for row in result["rows"]}
    method, random = rows["ijepa"], rows["random init"]
    margin = method["linear"] - random["linear"]
    console.print(f"I-JEPA linear probe is {100 * margin:+.1f} points over random init "
                  f"(random-init spread over {random['seeds']} seeds: "
                  f"{100 * random['linear_std']:.1f} points).")
    folder = checkpoint.latest(run_dir)
    console.print(f"run directory: {run_dir}\ncurves: {plot_curves(run_dir)}\n"
                  f"checkpoint: {folder}\nprobe table: {run_dir / 'probe.json'}\n"
                  f"load the encoder: jepalab.load({str(run_dir)!r})")
    return result

