"""The planner's own ceiling under the anchors' protocol: a CEM with the simulator itself as
the world model, on Reacher (MuJoCo) or PushT (pymunk).

    MUJOCO_GL=egl python benchmarks/oracle_planning.py --expert-data FILE.h5
    MUJOCO_GL=egl python benchmarks/oracle_planning.py --expert-data FILE.h5 --min-std 0
    MUJOCO_GL=egl python benchmarks/oracle_planning.py --expert-data FILE.h5 --min-std 0 \
        --horizon 2 --samples 400 --elites 10 --iterations 10   # V-JEPA 2-AC's CEM
    MUJOCO_GL=egl python benchmarks/oracle_planning.py --expert-data FILE.h5 --min-std 0 \
        --execute 1                                # replan after every block
    python benchmarks/oracle_planning.py --env pusht --expert-data FILE.h5 --min-std 0 --workers 2
    python benchmarks/oracle_planning.py --env pusht --expert-data FILE.h5 --min-std 0 --workers 2 \
        --action-block repeat                                    # one action held 5 steps
    python benchmarks/oracle_planning.py --env pusht --expert-data FILE.h5 --min-std 0 \
        --state-model TRAIN.h5                    # an MLP learned from TRAIN's states instead

Under the anchors' protocol (`jepalab plan ENV --protocol lewm`: start and goal 25 steps
apart in a held-out file, the anchors' state test, 50 steps, 5 blocks of 5 distinct actions
planned, all 25 executed, then replanned) a world model can do no better than its planner
does with a perfect model. Here every CEM candidate is rolled out in the simulator from the
true state and scored by the state's distance to the goal's at the plan's last step, in
units of the success test's tolerances: LeWM's `last` cost, in the state space instead of a
latent one. Reacher: the squared joint-angle errors over 0.05 rad (the shoulder's the short
way round), candidates rolled out in C (`mujoco.rollout`). PushT: the squared 4-vector of
agent and T position errors over 20 units plus the squared T angle error over pi/9, each
candidate stepped in Python (`--workers` processes share them). Same episodes as `jepalab
plan` (ExpertGoals with the same seed), same success test. One row per `--min-std` (the
CEM's floor under its std: 0 is LeWM's CEM and the protocol's default, 0.05 ours), side by
side. `--horizon`, `--samples`, `--elites` and `--iterations` set another CEM (V-JEPA
2-AC's: 2 blocks, 400, 10, 10); the whole plan is executed before replanning, as the
protocol does, or with `--execute K` its first K blocks, the next plan warm-started from the
rest (as `jepalab plan --execute K`); `--cost sum` scores the error at every block's end,
summed, as `jepalab plan`'s default cost does, `--cost ramp` the same weighted 1, 2, .., H
(`jepalab plan`'s costs, `latent_cost`, on the state errors). "closest" is the smallest
distance to the goal state an episode reached, in tolerances: below 1 is success. With
`--state-model` PushT's candidates are rolled out by an MLP learned from a training file's
simulator states (LearnedPushT): planning with a model that needs no pixels, learned from
the same episodes as the world models, so the gap from the simulator's row is what learning
the dynamics from that data costs.
"""
from __future__ import annotations

import argparse
import functools
import time
from concurrent.futures import ProcessPoolExecutor

import h5py
import mujoco
import mujoco.rollout
import numpy as np
import torch

from jepalab.envs import make
from jepalab.envs.base import wrap_angle
from jepalab.envs.pusht import ANGLE_TOL, ARENA, POSITION_TOL
from jepalab.envs.reacher import ACTION_REPEAT, QPOS_TOLERANCE, joint_error
from jepalab.world.evaluate import LATENT_COSTS, latent_cost, wilson
from jepalab.world.planners import CEM
from jepalab.world.protocol import LEWM_BUDGET, LEWM_GOAL_OFFSET, ExpertGoals

BLOCK = 5                                 # LeWM's action block: 5 distinct actions


class Reacher:
    """Candidates rolled out in MuJoCo from the full physics state."""

    SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS

    def __init__(self, env):
        self.env = env

    def snapshot(self):
        physics = self.env.physics
        start = np.empty(mujoco.mj_stateSize(physics.model.ptr, self.SPEC))
        mujoco.mj_getState(physics.model.ptr, physics.data.ptr, start, self.SPEC)
        return start

    def errors(self, start, actions: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """(N, blocks, k) errors at the end of each block of each action sequence (N, T, A),
        in tolerances."""
        physics = self.env.physics
        states, _ = mujoco.rollout.rollout(physics.model.ptr, physics.data.ptr, start,
                                           np.repeat(actions, ACTION_REPEAT, axis=1))
        every = BLOCK * ACTION_REPEAT                      # physics steps a block
        ends = states[:, every - 1::every, 1:3]            # full-physics state: time, qpos, ...
        return joint_error(ends, goal[:2]) / QPOS_TOLERANCE


def _pusht_error(states: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """(N, 5) PushT states' errors from the goal's in tolerances: agent and T positions over
    20 units, the T's angle (the short way round) over pi/9."""
    return np.concatenate([(states[:, :4] - goal[:4]) * ARENA / POSITION_TOL,
                           wrap_angle(states[:, 4:5] - goal[4]) / ANGLE_TOL], axis=1)


@functools.cache
def _simulator():
    """This process's own PushT to step candidates in."""
    return make("pusht", size=8)


def _pusht_rollouts(start, actions: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """PushT's errors (N, blocks, 5) at the end of each block of each action sequence
    (N, T, A), stepped from `start` in a private environment (one per process)."""
    sim = _simulator()
    ends = np.empty((len(actions), actions.shape[1] // BLOCK, len(goal)))
    for row, sequence in enumerate(actions):
        sim.restore(start)
        for step, action in enumerate(sequence):
            sim._apply(action)                             # the physics step alone, no pixels
            if (step + 1) % BLOCK == 0:
                ends[row, step // BLOCK] = sim.state()
    return _pusht_error(ends.reshape(-1, len(goal)), goal).reshape(*ends.shape[:2], -1)


class PushT:
    """Candidates stepped in pymunk from the whole state, shared among `workers` processes."""

    def __init__(self, env, workers: int):
        self.env = env
        self.pool = ProcessPoolExecutor(workers) if workers > 1 else None
        self.workers = workers

    def snapshot(self):
        return self.env.state()

    def errors(self, start, actions: np.ndarray, goal: np.ndarray) -> np.ndarray:
        if self.pool is None:
            return _pusht_rollouts(start, actions, goal)
        parts = np.array_split(actions, self.workers)
        return np.concatenate(list(self.pool.map(_pusht_rollouts, [start] * len(parts), parts,
                                                 [goal] * len(parts))))


class LearnedPushT(PushT):
    """PushT's candidates rolled out by an MLP learned from a data set's simulator states
    (`--state-model FILE.h5`): what a model that needs no pixels learns of the dynamics from
    the same episodes the world models train on. Input: agent and T positions, the T's angle
    as (cos, sin), the agent's velocity, the action; output: the change of the state (the
    angle's the short way round), all standardised; trained on `UNROLL`-step open-loop
    rollouts so that its own errors are in what it learns from."""

    UNROLL, BATCH, WIDTH = 5, 256, 256

    def __init__(self, env, path: str, steps: int = 3000):
        super().__init__(env, workers=1)
        with h5py.File(path, "r") as f:
            states = torch.from_numpy(f["state"][:]).float()
            actions = torch.from_numpy(f["actions"][:]).float()
            starts = f["episode_starts"][:]
        ends = np.repeat(starts[1:], np.diff(starts))           # each row's episode end
        self.rows = torch.from_numpy(np.nonzero(np.arange(len(ends)) + self.UNROLL < ends)[0])
        inputs, changes = self._inputs(states[:-1], actions[:-1]), self._change(states[:-1],
                                                                                states[1:])
        self.in_mean, self.in_std = inputs.mean(0), inputs.std(0) + 1e-6
        self.out_mean, self.out_std = changes.mean(0), changes.std(0) + 1e-6
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(inputs.shape[1], self.WIDTH), torch.nn.SiLU(),
            torch.nn.Linear(self.WIDTH, self.WIDTH), torch.nn.SiLU(),
            torch.nn.Linear(self.WIDTH, self.WIDTH), torch.nn.SiLU(),
            torch.nn.Linear(self.WIDTH, changes.shape[1]))
        optimiser = torch.optim.AdamW(self.net.parameters(), lr=1e-3)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
        for _ in range(steps):
            row = self.rows[torch.randint(len(self.rows), (self.BATCH,))]
            state, loss = states[row], 0.0
            for k in range(self.UNROLL):
                state = self.step(state, actions[row + k])
                loss = loss + self._scaled(state, states[row + k + 1]).square().mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        self.net.requires_grad_(False)

    @staticmethod
    def _inputs(states, actions):
        angle = states[:, 4:5]
        return torch.cat([states[:, :4], angle.cos(), angle.sin(), states[:, 5:], actions], 1)

    @staticmethod
    def _change(before, after):
        change = after - before
        change[:, 4] = wrap_angle(change[:, 4])
        return change

    def _scaled(self, state, target):
        return self._change(target, state) / self.out_std

    def step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        inputs = (self._inputs(states, actions) - self.in_mean) / self.in_std
        return states + self.net(inputs) * self.out_std + self.out_mean

    def errors(self, start, actions: np.ndarray, goal: np.ndarray) -> np.ndarray:
        state = torch.as_tensor(start, dtype=torch.float32).expand(len(actions), -1)
        actions = torch.as_tensor(actions, dtype=torch.float32)
        ends = []
        for k in range(actions.shape[1]):
            state = self.step(state, actions[:, k])
            if (k + 1) % BLOCK == 0:
                ends.append(_pusht_error(state.double().numpy(), goal))
        return np.stack(ends, axis=1)


def episode(env, simulator, options: dict, planner: CEM, blocks: int, repeat: bool,
            execute: int | None = None, cost_mode: str = "last") -> tuple[bool, float]:
    """One episode under the anchors' protocol; (success, smallest distance to the goal).
    A block is 5 distinct actions (LeWM's), or with `repeat` one action held 5 steps; the
    first `execute` blocks of each plan are taken before replanning (None: all, LeWM's)."""
    goal = np.asarray(options["goal_state"])
    env.reset(seed=0, options=options)
    steps, success, closest = 0, env.succeeded(), env.state_error(goal)
    action_dim = env.action_space.shape[0]
    taken, warm = execute or blocks, None
    while not success and steps < LEWM_BUDGET:
        start = simulator.snapshot()

        def steps_of(plans: torch.Tensor) -> torch.Tensor:
            """(N, blocks * 5, A) env actions of (N, blocks, block width) plans."""
            if repeat:
                plans = plans.repeat_interleave(BLOCK, dim=1)
            return plans.reshape(len(plans), blocks * BLOCK, action_dim).clamp(-1, 1)

        def cost(plans: torch.Tensor, start=start) -> torch.Tensor:
            error = simulator.errors(start, steps_of(plans).double().numpy(), goal)
            error = torch.from_numpy(error).float()[:, :, None]    # (N, blocks, 1 token, k)
            return latent_cost(error, torch.zeros(1, error.shape[-1]), cost_mode)

        plan = planner.plan(cost, blocks, action_dim if repeat else BLOCK * action_dim, warm)
        warm = torch.cat([plan[taken:], torch.zeros(taken, plan.shape[1])])  # as jepalab plan
        for action in steps_of(plan[None])[0][:taken * BLOCK]:
            _, _, done, _, info = env.step(action.numpy())
            steps += 1
            closest = min(closest, env.state_error(goal))
            if done or steps >= LEWM_BUDGET:
                break
        success = info["success"]
    return bool(success), float(closest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", choices=("reacher", "pusht"), default="reacher")
    parser.add_argument("--expert-data", required=True, help="a `jepalab collect ENV` file "
                        "(what `jepalab plan --protocol lewm --expert-data` reads)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="which episodes (as jepalab plan)")
    parser.add_argument("--min-std", type=float, nargs="+", default=[0.0, 0.05])
    parser.add_argument("--init-std", type=float, default=1.0, help="the CEM's first std "
                        "(LeWM samples actions standardised by the data's std: uniform random "
                        "torques have std 0.577, so its first std is 0.577 in torque units)")
    parser.add_argument("--horizon", type=int, default=5, help="blocks planned (LeWM: 5)")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--elites", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--execute", type=int, help="blocks of each plan taken before "
                        "replanning (default: the whole plan, as the protocol does)")
    parser.add_argument("--cost", choices=LATENT_COSTS, default="last",
                        help="the squared error at the plan's last block (LeWM's), summed over "
                        "its blocks (jepalab plan's default), summed with weights 1..H "
                        "rising to the last, or the absolute error at the last block "
                        "(jepalab plan --cost's latent costs)")
    parser.add_argument("--action-block", choices=("distinct", "repeat"), default="distinct",
                        help="a block: 5 distinct actions (LeWM's) or one action held 5 steps")
    parser.add_argument("--state-model", metavar="FILE.h5", help="PushT: plan with an MLP "
                        "learned from this file's simulator states instead of the simulator")
    parser.add_argument("--state-model-steps", type=int, default=3000,
                        help="training steps of the state model (batches of 256)")
    parser.add_argument("--workers", type=int, default=1, help="processes stepping PushT's "
                        "candidates (Reacher's roll out in C on one thread)")
    args = parser.parse_args()
    if args.execute is not None and not 1 <= args.execute <= args.horizon:
        parser.error(f"--execute must be in [1, --horizon={args.horizon}], got {args.execute}")
    torch.set_num_threads(1)
    env = make(args.env, size=16)                  # pixels unused: a small render is cheap
    env.max_episode_steps = LEWM_BUDGET
    if args.state_model:
        if args.env != "pusht":
            parser.error("--state-model is for --env pusht")
        simulator = LearnedPushT(env, args.state_model, args.state_model_steps)
    else:
        simulator = Reacher(env) if args.env == "reacher" else PushT(env, args.workers)
    goals = ExpertGoals.sample(args.expert_data, args.env, episodes=args.episodes,
                               goal_offset=LEWM_GOAL_OFFSET, seed=args.seed)
    title = (f"CEM ({args.samples}, top {args.elites}, {args.iterations} its, std "
             f"{args.init_std:g}, {args.horizon} {args.action_block} blocks"
             + (f", {args.execute} executed" if args.execute else "")
             + (f", {args.cost} cost)" if args.cost != "last" else ")"))
    print(f"{args.env}: {title:<36} {'success %':>16} {'median closest':>15} {'s/episode':>10}")
    for min_std in args.min_std:
        torch.manual_seed(args.seed)
        planner = CEM(args.samples, args.elites, args.iterations, args.init_std, min_std)
        results, began = [], time.perf_counter()
        for i in range(args.episodes):
            results.append(episode(env, simulator, goals.options(i), planner, args.horizon,
                                   args.action_block == "repeat", args.execute, args.cost))
        wins = sum(success for success, _ in results)
        low, high = wilson(wins, args.episodes)
        closest = np.median([c for _, c in results])
        rate = f"{100 * wins / args.episodes:.0f} [{100 * low:.0f}, {100 * high:.0f}]"
        seconds = (time.perf_counter() - began) / args.episodes
        label = f"min_std {min_std:g}"
        print(f"{args.env}: {label:<36} {rate:>16} {closest:>15.2f} {seconds:>10.1f}")


if __name__ == "__main__":
    main()
