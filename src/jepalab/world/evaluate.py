"""Goal-reaching evaluation: plan in latent space, act in the environment, count successes.

Which episodes: `PlanSettings.protocol` (world/protocol.py). Ours ("jepalab"): episode i
resets the environment with seed `10_000_000 + 1000 * seed + i` and the environment's
`episode_options(i)` (Two-Room: odd episodes cross the door), so every model, planner and
baseline meets the same starts and goals. The anchors' ("lewm"): start and goal states
drawn from a held-out expert file, the anchors' success test, a 50-step budget.
Model-predictive control: encode the current frame (with up to `history` frames of
context), plan `horizon` blocks, execute the first `execute` of them, replan; until
success or the budget runs out. A block is `frameskip` env steps: one action repeated
(`action_block="repeat"`, the planner searches A numbers per block) or `frameskip`
distinct actions (`"distinct"`, LeWM's: A * frameskip numbers per block).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from jepalab.config import ConfigError
from jepalab.errors import RunKindError
from jepalab.world import plan_rollout
from jepalab.world.planners import make_planner
from jepalab.world.protocol import (
    LEWM_BUDGET,
    LEWM_GOAL_OFFSET,
    PROTOCOLS,
    ExpertGoals,
    check_not_trained_on,
)

LATENT_COSTS = ("last", "sum", "ramp", "l1")   # what latent_cost scores
COSTS = LATENT_COSTS + ("graph",)
ACTION_BLOCKS = ("repeat", "distinct")


@dataclass
class PlanSettings:
    planner: str = "cem"
    horizon: int = 5          # blocks planned ahead
    execute: int = 1          # blocks executed before replanning
    cost: str = "sum"         # "last": latent distance at the last block; "sum": summed over
                              # the blocks; "ramp": summed, weighted 1..H; "l1": L1 at the
                              # last block; "graph": blocks to the goal on the data's graph
                              # (world/graph.py), summed
    episodes: int = 50
    seed: int = 0
    action_block: str = "repeat"  # one action held over a block, or frameskip distinct ones
    protocol: str = "jepalab"     # which episodes (world/protocol.py)
    expert_data: str = ""         # protocol "lewm": the held-out expert file
    goal_offset: int = LEWM_GOAL_OFFSET  # protocol "lewm": env steps from start to goal
    budget: int = 0               # env steps per episode (0: the protocol's)
    planner_options: dict = field(default_factory=dict)
    compile: bool = False         # torch.compile the rollout (the same plans, faster after
                                  # a compile per context length; README: plan time)

    def validate(self) -> None:
        if self.cost not in COSTS:
            raise ConfigError(f"--cost must be one of {', '.join(COSTS)}, got {self.cost!r}")
        if self.action_block not in ACTION_BLOCKS:
            raise ConfigError(f"--action-block must be one of {', '.join(ACTION_BLOCKS)}, got "
                              f"{self.action_block!r}")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got "
                              f"{self.protocol!r}")
        if self.protocol == "lewm" and not self.expert_data:
            raise ConfigError("--protocol lewm needs --expert-data FILE.h5: held-out episodes "
                              "of `jepalab collect ENV --policy noisy-expert --seed S` (a seed "
                              "the training data did not use)")
        if self.goal_offset < 1:
            raise ConfigError(f"--goal-offset must be >= 1 env steps, got {self.goal_offset}")
        if self.budget < 0:
            raise ConfigError(f"--budget must be >= 0 env steps (0: the protocol's), got "
                              f"{self.budget}")
        if not 1 <= self.execute <= self.horizon:
            raise ConfigError(f"--execute must be in [1, --horizon {self.horizon}], got "
                              f"{self.execute}")
        if self.episodes < 1:
            raise ConfigError(f"--episodes must be >= 1, got {self.episodes}")
        if self.horizon < 1 or self.seed < 0:
            raise ConfigError(f"--horizon must be >= 1 and --seed >= 0, got {self.horizon} "
                              f"and {self.seed}")


def folder_name(env: str, settings: PlanSettings) -> str:
    """`jepalab plan`'s default output folder: plan-ENV-PROTOCOL-PLANNER-COST-ACTIONBLOCK, then
    every setting that is not the protocol's default (e.g. -h2-samples400-seed1), -compiled
    for a compiled rollout (the same plans, other times a plan) and, for the anchors'
    protocol, the expert file's name (-on-FILE), so runs with different settings never
    write over each other's results."""
    name = (f"plan-{env}-{settings.protocol}-{settings.planner}-{settings.cost}-"
            f"{settings.action_block}")
    if settings.horizon != PlanSettings.horizon:
        name += f"-h{settings.horizon}"
    default = protocol_settings(settings.protocol, horizon=settings.horizon,
                                planner=settings.planner)
    tags = {"execute": "x", "episodes": "n", "seed": "seed", "budget": "budget",
            "goal_offset": "goal"}
    for key, tag in tags.items():
        if getattr(settings, key) != getattr(default, key):
            name += f"-{tag}{getattr(settings, key)}"
    for key, value in sorted(settings.planner_options.items()):
        if default.planner_options.get(key) != value:
            name += f"-{key}{value:g}"
    if settings.compile:
        name += "-compiled"
    if settings.protocol == "lewm":  # whose starts and goals
        name += f"-on-{Path(settings.expert_data).stem}"
    return name


def protocol_settings(protocol: str, **given) -> PlanSettings:
    """PlanSettings with what `given` leaves None taken from the protocol: the anchors'
    ("lewm") plan with LeWM's cost at the last block, execute the whole plan (5 blocks of 5
    distinct actions: 25 steps) and replan, and LeWM's CEM (stable-worldmodel's CEMSolver)
    puts no floor under its std; ours defaults to the summed cost, one repeated action per
    block, replanning after every block and a std floor of 0.05. Planner options given are
    laid over the protocol's. (validate() checks the result.)"""
    lewm = protocol == "lewm"
    horizon = given.get("horizon") or PlanSettings.horizon
    planner = given.get("planner") or PlanSettings.planner
    defaults = {"cost": "last" if lewm else PlanSettings.cost,
                "execute": horizon if lewm else PlanSettings.execute,
                "action_block": "distinct" if lewm else PlanSettings.action_block,
                "planner_options": {"min_std": 0.0} if lewm and planner == "cem" else {}}
    chosen = {key: value for key, value in given.items() if value is not None}
    chosen["planner_options"] = defaults["planner_options"] | chosen.get("planner_options", {})
    return PlanSettings(protocol=protocol, **(defaults | chosen))


def episode_seed(seed: int, index: int) -> int:
    return 10_000_000 + 1000 * seed + index


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def latent_cost(predicted: torch.Tensor, goal: torch.Tensor, mode: str) -> torch.Tensor:
    """predicted (N, H, T, D) latents, goal (T, D) -> (N,): mean squared distance at the last
    block ("last", LeWM's), summed over the blocks ("sum"), or summed with weights rising
    1, 2, .., H to the last block ("ramp": near blocks count, the end most), or mean absolute
    distance at the last block ("l1", V-JEPA 2-AC's energy over the last frame's tokens)."""
    if mode == "l1":
        return (predicted[:, -1] - goal).abs().mean(dim=(-1, -2))
    distance = (predicted - goal).square().mean(dim=(-1, -2))        # (N, H)
    if mode == "last":
        return distance[:, -1]
    if mode == "ramp":
        weights = torch.arange(1, distance.shape[1] + 1, device=distance.device,
                               dtype=distance.dtype)
        return (distance * weights).sum(dim=1)
    if mode == "sum":
        return distance.sum(dim=1)
    raise ValueError(f"unknown latent cost {mode!r}; valid: {', '.join(LATENT_COSTS)}")


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None]


class Agent:
    """Plans with a world model; `act(obs)` returns the blocks to execute next."""

    def __init__(self, model, settings: PlanSettings, action_dim: int, frameskip: int,
                 graph=None):
        if settings.cost == "graph" and graph is None:
            raise ValueError("the graph cost needs a TemporalGraph of the training data")
        self.model, self.settings, self.graph = model, settings, graph
        self.action_dim, self.frameskip = action_dim, frameskip
        distinct = settings.action_block == "distinct"
        self.plan_dim = action_dim * frameskip if distinct else action_dim
        self.planner = make_planner(settings.planner, **settings.planner_options)
        # fixed shapes: one graph per context length (1 .. history frames), each compiled once
        self.rollout = torch.compile(plan_rollout, dynamic=False) if settings.compile \
            else plan_rollout

    def reset(self, obs: dict) -> None:
        """A new episode whose goal is the observation's ("goal" image, "goal_proprio")."""
        self.goal = self._encode(obs["goal"], obs["goal_proprio"])[0]
        if self.graph is not None:
            self.graph.set_goal(self.goal)
        self.latents, self.blocks, self.warm = [], [], None

    def observe(self, obs: dict, block: torch.Tensor | None) -> None:
        """The observation reached (after `block`, the block action taken before it, if any)."""
        self.latents.append(self._encode(obs["pixels"], obs["proprio"]))
        if block is not None:
            self.blocks.append(block[None])
        keep = self.model.history
        self.latents = self.latents[-keep:]
        self.blocks = self.blocks[len(self.blocks) - (len(self.latents) - 1):]

    def _encode(self, pixels: np.ndarray, proprio: np.ndarray) -> torch.Tensor:
        return self.model.encode(to_tensor(pixels), torch.from_numpy(proprio)[None])

    def plan(self) -> torch.Tensor:
        """The next `execute` block actions, (execute, frameskip * A)."""
        s = self.settings
        context = torch.cat(self.latents, dim=0)[None]                 # (1, k, T, D)
        past = (torch.cat(self.blocks, dim=0)[None] if self.blocks
                else context.new_zeros(1, 0, self.action_dim * self.frameskip))

        def cost(plans: torch.Tensor) -> torch.Tensor:
            predicted = self.rollout(self.model, context, past, self.block(plans))
            if s.cost == "graph":
                return self.graph.cost(predicted).sum(dim=1)
            return latent_cost(predicted, self.goal, s.cost)

        plan = self.planner.plan(cost, s.horizon, self.plan_dim, mean=self.warm)
        self.warm = torch.cat([plan[s.execute:], torch.zeros(s.execute, self.plan_dim)])
        return self.block(plan[:s.execute])

    def block(self, actions: torch.Tensor) -> torch.Tensor:
        """(..., plan_dim) planned actions -> (..., frameskip * A) block actions: the action
        repeated, or already `frameskip` distinct ones."""
        if self.plan_dim != self.action_dim:
            return actions
        return actions.repeat(*([1] * (actions.ndim - 1)), self.frameskip)


@dataclass
class EpisodeResult:
    index: int
    category: str
    success: bool
    steps: int
    plan_ms: list[float]
    closest: float | None = None   # the smallest env.goal_error reached (goals set from states)


def run_episode(env, index: int, options: dict, seed: int, frameskip: int,
                agent: Agent | None, rng: np.random.Generator,
                frames: list | None = None) -> EpisodeResult:
    """One episode from reset `options`, until success or `env.max_episode_steps`; `agent`
    None is the random baseline (a uniform action per block, held over it)."""
    obs, info = env.reset(seed=episode_seed(seed, index), options=options)
    success, steps, plan_ms = info["success"], 0, []
    closest = env.goal_error()
    if agent is not None:
        agent.reset(obs)
        agent.observe(obs, None)
    if frames is not None:
        frames.append(np.concatenate([obs["pixels"], obs["goal"]], axis=1))
    budget = env.max_episode_steps
    while not success and steps < budget:
        if agent is None:
            action = rng.uniform(-1, 1, env.action_space.shape)
            blocks = torch.from_numpy(np.tile(action, frameskip)).float()[None]
        else:
            began = time.perf_counter()
            blocks = agent.plan()
            plan_ms.append(1000 * (time.perf_counter() - began))
        for block in blocks:
            for action in block.view(frameskip, -1):
                obs, _, terminated, truncated, info = env.step(action.numpy())
                steps += 1
                if closest is not None:
                    closest = min(closest, env.goal_error())
                if frames is not None:
                    frames.append(np.concatenate([obs["pixels"], obs["goal"]], axis=1))
                if terminated or truncated:
                    break
            success = info["success"]
            if success or steps >= budget:
                break
            if agent is not None:
                agent.observe(obs, block)
    category = "all"
    if "cross_door" in options:
        category = "cross-door" if options["cross_door"] else "same-room"
    return EpisodeResult(index, category, bool(success), steps, plan_ms, closest)


def summarise(name: str, results: list[EpisodeResult]) -> dict:
    """Success rate with its 95% interval, overall and per category; plan times."""
    row = {"name": name}
    groups = {"all": results}
    for r in results:
        if r.category != "all":
            groups.setdefault(r.category, []).append(r)
    for key, group in groups.items():
        wins = sum(r.success for r in group)
        low, high = wilson(wins, len(group))
        row[key] = {"success": wins / len(group), "ci95": [low, high], "episodes": len(group)}
    row["solved_at_start"] = sum(r.success and r.steps == 0 for r in results)
    times = [t for r in results for t in r.plan_ms]
    row["plan_ms_median"] = float(np.median(times)) if times else 0.0
    row["plan_ms_p90"] = float(np.percentile(times, 90)) if times else 0.0
    row["plans"] = len(times)
    closest = [r.closest for r in results if r.closest is not None]
    if closest:  # how near the misses came, in the success test's tolerances (< 1: reached)
        row["closest_median"] = float(np.median(closest))
    return row


def evaluate(env, agent: Agent | None, settings: PlanSettings, frameskip: int, name: str,
             gif: Path | None = None, gif_episodes: int = 3, progress=None,
             episode_options=None) -> dict:
    """Run `settings.episodes` fixed-seed episodes (episode i reset with
    `episode_options(i)`, by default the environment's own); return the summary row."""
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    episode_options = episode_options or env.episode_options
    results, movie = [], []
    for i in range(settings.episodes):
        frames = movie if gif is not None and i < gif_episodes else None
        results.append(run_episode(env, i, episode_options(i), settings.seed, frameskip, agent,
                                   rng, frames))
        if progress is not None:
            progress(i + 1, results)
    if gif is not None and movie:
        write_gif(gif, movie)
    row = summarise(name, results)
    row["settings"] = asdict(settings)
    row["episodes_detail"] = [asdict(r) | {"plan_ms": None} for r in results]
    return row


def write_gif(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    """The episodes' frames (H, W, 3), upscaled (nearest) to about 128 px high, as a GIF."""
    from jepalab import figures

    path.parent.mkdir(parents=True, exist_ok=True)
    scale = figures.upscale_factor(frames[0].shape[0])
    figures.write_gif(np.stack(frames).repeat(scale, 1).repeat(scale, 2), path,
                      frame_ms=1000 // fps)


def save(path: Path, rows: list[dict]) -> None:
    from jepalab.checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(rows, indent=1))


def plan_table(rows: list[dict]):
    """A rich table: success with its 95% interval, per category, and plan times."""
    from rich.table import Table

    categories = [k for k in ("same-room", "cross-door") if any(k in r for r in rows)]
    table = Table(title="goal reaching (success %, 95% interval)")
    closest = ["closest (median)"] if any("closest_median" in r for r in rows) else []
    for column in ("model / planner", "success", *categories, "solved at start", *closest,
                   "ms/plan (median)", "p90"):
        table.add_column(column, justify="left" if column == "model / planner" else "right")

    def cell(entry: dict | None) -> str:
        if entry is None:
            return "-"
        low, high = entry["ci95"]
        return (f"{100 * entry['success']:.0f} [{100 * low:.0f}, {100 * high:.0f}] "
                f"(n={entry['episodes']})")

    for row in rows:
        timed = row["plans"] > 0
        table.add_row(row["name"], cell(row["all"]), *(cell(row.get(c)) for c in categories),
                      str(row.get("solved_at_start", "-")),
                      *([f"{row['closest_median']:.2f}"] if closest else []),
                      f"{row['plan_ms_median']:.0f}" if timed else "-",
                      f"{row['plan_ms_p90']:.0f}" if timed else "-")
    return table


def run_plan(env_name: str, model_dir: str | Path, settings: PlanSettings, *, out: Path,
             random_baseline: bool = True, gif_episodes: int = 3,
             show_progress: bool = True) -> list[dict]:
    """`jepalab plan`: evaluate a world model (and the random baseline) on fixed episodes;
    write OUT/plan.json and OUT/episodes.gif; return the rows."""
    from jepalab.envs import make
    from jepalab.progress import Bar, console
    from jepalab.world import load_world_model

    settings.validate()
    model, data = load_world_model(model_dir)
    if data["env"] != env_name:
        raise RunKindError(f"{model_dir} was trained on {data['env']!r} data, not "
                           f"{env_name!r}; plan {data['env']} with it, or give a model of "
                           f"{env_name}")
    env = make(env_name, **data["env_kwargs"])
    frameskip = data["frameskip"]
    episode_options = None
    if settings.protocol == "lewm":
        check_not_trained_on(settings.expert_data, data["path"])
        goals = ExpertGoals.sample(settings.expert_data, env_name, episodes=settings.episodes,
                                   goal_offset=settings.goal_offset, seed=settings.seed)
        episode_options = goals.options
    env.max_episode_steps = settings.budget or (
        LEWM_BUDGET if settings.protocol == "lewm" else env.max_episode_steps)
    torch.set_grad_enabled(settings.planner == "gradient")
    name = (f"{Path(model_dir).name} / {settings.planner} ({settings.cost} cost, "
            f"{settings.action_block} actions)")
    graph = None
    if settings.cost == "graph":
        from jepalab.world.graph import TemporalGraph

        graph = TemporalGraph.from_trajectories(model, data["path"], frameskip)
    agent = Agent(model, settings, data["action_dim"], frameskip, graph)
    runs = [(name, agent, out / "episodes.gif")]
    if random_baseline:
        runs.append(("random actions", None, None))
    rows = []
    for label, agent, gif in runs:
        with Bar(label, settings.episodes, enabled=show_progress, every=0) as bar:

            def progress(done, results, bar=bar):  # off a terminal, a line an episode
                bar.update(done, f"{sum(r.success for r in results)}/{done} reached")

            rows.append(evaluate(env, agent, settings, frameskip, label, gif=gif,
                                 gif_episodes=gif_episodes, progress=progress,
                                 episode_options=episode_options))
    torch.set_grad_enabled(True)
    if hasattr(env, "close"):
        env.close()
    out.mkdir(parents=True, exist_ok=True)
    save(out / "plan.json", rows)
    console().print(plan_table(rows))
    return rows
