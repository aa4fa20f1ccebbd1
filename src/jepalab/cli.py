"""The `jepalab` command line. It only wires: parse, call the library, print."""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path


def cmd_train(args) -> int:
    from jepalab.config import ConfigError, apply_overrides, from_dict, load_config, recipe_names
    from jepalab.nonfinite import NonFinite
    from jepalab.train import Collapsed, Interrupted, train

    items = list(args.items)
    resume = [i for i in items if i.startswith("resume=")]
    overrides = [i for i in items if "=" in i and not i.startswith("resume=")]
    recipes = [i for i in items if "=" not in i]
    if len(recipes) > 1:
        raise ConfigError(f"give one recipe, got {recipes}; overrides look like key=value")
    if resume:
        import json

        run_dir = Path(resume[-1].split("=", 1)[1])
        if not (run_dir / "config.json").exists():
            raise ConfigError(f"resume={run_dir}: not a run directory (no config.json)")
        raw = json.loads((run_dir / "config.json").read_text())
        cfg = from_dict(apply_overrides(raw, overrides), recipe=raw.get("recipe", ""))
        if recipes and recipes[0] != cfg.recipe:
            raise ConfigError(f"resume={run_dir} is a {cfg.recipe!r} run, not {recipes[0]!r}")
    elif recipes:
        cfg = load_config(recipes[0], overrides)
        run_dir = Path(cfg.train.run_dir or default_run_dir(cfg.recipe))
    else:
        print("usage: jepalab train RECIPE [section.key=value ...] | jepalab train resume=RUN_DIR")
        print("recipes: " + ", ".join(recipe_names()))
        return 2
    if not resume and (run_dir / "latest").exists():
        raise ConfigError(f"{run_dir} already holds a run; continue it with resume={run_dir} "
                          "or choose another train.run_dir")
    try:
        train(cfg, run_dir, resume=bool(resume), show_progress=not args.quiet)
    except Interrupted as stop:
        print(f"{stop}; continue with: jepalab train resume={run_dir}")
        return 130
    except (Collapsed, NonFinite) as stop:  # the run failed; its checkpoints are kept
        print(f"jepalab train: {stop}", file=sys.stderr)
        return 3
    from jepalab.page import write_report

    print(f"run directory: {run_dir}; report: {write_report(run_dir)}")
    return 0


def default_run_dir(recipe: str) -> str:
    import time

    return f"runs/{recipe}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_probe(args) -> int:
    from jepalab.probe import CONFUSION_FILE, probe_run
    from jepalab.progress import console
    from jepalab.report import plot_curves, probe_table

    result = probe_run(args.run_dir, ceiling_dir=args.ceiling, seeds=args.seeds,
                       train_ceiling_if_missing=not args.no_ceiling, show_progress=not args.quiet,
                       attentive={"yes": True, "no": False}.get(args.attentive),
                       per_frame_dir=args.per_frame)
    console().print(probe_table(result))
    confusion = Path(args.run_dir) / CONFUSION_FILE
    print(f"probe results: {Path(args.run_dir) / 'probe.json'}; curves: "
          f"{plot_curves(args.run_dir)}" + (f"; confusion matrix: {confusion}"
                                            if confusion.exists() else ""))
    return 0


def cmd_quickstart(args) -> int:
    from jepalab.quickstart import quickstart

    quickstart(Path(args.out), show_progress=not args.quiet)
    return 0


def cmd_bench(args) -> int:
    from dataclasses import fields

    from jepalab.bench import run_bench
    from jepalab.lineup import BenchOptions
    from jepalab.train import Interrupted

    options = BenchOptions(**{f.name: getattr(args, f.name) for f in fields(BenchOptions)})
    try:
        run_bench(options)
    except (Interrupted, KeyboardInterrupt) as stop:
        print(f"{stop or 'interrupted'}; finished methods are kept and the bench continues "
              f"where it stopped with:\n  {options.command()}",
              file=sys.stderr)
        return 130
    return 0


def cmd_collect(args) -> int:
    from jepalab.config import ConfigError
    from jepalab.envs.collect import POLICY_OPTIONS, collect

    own = POLICY_OPTIONS[args.policy]
    for policy, keys in POLICY_OPTIONS.items():
        for key in set(keys) - set(own):
            if getattr(args, key) is not None:
                raise ConfigError(f"--{key} does not apply to --policy {args.policy} (it sets "
                                  f"the {policy} policy); --policy {args.policy} takes "
                                  f"{' and '.join('--' + k for k in own)}")
    chosen = {key: getattr(args, key) for key in own if getattr(args, key) is not None}
    path = collect(args.env, args.out or f"data/{args.env}-{args.policy}.h5",
                   episodes=args.episodes, steps=args.steps, policy=args.policy, seed=args.seed,
                   env_kwargs={"size": args.size}, show_progress=not args.quiet, **chosen)
    print(f"trajectories: {path}")
    return 0


def cmd_export(args) -> int:
    from jepalab.export import export_run

    path = export_run(args.run_dir, args.out or None, args.format)
    print(f"encoder: {path} (load it with jepalab.load; --format timm: README, Export)")
    return 0


def cmd_plan(args) -> int:
    from jepalab.world.evaluate import folder_name, protocol_settings, run_plan
    from jepalab.world.planners import parse_options

    settings = protocol_settings(args.protocol, planner=args.planner, horizon=args.horizon,
                                 execute=args.execute, cost=args.cost, episodes=args.episodes,
                                 seed=args.seed, action_block=args.action_block,
                                 expert_data=args.expert_data, goal_offset=args.goal_offset,
                                 budget=args.budget, compile=args.compile,
                                 planner_options=parse_options(args.planner, args.planner_option))
    out = Path(args.out or Path(args.model) / folder_name(args.env, settings))
    run_plan(args.env, args.model, settings, out=out, random_baseline=not args.no_random,
             gif_episodes=args.gif, show_progress=not args.quiet)
    from jepalab.page import write_report

    print(f"results: {out / 'plan.json'}; episodes: {out / 'episodes.gif'}; report: "
          f"{write_report(args.model)}")
    return 0


def cmd_vqa(args) -> int:
    from jepalab.progress import console
    from jepalab.vqa import vqa_run, vqa_table

    result = vqa_run(args.run_dir, seeds=args.seeds, frame_dir=args.per_frame,
                     show_progress=not args.quiet)
    console().print(vqa_table(result))
    print(f"vqa results: {Path(args.run_dir) / 'vqa.json'}")
    return 0


def cmd_report(args) -> int:
    from jepalab.page import write_report

    print(f"report: {write_report(args.run_dir, args.compare, args.out or None)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from jepalab.lineup import BENCH_PRECISIONS, DEFAULT_BUDGETS, BenchOptions

    parser = argparse.ArgumentParser(prog="jepalab", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    quick = verbs.add_parser("quickstart", help="train a JEPA on shapes on CPU, probe it "
                             "against its baselines, print the table; then train a small "
                             "world model and plan with it (5 to 20 minutes on 2 CPU cores, "
                             "by machine: README)")
    quick.add_argument("--out", default="runs/quickstart", help="where the runs go")

    train = verbs.add_parser("train", help="train a recipe: jepalab train RECIPE key=value ...")
    train.add_argument("items", nargs="*", metavar="RECIPE|key=value|resume=RUN_DIR")

    probe = verbs.add_parser("probe", help="linear / kNN / RankMe of a run beside random "
                             "init, raw pixels and a same-budget supervised ceiling")
    probe.add_argument("run_dir")
    probe.add_argument("--ceiling", help="a supervised run directory to use as the ceiling "
                       "(default: train one with the run's budget into RUN_DIR/ceiling)")
    probe.add_argument("--no-ceiling", action="store_true", help="skip the supervised ceiling")
    probe.add_argument("--seeds", type=int, default=3, help="random-init seeds (default 3)")
    probe.add_argument("--attentive", choices=("auto", "yes", "no"), default="auto",
                       help="the attentive probe on the tokens too (default auto: for video "
                       "runs)")
    probe.add_argument("--per-frame", metavar="IMAGE_RUN", help="video runs: also probe an "
                       "image encoder trained on single frames (e.g. `jepalab train "
                       "ijepa-moving-shapes-frames`), read on every frame and averaged over "
                       "time")
    bench = verbs.add_parser("bench", help="train the self-supervised methods with one "
                             "backbone, seed and budget (or several: a frontier); probe each "
                             "beside random init; write a table, a CSV and charts")
    bench.add_argument("--methods", default="", help="comma-separated, e.g. ijepa,simclr "
                       "(default: every method with a NAME-shapes recipe; none when "
                       "--variant is given)")
    bench.add_argument("--variant", dest="variants", action="append", default=[],
                       metavar="'NAME KEY=VALUE ...'", help="method NAME with overrides of "
                       "method.*, optim.* or train.* keys, a row of its own, e.g. --variant "
                       "'vicreg method.cov_coeff=0' (repeatable)")
    bench.add_argument("--data", default="shapes", help="shapes, digits, imagefolder:PATH or "
                       "cifar:PATH (default shapes)")
    bench.add_argument("--budget", type=int, default=None, metavar="STEPS",
                       help="one training budget for every method (runs in "
                       "OUT/runs/METHOD), instead of the frontier's --budgets")
    bench.add_argument("--budgets", default="", metavar="STEPS,STEPS,...", help="several "
                       "budgets, e.g. 150,600,2400: each method trains at each (runs in "
                       "OUT/runs/METHOD-STEPS), plus frontier.png and frontier.csv: accuracy "
                       f"against training time and FLOPs (default {DEFAULT_BUDGETS})")
    bench.add_argument("--batch-size", type=int, default=BenchOptions.batch_size,
                       help=f"default {BenchOptions.batch_size}")
    bench.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    bench.add_argument("--arch", default="vit_nano", help="backbone (default vit_nano)")
    bench.add_argument("--image-size", type=int, default=BenchOptions.image_size,
                       help=f"default {BenchOptions.image_size}")
    bench.add_argument("--patch-size", type=int, default=4, help="default 4")
    bench.add_argument("--out", default="runs/bench", help="output directory (default "
                       "runs/bench); runs go to OUT/runs/METHOD-STEPS (with --budget: "
                       "OUT/runs/METHOD)")
    bench.add_argument("--precision", default=BenchOptions.precision, choices=BENCH_PRECISIONS,
                       help="every run's precision, as train.precision (default bf16-native: "
                       "bf16 autocast where the device computes bf16 natively, a GPU or a CPU "
                       "with AVX512-BF16 or AMX, else fp32; auto: bf16 on GPUs only)")
    bench.add_argument("--ceiling", action="store_true", help="add a supervised model "
                       "trained for the same budget (one more training run)")
    from jepalab.envs import ENVS
    from jepalab.envs.collect import POLICIES
    from jepalab.world.evaluate import ACTION_BLOCKS, COSTS, PlanSettings
    from jepalab.world.planners import PLANNERS
    from jepalab.world.protocol import LEWM_GOAL_OFFSET, PROTOCOLS

    collect = verbs.add_parser("collect", help="run a policy in an environment and write its "
                               "episodes (frames, actions, proprio) to HDF5")
    collect.add_argument("env", choices=list(ENVS))
    collect.add_argument("--episodes", type=int, default=100, help="default 100")
    collect.add_argument("--steps", type=int, default=0, help="steps per episode (default: "
                         "the env's episode budget)")
    collect.add_argument("--policy", choices=POLICIES, default="random")
    collect.add_argument("--noise", type=float, help="noisy-expert: std of the "
                         "Gaussian noise added to the expert's action (default 0.5)")
    collect.add_argument("--speed", type=float, help="noisy-expert: the largest norm of "
                         "the expert's action before the noise (default: as it acts; "
                         "pusht --speed 0.25 --noise 0.1 moves as the anchors' PushT data)")
    collect.add_argument("--hold", type=float, help="random: mean number of steps "
                         "an action is held (a new one with probability 1/HOLD each step; "
                         "default 5, a walk that goes places; 1: a new action every step, "
                         "stable-worldmodel's random policy, whose Reacher data the anchors "
                         "evaluate on)")
    collect.add_argument("--size", type=int, default=64, help="pixels per side (default 64)")
    collect.add_argument("--seed", type=int, default=0)
    collect.add_argument("--out", default="", help="HDF5 file (default data/ENV-POLICY.h5)")

    plan = verbs.add_parser("plan", help="plan with a world model in an environment on fixed "
                            "start/goal episodes: success (95%% interval), ms per plan, beside "
                            "random actions; a GIF of the first episodes")
    plan.add_argument("env", choices=list(ENVS))
    plan.add_argument("--model", required=True, help="a world-model run directory")
    plan.add_argument("--episodes", type=int, default=PlanSettings.episodes)
    plan.add_argument("--planner", choices=list(PLANNERS), default=PlanSettings.planner)
    plan.add_argument("--protocol", choices=PROTOCOLS, default="jepalab",
                      help="jepalab: random starts and goals, the env's test and budget "
                      "(default); lewm: LeWorldModel's, start and goal 25 steps apart in "
                      "held-out expert episodes (--expert-data), its success test, 50 steps")
    plan.add_argument("--expert-data", default="", help="--protocol lewm: a `jepalab collect "
                      "ENV --policy noisy-expert --seed S` file the model was not trained on")
    plan.add_argument("--goal-offset", type=int, default=LEWM_GOAL_OFFSET,
                      help="--protocol lewm: env steps from start to goal (default 25)")
    plan.add_argument("--budget", type=int, default=0,
                      help="env steps per episode (default: the protocol's)")
    plan.add_argument("--cost", choices=COSTS, default=None,
                      help="distance to the goal at the last block, summed over the plan, "
                      "summed with weights rising to the last block (ramp), or along the "
                      "training data's graph (default: sum; lewm: last)")
    plan.add_argument("--action-block", choices=ACTION_BLOCKS, default=None,
                      help="repeat: one action held over each block; distinct: frameskip "
                      "actions per block, LeWM's (default: repeat; lewm: distinct)")
    plan.add_argument("--planner-option", action="append", default=[], metavar="KEY=VALUE",
                      help="a planner setting, e.g. samples=400 elites=10 iterations=10 "
                      "(V-JEPA 2-AC's CEM; default LeWM's 300, 30, 30), min_std=0.05 (the "
                      "CEM's floor under its std; lewm: 0, as LeWM's CEM)")
    plan.add_argument("--horizon", type=int, default=PlanSettings.horizon, help="blocks ahead")
    plan.add_argument("--execute", type=int, default=None,
                      help="blocks executed before replanning (default 1; lewm: all)")
    plan.add_argument("--seed", type=int, default=0, help="which fixed episodes (default 0)")
    plan.add_argument("--compile", action="store_true", help="torch.compile the world model's "
                      "rollout: the same plans, faster once compiled (about a minute per "
                      "context length on 2 cores)")
    plan.add_argument("--gif", type=int, default=3, help="episodes in the GIF (default 3)")
    plan.add_argument("--no-random", action="store_true", help="skip the random baseline")
    plan.add_argument("--out", default="", help="default RUN_DIR/plan-ENV-PROTOCOL-PLANNER-"
                      "COST-ACTIONBLOCK, then each setting that is not the protocol's "
                      "default (e.g. -h2-samples400) and, for lewm, -on-EXPERTFILE")
    export = verbs.add_parser("export", help="write a run's evaluation encoder alone to one "
                              "safetensors file (timm's names; --format timm adds how to "
                              "rebuild it in timm)")
    export.add_argument("run_dir", help="a run directory (its newest checkpoint)")
    export.add_argument("--format", default="safetensors", choices=("safetensors", "timm"))
    export.add_argument("--out", default="", help="default RUN_DIR/encoder-FORMAT.safetensors")
    vqa = verbs.add_parser("vqa", help="video question answering on a video run's frozen "
                           "tokens beside random init and a question-only model, overall "
                           "and per question type")
    vqa.add_argument("run_dir", help="a video run directory (e.g. from `jepalab train "
                     "vjepa-moving-shapes`)")
    vqa.add_argument("--seeds", type=int, default=2, help="random-init seeds (default 2)")
    vqa.add_argument("--per-frame", metavar="IMAGE_RUN", help="also an image encoder trained "
                     "on single frames, read on every frame and averaged over time")
    report = verbs.add_parser("report", help="one self-contained HTML page of a run: config, "
                              "curves, collapse diagnostics, probes or planning")
    report.add_argument("run_dir")
    report.add_argument("--compare", nargs="*", default=[], metavar="RUN_DIR",
                        help="other runs whose curves are drawn over this one's")
    report.add_argument("--out", default="", help="default RUN_DIR/report.html")
    for sub in (quick, train, probe, bench, collect, plan, vqa):
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.verb != "train":  # only `train` takes key=value items, in any position
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.verb == "train":
        args.items = list(args.items) + extra
    from jepalab.errors import UserError
    from jepalab.memory import keep_freed_memory

    keep_freed_memory()  # a planner's rollouts fault in every page anew otherwise
    handlers = {"train": cmd_train, "probe": cmd_probe, "quickstart": cmd_quickstart,
                "bench": cmd_bench, "collect": cmd_collect, "plan": cmd_plan,
                "export": cmd_export, "report": cmd_report, "vqa": cmd_vqa}
    try:
        return handlers[args.verb](args)
    except UserError as e:  # bad input: the message names it and what would be valid
        print(f"jepalab {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the user gave: missing, unreadable, a full disk
        print(f"jepalab {args.verb}: error: {e.strerror or e}"
              + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug in jepalab: never hidden, shown whole with where to send it
        traceback.print_exc()
        print(f"jepalab {args.verb}: this is a bug in jepalab, not in your input; please report "
              "it with the command line and the traceback above", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
