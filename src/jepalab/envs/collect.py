"""Data collection: run a policy in an environment and write its episodes to HDF5.

Policies (per env step, from one numpy generator seeded by the collection's seed):
  random        a uniform action in [-1, 1]^A, kept for a geometric number of steps (a new
                one with probability 1/`hold` each step; `hold` 5 by default, a random walk
                that goes places; 1: a new action every step, stable-worldmodel's
                RandomPolicy, whose Reacher episodes the anchors evaluate on)
  noisy-expert  the environment's `expert_action`, its norm capped at `speed` if given (by
                default as the expert acts), plus Gaussian noise (std `noise`), clipped to
                [-1, 1].
                A lower `speed` makes a slower expert: PushT at `speed` 0.25 and `noise` 0.1
                moves as the anchors' PushT data does (README, World models)
Episodes run for a fixed number of steps whatever happens (success does not end them), so
every episode has the same length; episode e resets with seed `seed * 100_003 + e`. Each
frame's whole simulator state is written beside it, so the anchors' protocol can restart
any frame (world/protocol.py).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from jepalab import __version__
from jepalab.config import ConfigError
from jepalab.data.trajectories import EpisodeWriter
from jepalab.envs import make
from jepalab.errors import UnknownName

POLICY_OPTIONS = {"random": ("hold",), "noisy-expert": ("noise", "speed")}  # each one's own
POLICIES = tuple(POLICY_OPTIONS)


class Policy:
    def __init__(self, name: str, env, rng: np.random.Generator, *, hold: float = 5.0,
                 noise: float = 0.5, speed: float | None = None):
        if name not in POLICIES:
            raise UnknownName(f"unknown policy {name!r}; valid: {', '.join(POLICIES)}")
        if not (math.isfinite(noise) and noise >= 0):
            raise ConfigError(f"--noise must be a finite number >= 0, got {noise}")
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            raise ConfigError(f"--speed must be a finite number > 0 (the largest norm of the "
                              f"expert's action), got {speed}")
        if not (math.isfinite(hold) and hold >= 1):
            raise ConfigError(f"--hold must be a finite number >= 1 (1: a new action every "
                              f"step), got {hold}")
        self.name, self.env, self.rng, self.hold, self.noise = name, env, rng, hold, noise
        self.speed = speed
        self.previous = None

    def __call__(self) -> np.ndarray:
        space = self.env.action_space
        if self.name == "random":
            if self.previous is None or self.rng.random() < 1.0 / self.hold:
                self.previous = self.rng.uniform(-1.0, 1.0, space.shape).astype(np.float32)
            return self.previous
        action = self.env.expert_action(self.rng)
        if self.speed is not None:
            action = action * min(1.0, self.speed / max(float(np.linalg.norm(action)), 1e-12))
        action = action + self.rng.normal(0.0, self.noise, space.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def reset(self) -> None:
        self.previous = None


def collect(env_name: str, out: str | Path, *, episodes: int, steps: int | None = None,
            policy: str = "random", seed: int = 0, env_kwargs: dict | None = None,
            show_progress: bool = True, **policy_kwargs) -> Path:
    """Collect `episodes` episodes of `steps` steps (default: the env's budget) into `out`."""
    from jepalab.progress import Bar

    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")
    env_kwargs = dict(env_kwargs or {})
    env = make(env_name, **env_kwargs)
    steps = steps or env.max_episode_steps
    if steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {steps}")
    rng = np.random.default_rng(seed)
    act = Policy(policy, env, rng, **policy_kwargs)
    writer = EpisodeWriter(out, {"env": env_name, "env_kwargs": env_kwargs, "policy": policy,
                                 "policy_kwargs": policy_kwargs, "seed": seed, "steps": steps,
                                 "version": __version__})
    try:
        start = time.monotonic()
        with Bar(f"collect {env_name}", episodes, enabled=show_progress) as bar:
            for episode in range(episodes):
                obs, _ = env.reset(seed=seed * 100_003 + episode)
                act.reset()
                pixels, proprio, actions = [obs["pixels"]], [obs["proprio"]], []
                states = [env.state()]
                for _ in range(steps):
                    action = act()
                    obs, *_ = env.step(action)
                    actions.append(action)
                    pixels.append(obs["pixels"])
                    proprio.append(obs["proprio"])
                    states.append(env.state())
                writer.add(np.stack(pixels), np.stack(actions), np.stack(proprio),
                           np.stack(states))
                bar.update(status=f"{(episode + 1) / (time.monotonic() - start):.1f} episodes/s")
    except BaseException:
        writer.abort()
        raise
    finally:
        if hasattr(env, "close"):
            env.close()
    return writer.close()
