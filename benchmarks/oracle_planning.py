"""The planner's own ceiling on Reacher: LeWM's CEM with the simulator itself as the world model.

    MUJOCO_GL=egl python benchmarks/oracle_planning.py --expert-data FILE.h5
    MUJOCO_GL=egl python benchmarks/oracle_planning.py --expert-data FILE.h5 --min-std 0
    MUJOCO_GL=egl python benchmarks/oracle_planning.py --expert-data FILE.h5 --min-std 0 \
        --horizon 2 --samples 400 --elites 10 --iterations 10   # V-JEPA 2-AC's CEM

Under the anchors' protocol (`jepalab plan reacher --protocol lewm`: start and goal 25 steps
apart in a held-out file, both joints within 0.05 rad, 50 steps, 5 blocks of 5 distinct
actions planned, all 25 executed, then replanned) a world model can do no better than its
planner does with a perfect model. Here every CEM candidate is rolled out in MuJoCo from the
arm's true state (`mujoco.rollout`, batched in C) and scored by the squared joint-angle
error at the plan's last step (the shoulder's the short way round): LeWM's `last` cost, in
the state space instead of a latent one. Same episodes as `jepalab plan` (ExpertGoals with
the same seed), same success test. One row per `--min-std` (the CEM's floor under its
std: 0 is LeWM's CEM and the protocol's default, 0.05 ours), side by side. `--horizon`,
`--samples`, `--elites` and `--iterations` set another CEM (V-JEPA 2-AC's: 2 blocks, 400,
10, 10); the whole plan is executed before replanning, as the protocol does.
"""
from __future__ import annotations

import argparse
import time

import mujoco
import mujoco.rollout
import numpy as np
import torch

from jepalab.envs import make
from jepalab.envs.reacher import ACTION_REPEAT, joint_error
from jepalab.world.evaluate import wilson
from jepalab.world.planners import CEM
from jepalab.world.protocol import LEWM_BUDGET, LEWM_GOAL_OFFSET, ExpertGoals

BLOCK = 5                                 # LeWM's action block: 5 distinct actions


def episode(env, options: dict, planner: CEM, blocks: int) -> tuple[bool, float]:
    """One episode under the anchors' protocol; (success, smallest max-joint error seen)."""
    model, data = env.physics.model.ptr, env.physics.data.ptr
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    goal = np.asarray(options["goal_state"][:2])
    env.reset(seed=0, options=options)
    steps, success, closest = 0, env.succeeded(), np.inf
    while not success and steps < LEWM_BUDGET:
        start = np.empty(mujoco.mj_stateSize(model, spec))
        mujoco.mj_getState(model, data, start, spec)

        def cost(plans: torch.Tensor, start=start) -> torch.Tensor:
            actions = plans.reshape(len(plans), blocks * BLOCK, -1).clamp(-1, 1).double().numpy()
            states, _ = mujoco.rollout.rollout(model, data, start,
                                               np.repeat(actions, ACTION_REPEAT, axis=1))
            last = states[:, -1, 1:1 + len(goal)]          # full-physics state: time, qpos, ...
            return torch.from_numpy(np.square(joint_error(last, goal)).sum(-1)).float()

        plan = planner.plan(cost, blocks, BLOCK * env.action_space.shape[0])
        for action in plan.reshape(blocks * BLOCK, -1):
            _, _, done, _, info = env.step(action.clamp(-1, 1).numpy())
            steps += 1
            closest = min(closest, np.abs(joint_error(env.physics.data.qpos, goal)).max())
            if done or steps >= LEWM_BUDGET:
                break
        success = info["success"]
    return bool(success), float(closest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--expert-data", required=True, help="a `jepalab collect reacher` file "
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
    args = parser.parse_args()
    torch.set_num_threads(1)
    env = make("reacher", size=16)                 # pixels unused: a small render is cheap
    env.max_episode_steps = LEWM_BUDGET
    goals = ExpertGoals.sample(args.expert_data, "reacher", episodes=args.episodes,
                               goal_offset=LEWM_GOAL_OFFSET, seed=args.seed)
    title = (f"CEM ({args.samples}, top {args.elites}, {args.iterations} its, std "
             f"{args.init_std:g}, {args.horizon} blocks)")
    print(f"{title:<36} {'success %':>16} {'median closest':>15} {'s/episode':>10}")
    for min_std in args.min_std:
        torch.manual_seed(args.seed)
        planner = CEM(args.samples, args.elites, args.iterations, args.init_std, min_std)
        results, began = [], time.perf_counter()
        for i in range(args.episodes):
            results.append(episode(env, goals.options(i), planner, args.horizon))
        wins = sum(success for success, _ in results)
        low, high = wilson(wins, args.episodes)
        closest = np.median([c for _, c in results])
        rate = f"{100 * wins / args.episodes:.0f} [{100 * low:.0f}, {100 * high:.0f}]"
        seconds = (time.perf_counter() - began) / args.episodes
        print(f"{f'min_std {min_std:g}':<36} {rate:>16} {closest:>13.3f} rad {seconds:>9.1f}")


if __name__ == "__main__":
    main()
