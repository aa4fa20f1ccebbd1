"""What every environment shares: spaces, the reset/step bookkeeping, action checks.

A subclass implements the task: `_reset_task(rng, options) -> category`, `_apply(action)`
(advance the physics one step), `_render(goal: bool) -> uint8 (S, S, 3)`, `proprio()`,
`goal_proprio()` (the proprio of the pose the goal image draws, velocities 0), `success()`
and `expert_action(rng)`; and, for episodes set from recorded states (the
anchors' protocol, world/protocol.py), `state()` (the whole simulator state, float64),
`restore(state)`, `_set_goal_state(state)` (make `state` the task's goal) and
`state_error(goal_state)` (in the anchors' tolerances; `state_matches`: below 1, their
success test).

`reset(options={"start_state": s, "goal_state": g})` starts from state s with the goal
image a rendering of state g (and the goal's proprio state g's), and success is then
`state_matches(g)` until the next reset.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from jepalab.config import ConfigError


def wrap_angle(angle):
    """Angle(s) mapped to [-pi, pi): an angle's error taken the short way round. A float, a
    numpy array or a torch tensor, returned as the same kind (a tensor keeps its graph)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi


class PixelEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    render_mode = "rgb_array"
    max_episode_steps = 100

    def __init__(self, size: int, action_dim: int, proprio_dim: int):
        if not (isinstance(size, int) and 8 <= size <= 512):
            raise ConfigError(f"{type(self).__name__}: size must be an int in [8, 512] "
                              f"pixels, got {size!r}")
        self.size = size
        image = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.observation_space = spaces.Dict({
            "pixels": image, "goal": image,
            "proprio": spaces.Box(-np.inf, np.inf, (proprio_dim,), np.float32),
            "goal_proprio": spaces.Box(-np.inf, np.inf, (proprio_dim,), np.float32)})
        self.action_space = spaces.Box(-1.0, 1.0, (action_dim,), np.float32)
        self._goal_pixels = None
        self._goal_proprio = None
        self._goal_state = None     # set by reset(options={"goal_state": ...})
        self._t = 0

    # --- the contract ---------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        if "start_state" in options or "goal_state" in options:
            category = self._reset_to_states(options)
        else:
            self._goal_state = None
            category = self._reset_task(self.np_random, options)
            self._goal_proprio = np.asarray(self.goal_proprio(), dtype=np.float32)
        self._goal_pixels = self._render(goal=True)
        self._t = 0
        return self._observation(), {"success": self.succeeded(), "category": category}

    def _reset_to_states(self, options: dict) -> str:
        name = type(self).__name__
        if set(options) != {"start_state", "goal_state"}:
            raise ValueError(f"{name}.reset: start_state and goal_state go together and with no "
                             f"other option, got {sorted(options)}")
        start, goal = (self._check_state(options[k], k) for k in ("start_state", "goal_state"))
        self.restore(goal)
        self._goal_proprio = np.asarray(self.proprio(), dtype=np.float32)
        self._set_goal_state(goal)
        self.restore(start)
        self._goal_state = goal
        return "expert"

    def _check_state(self, value, name: str) -> np.ndarray:
        state = np.asarray(value, dtype=np.float64).reshape(-1)
        size = len(self.state())
        if state.shape != (size,) or not np.isfinite(state).all():
            raise ValueError(f"{type(self).__name__}.reset: {name} must be {size} finite numbers "
                             f"(what state() returns), got shape {np.shape(value)}")
        return state

    def succeeded(self) -> bool:
        """The episode's success test: the task's own, or the anchors' against the goal
        state when the episode was set from recorded states."""
        if self._goal_state is not None:
            return bool(self.state_matches(self._goal_state))
        return bool(self.success())

    def step(self, action):
        if self._goal_pixels is None:
            raise RuntimeError(f"{type(self).__name__}: call reset() before step()")
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self.action_space.shape or not np.isfinite(action).all():
            raise ValueError(f"{type(self).__name__}: action must be {self.action_space.shape} "
                             f"finite numbers in [-1, 1], got {action!r}")
        self._apply(np.clip(action, -1.0, 1.0))
        self._t += 1
        done = self.succeeded()
        truncated = not done and self._t >= self.max_episode_steps
        return self._observation(), float(done), done, truncated, {"success": done}

    def render(self) -> np.ndarray:
        return self._render(goal=False)

    def episode_options(self, index: int) -> dict:
        """Reset options for evaluation episode `index` (none by default)."""
        return {}

    def _observation(self) -> dict:
        return {"pixels": self._render(goal=False), "goal": self._goal_pixels,
                "proprio": np.asarray(self.proprio(), dtype=np.float32),
                "goal_proprio": self._goal_proprio}

    # --- the task (subclasses) --------------------------------------------------------
    def _reset_task(self, rng: np.random.Generator, options: dict) -> str:
        raise NotImplementedError

    def _apply(self, action: np.ndarray) -> None:
        raise NotImplementedError

    def _render(self, goal: bool) -> np.ndarray:
        raise NotImplementedError

    def proprio(self) -> np.ndarray:
        raise NotImplementedError

    def goal_proprio(self) -> np.ndarray:
        raise NotImplementedError

    def success(self) -> bool:
        raise NotImplementedError

    def expert_action(self, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def state(self) -> np.ndarray:
        raise NotImplementedError

    def restore(self, state: np.ndarray) -> None:
        raise NotImplementedError

    def _set_goal_state(self, state: np.ndarray) -> None:
        raise NotImplementedError

    def state_error(self, goal_state: np.ndarray) -> float:
        """How far the current state is from `goal_state` in the anchors' tolerances: the
        largest of the tested errors, each over its tolerance; below 1 is their success."""
        raise NotImplementedError

    def state_matches(self, goal_state: np.ndarray) -> bool:
        """The anchors' success test against a recorded state."""
        return self.state_error(goal_state) < 1.0

    def goal_error(self) -> float | None:
        """`state_error` to this episode's goal state, None unless it was set from one."""
        return None if self._goal_state is None else self.state_error(self._goal_state)
