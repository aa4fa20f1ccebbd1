"""Where evaluation episodes start and end: our protocol, or the anchors' (LeWorldModel's).

  jepalab  (the default, harder) a random reset per episode: `env.episode_options(i)` (Two-Room:
           odd episodes cross the door), the environment's own success test and budget
           (Two-Room 100 steps, PushT and Reacher 50); goals drawn anywhere.
  lewm     the protocol of lucas-maes/le-wm (`config/eval/*.yaml`) on stable-worldmodel:
           start and goal come from an expert data set the model was not trained on.
           `episodes` start rows are drawn uniformly (seeded, without replacement) among the
           rows at least `goal_offset` (25) steps before the end of their episode; the goal
           is the same episode's state `goal_offset` steps later. The simulator is set to
           the goal state (its rendering is the goal image), then to the start state;
           success is the anchors' state test (`env.state_matches`: PushT's agent and T
           within 20 of 512 and the T within pi/9, Two-Room's 16 px of 224, Reacher's
           joints within 0.05 rad) and the budget 50 steps.
The expert file is a `jepalab collect ENV --policy noisy-expert --seed S` file with a seed
other than the training data's (collect writes every frame's simulator state).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jepalab.config import ConfigError
from jepalab.data.images import DataError

PROTOCOLS = ("jepalab", "lewm")
LEWM_BUDGET = 50              # env steps (le-wm eval_budget)
LEWM_GOAL_OFFSET = 25         # env steps from start to goal (le-wm goal_offset_steps)


@dataclass
class ExpertGoals:
    """Start and goal states of evaluation episodes, read from an expert data set."""
    starts: np.ndarray        # (E, S) simulator states
    goals: np.ndarray         # (E, S)
    rows: np.ndarray          # (E,) the start rows in the file (the goal is row + offset)

    @classmethod
    def sample(cls, path: str | Path, env_name: str, *, episodes: int, goal_offset: int,
               seed: int) -> ExpertGoals:
        from jepalab.data.trajectories import open_trajectories

        with open_trajectories(path) as (f, starts, attrs):
            if attrs.get("env") != env_name:
                raise DataError(f"{path} holds {attrs.get('env')!r} episodes, not {env_name!r}; "
                                f"collect expert data with `jepalab collect {env_name} "
                                "--policy noisy-expert --seed S --out FILE.h5`")
            if "state" not in f:
                raise DataError(f"{path} has no 'state' dataset (it was collected before "
                                "jepalab wrote simulator states); collect it again with "
                                "`jepalab collect`")
            ends = np.repeat(starts[1:], np.diff(starts))            # each row's episode end
            valid = np.nonzero(np.arange(len(ends)) + goal_offset < ends)[0]
            if len(valid) < episodes:
                raise DataError(f"{path}: only {len(valid)} rows lie at least {goal_offset} "
                                f"steps before the end of their episode; --episodes "
                                f"{episodes} needs that many (collect more or longer episodes)")
            rows = np.sort(np.random.default_rng(seed).choice(valid, episodes, replace=False))
            states = f["state"]
            return cls(states[rows], states[rows + goal_offset], rows)

    def options(self, index: int) -> dict:
        return {"start_state": self.starts[index], "goal_state": self.goals[index]}


def check_not_trained_on(expert: str | Path, trained_on: str | Path) -> None:
    """The anchors' starts and goals must come from episodes the model never saw."""
    if Path(expert).resolve() == Path(trained_on).resolve():
        raise ConfigError(f"--expert-data {expert} is the file the model was trained on; "
                          "collect held-out expert episodes with another --seed")
