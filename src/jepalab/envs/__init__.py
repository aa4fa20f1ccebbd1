"""Control tasks with pixel observations and goals given as images (Gymnasium API).

`make(name, **kw)` builds one. Every environment here follows one contract:

  observation  {"pixels": uint8 (S, S, 3), "goal": uint8 (S, S, 3), "proprio": float32 (P,)}
               "goal" is a rendering of the goal state, fixed for the episode
  action       Box(-1, 1, (A,), float32)
  reset(seed=, options=)  -> (obs, info); the same seed gives the same start and goal
  step(action) -> (obs, reward, terminated, truncated, info); reward 1 and terminated on
               success, truncated after `max_episode_steps`; info["success"] always there
  render()     -> the current pixels
  success()    -> whether the current state meets the goal (the task's own test)
  expert_action(rng) -> a noisy-expert policy's action (data collection)
  episode_options(i) -> reset options of evaluation episode i (e.g. Two-Room's
               cross-door half); info["category"] names the kind of episode
  state()      -> the whole simulator state (float64); restore(state) sets it; and
               reset(options={"start_state": s, "goal_state": g}) starts an episode from
               recorded states, success then being state_matches(g), the anchors' test
               (LeWorldModel's protocol, world/protocol.py)

The extras `pip install -e .[envs]` bring pymunk (PushT), dm_control and mujoco 3.17
(Reacher) and gymnasium.
"""
from __future__ import annotations

import difflib
import importlib

from jepalab.errors import MissingExtra, UnknownName

ENVS = {
    "two-room": "jepalab.envs.two_room:TwoRoom",
    "pusht": "jepalab.envs.pusht:PushT",
    "reacher": "jepalab.envs.reacher:Reacher",
}


def env_class(name: str):
    if name not in ENVS:
        near = difflib.get_close_matches(name, ENVS, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise UnknownName(f"unknown environment {name!r}; valid: {', '.join(ENVS)}{hint}")
    module, _, cls = ENVS[name].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as e:
        raise MissingExtra(f"environment {name!r} needs {e.name!r}: install the extras "
                           "with `pip install -e .[envs]`") from None


def make(name: str, **kwargs):
    """Build environment `name` (two-room, pusht, reacher) with keyword options such as
    size=64 (pixels per side)."""
    return env_class(name)(**kwargs)


__all__ = ["ENVS", "env_class", "make"]
