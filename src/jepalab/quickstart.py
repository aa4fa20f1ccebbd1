"""`jepalab quickstart`: the main job in a few minutes on a CPU, over the public verbs.

1. train a JEPA on the built-in shapes data (recipe `jepa-quickstart`; the README says
   which JEPA and why);
2. probe it beside a random-init encoder (3 seeds), raw pixels and a supervised model of
   the same architecture trained for the same steps (the ceiling); print the table;
3. collect Two-Room episodes and train a small LeWM-style world model on them
   (recipe `lewm-quickstart`);
4. plan with it (CEM, graph cost) on fixed start/goal episodes beside random actions;
   print the table.
Every step resumes: a second call reuses what the first one finished.
"""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from jepalab import checkpoint
from jepalab.config import load_config
from jepalab.probe import probe_run
from jepalab.progress import console as make_console
from jepalab.report import plot_curves, probe_table
from jepalab.train import ensure_trained

RECIPE = "jepa-quickstart"
WORLD_RECIPE = "lewm-quickstart"
WORLD_EPISODES = 300      # noisy-expert Two-Room episodes of 100 steps, 32 px
PLAN_EPISODES = 10        # half of them across the door


def quickstart(out: Path, show_progress: bool = True) -> dict:
    console = make_console()
    cfg = load_config(RECIPE)
    name = cfg.method_name
    run_dir = Path(out) / name
    console.print(f"[bold]1/4[/bold] training {name} ({RECIPE}: {cfg.model.arch}, "
                  f"{cfg.data.image_size} px, {cfg.train.steps} steps of "
                  f"{cfg.train.batch_size}) into {run_dir}")
    ensure_trained(cfg, run_dir, show_progress)
    console.print("[bold]2/4[/bold] probing it beside random init, raw pixels and the "
                  "same-budget supervised ceiling")
    result = probe_run(run_dir, show_progress=show_progress)
    console.print(probe_table(result))
    rows = {row["name"]: row for row in result["rows"]}
    method, random = rows[name], rows["random init"]
    margin = method["linear"] - random["linear"]
    console.print(f"{name} linear probe is {100 * margin:+.1f} points over random init "
                  f"(random-init spread over {random['seeds']} seeds: "
                  f"{100 * random['linear_std']:.1f} points).")
    folder = checkpoint.latest(run_dir)
    console.print(f"run directory: {run_dir}\ncurves: {plot_curves(run_dir)}\n"
                  f"checkpoint: {folder}\nprobe table: {run_dir / 'probe.json'}\n"
                  f"load the encoder: jepalab.load({str(run_dir)!r})")
    result["planning"] = world_model(Path(out), console, show_progress)
    return result


def world_model(out: Path, console: Console, show_progress: bool) -> list[dict]:
    """Steps 3 and 4: a Two-Room world model, and planning with it."""
    from jepalab.envs.collect import collect
    from jepalab.world.evaluate import PlanSettings, run_plan

    data, run_dir = out / "two-room.h5", out / "lewm"
    if not data.exists():
        console.print(f"[bold]3/4[/bold] collecting {WORLD_EPISODES} Two-Room episodes "
                      f"(noisy expert) into {data}, then training a LeWM-style world model")
        collect("two-room", data, episodes=WORLD_EPISODES, policy="noisy-expert", noise=1.0,
                env_kwargs={"size": 32}, show_progress=show_progress)
    else:
        console.print(f"[bold]3/4[/bold] training a LeWM-style world model on {data}")
    cfg = load_config(WORLD_RECIPE, [f"data.name=trajectories:{data}"])
    ensure_trained(cfg, run_dir, show_progress)
    console.print(f"[bold]4/4[/bold] planning with it (CEM, graph cost, {PLAN_EPISODES} fixed "
                  "episodes, half across the door) beside random actions")
    settings = PlanSettings(episodes=PLAN_EPISODES, execute=5, cost="graph")
    rows = run_plan("two-room", run_dir, settings, out=run_dir / "plan",
                    show_progress=show_progress)
    console.print(f"world model: {run_dir}; episodes: {run_dir / 'plan' / 'episodes.gif'}; "
                  f"the full Two-Room recipe: jepalab train lewm-two-room (README)")
    return rows

