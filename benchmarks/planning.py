"""Milliseconds per plan, for each planner and world model, side by side in one run.

    python benchmarks/planning.py                       # default-sized models, untrained
    python benchmarks/planning.py --model runs/lewm-two-room --model runs/dino-wm-two-room
    python benchmarks/planning.py --model runs/lewm-two-room --costs sum,graph --planners cem
    python benchmarks/planning.py --recipes vjepa-ac-two-room --planners cem --costs l1 \
        --horizon 2 --planner-option samples=400 --planner-option elites=10 \
        --planner-option iterations=10                  # V-JEPA 2-AC's own planner

Plan time does not depend on the weights, only on the model's shape and the planner's
budget, so without --model the script times freshly built models of each recipe's shape
(V-JEPA 2-AC and DINO-WM get a random frozen encoder of their recipe's size).
Each plan starts from a Two-Room observation with a full history, as in `jepalab plan`.
A model with a cached rollout (LeWM, V-JEPA 2-AC: world.plan_rollout) is timed both ways,
"cached" and "chained" (the predictor called once per block on every candidate's whole
window), side by side in one run.
The graph cost (`--costs graph`) needs a trained model and its data, so only with --model.
Prints a table: model, planner, cost, median and p90 ms per plan, over --plans plans, and
what a plan computes: its GFLOP (counted with FlopCounterMode on one more plan) and the
rate the median reaches, as a share of the fp32 matmul peak measured in the same run
(benchmarks/throughput.py's GEMM, timed after the plans: its 16 MiB matrices would raise
glibc's malloc thresholds for every plan after them): a plan near that peak is limited by
its arithmetic, one far below it by everything else; and the minor page faults a plan
took. Plans run as `jepalab plan` runs them, with freed memory kept
(jepalab.memory.keep_freed_memory); --glibc-malloc leaves glibc's defaults, --compile adds
a row per model with its rollout under torch.compile (`jepalab plan --compile`).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from throughput import gemm_peak
from torch.utils.flop_counter import FlopCounterMode

from jepalab.build import build_method
from jepalab.checkpoint import encoder_metadata
from jepalab.config import load_config, load_recipe
from jepalab.envs import make
from jepalab.memory import keep_freed_memory
from jepalab.nn.vit import VisionTransformer, ViTSpec
from jepalab.world import load_world_model
from jepalab.world.evaluate import COSTS, Agent, PlanSettings
from jepalab.world.graph import TemporalGraph
from jepalab.world.planners import parse_options

PLANNERS = ("cem", "mppi", "gradient")
RECIPES = ("lewm-two-room", "vjepa-ac-two-room", "dino-wm-two-room")


def untrained(recipe: str, overrides: list[str], scratch: Path):
    raw, _ = load_recipe(recipe)
    if "encoder" in raw["method"]:  # a random encoder of the recipe's size stands in
        encoder = VisionTransformer(ViTSpec(raw["model"]["arch"], raw["data"]["image_size"],
                                            raw["model"]["patch_size"]))
        path = scratch / f"{recipe}-encoder.safetensors"
        save_file(encoder.state_dict(), str(path), metadata=encoder_metadata(encoder))
        overrides = [f"method.encoder={path}", *overrides]
    cfg = load_config(recipe, ["data.name=trajectories:unused.h5", *overrides])
    model = build_method(cfg, 2 * cfg.data.frameskip).eval()
    return model, {"env": "two-room", "env_kwargs": {}, "action_dim": 2,
                   "frameskip": cfg.data.frameskip}


class Chained:
    """The model without its cached rollout: planning chains `predict` (the old path)."""

    def __init__(self, model):
        self.model, self.history = model, model.history

    def encode(self, pixels, proprio=None):
        return self.model.encode(pixels, proprio)

    def predict(self, latents, actions):
        return self.model.predict(latents, actions)


def time_plans(model, data: dict, planner: str, cost: str, plans: int, horizon: int = 5,
               options: dict | None = None, compiled: bool = False):
    """ms of each of `plans` plans after a warm-up (the first plan, which compiles when
    `compiled`), the minor page faults a plan took (mean), and the FLOPs of one more."""
    env = make(data["env"], **data["env_kwargs"])
    settings = PlanSettings(planner=planner, cost=cost, horizon=horizon,
                            planner_options=options or {}, compile=compiled)
    graph = None
    if cost == "graph":
        if "path" not in data:
            raise SystemExit("--costs graph needs --model RUN_DIR (a trained model and its data)")
        graph = TemporalGraph.from_trajectories(model, data["path"], data["frameskip"])
    agent = Agent(model, settings, data["action_dim"], data["frameskip"], graph)
    obs, _ = env.reset(seed=0)
    agent.reset(obs)
    for _ in range(model.history):  # a full context, as in the middle of an episode
        agent.observe(obs, agent.block(torch.zeros(data["action_dim"])))
    torch.set_grad_enabled(planner == "gradient")
    agent.plan()  # warms up (and compiles)
    faults, times = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, []
    for _ in range(plans):
        began = time.perf_counter()
        agent.plan()
        times.append(1000 * (time.perf_counter() - began))
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / plans
    counter = FlopCounterMode(display=False)
    with counter:
        agent.plan()
    torch.set_grad_enabled(True)
    return times, faults, counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="world-model run dirs")
    parser.add_argument("--planners", default=",".join(PLANNERS))
    parser.add_argument("--costs", default="sum",
                        help=f"{', '.join(COSTS)} (comma-separated)")
    parser.add_argument("--horizon", type=int, default=5, help="blocks planned ahead")
    parser.add_argument("--planner-option", action="append", default=[], metavar="KEY=VALUE",
                        help="e.g. samples=400 elites=10 iterations=10 (V-JEPA 2-AC's CEM)")
    parser.add_argument("--plans", type=int, default=5)
    parser.add_argument("--glibc-malloc", action="store_true",
                        help="leave glibc's malloc as it is (jepalab's CLI keeps freed memory: "
                        "jepalab.memory.keep_freed_memory)")
    parser.add_argument("--compile", action="store_true",
                        help="also time each model's rollout under torch.compile (plan --compile)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--recipes", default=",".join(RECIPES), help="untrained model shapes")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="overrides for the untrained models (e.g. method.history=1)")
    args = parser.parse_args()
    if args.plans < 1:
        parser.error(f"--plans must be >= 1, got {args.plans}")
    if args.threads:
        torch.set_num_threads(args.threads)
    kept = not args.glibc_malloc and keep_freed_memory()
    models = [(run, *load_world_model(run)) for run in args.model]
    scratch = Path(tempfile.mkdtemp())
    if not models:
        models = [(f"{recipe} (untrained) " + " ".join(args.set),
                   *untrained(recipe, args.set, scratch)) for recipe in args.recipes.split(",")]
    chosen = " ".join(args.planner_option) or "defaults (CEM: 300 samples, top 30, 30 iterations)"
    rows = []
    for name, model, data in models:
        ways = [("cached", model, False), ("chained", Chained(model), False)]
        if not hasattr(model, "cached_rollout") or model.history == 1:  # as plan_rollout
            ways = [("chained", model, False)]
        if args.compile:
            ways.append((f"{ways[0][0]}, compiled", model, True))
        for planner in args.planners.split(","):
            for cost in args.costs.split(","):
                for way, timed, compiled in ways:
                    options = parse_options(planner, args.planner_option)
                    times, faults, flops = time_plans(timed, data, planner, cost, args.plans,
                                                      args.horizon, options, compiled)
                    rows.append((name, planner, cost, way, times, faults, flops))
                    print(f"{name} {planner} {cost} {way}: {statistics.median(times):.0f} ms",
                          flush=True)
    # the peak last: its 16 MiB matrices would raise glibc's thresholds for the plans timed
    peak = gemm_peak(torch.float32, torch.device("cpu")) / 1e9
    print(f"threads: {torch.get_num_threads()}; horizon {args.horizon}; planner {chosen}; "
          f"fp32 GEMM 2048^3 peak {peak:.0f} GFLOP/s; freed memory "
          f"{'kept (as jepalab plan)' if kept else 'returned (glibc default)'}")
    print(f"| {'model':<44} | {'planner':<8} | {'cost':<5} | {'rollout':<17} | {'median ms':>9} "
          f"| {'p90 ms':>7} | GFLOP/plan | GFLOP/s | of peak | page faults/plan |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 7}|{'-' * 19}|{'-' * 11}|{'-' * 9}|{'-' * 12}|"
          f"{'-' * 9}|{'-' * 9}|{'-' * 18}|")
    for name, planner, cost, way, times, faults, flops in rows:
        median = statistics.median(times)
        rate = flops / 1e9 / (median / 1000)
        print(f"| {name:<44} | {planner:<8} | {cost:<5} | {way:<17} | {median:9.0f} | "
              f"{np.percentile(times, 90):7.0f} | {flops / 1e9:10.1f} | {rate:7.1f} | "
              f"{rate / peak:7.0%} | {faults:16,.0f} |")


if __name__ == "__main__":
    main()
