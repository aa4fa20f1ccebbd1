"""Planners: search a plan of H block actions in [-1, 1]^A that minimises a batched cost.

A cost maps candidate plans (N, H, A) to costs (N,); all N candidates are scored in one
call (one batched rollout of the world model). Each planner's `plan(cost, horizon,
action_dim, mean=None)` returns the plan (H, A); `mean` warm-starts it (the previous plan
shifted by what was executed).

  CEM       (LeWM / DINO-WM's defaults: 300 samples, top 30, 30 iterations, std 1):
            sample around a Gaussian, refit it to the best `elites`
  MPPI      sample around the mean, move it to the exponentially weighted average
            (weights exp(-(cost - min) / temperature)), refit the std the same way
  gradient  Adam on `starts` plans at once (through tanh, so they stay in [-1, 1]),
            the cost back-propagated through the world model; the best plan wins
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Cost = Callable[[torch.Tensor], torch.Tensor]


def _initial(mean, horizon: int, action_dim: int) -> torch.Tensor:
    if mean is None:
        return torch.zeros(horizon, action_dim)
    if tuple(mean.shape) != (horizon, action_dim):
        raise ValueError(f"warm start must be ({horizon}, {action_dim}), got "
                         f"{tuple(mean.shape)}")
    return mean.clone()


def _candidates(mean: torch.Tensor, std: torch.Tensor, samples: int) -> torch.Tensor:
    """`samples` plans drawn around `mean` with `std`, clipped to [-1, 1]; the first is the
    mean itself, so an iteration never loses the plan it started from."""
    candidates = (mean + std * torch.randn(samples, *mean.shape)).clamp(-1, 1)
    candidates[0] = mean
    return candidates


@dataclass
class CEM:
    samples: int = 300
    elites: int = 30
    iterations: int = 30
    init_std: float = 1.0
    min_std: float = 0.05  # keeps the search from freezing on one candidate (0 under the
                           # anchors' protocol: LeWM's CEM has no floor)

    def __post_init__(self):
        if not 1 <= self.elites <= self.samples:
            raise ValueError(f"CEM: elites must be in [1, samples={self.samples}], "
                             f"got {self.elites}")
        if self.iterations < 1:
            raise ValueError(f"CEM: iterations must be >= 1, got {self.iterations}")

    @torch.no_grad()
    def plan(self, cost: Cost, horizon: int, action_dim: int, mean=None) -> torch.Tensor:
        mean = _initial(mean, horizon, action_dim)
        std = torch.full_like(mean, self.init_std)
        for _ in range(self.iterations):
            candidates = _candidates(mean, std, self.samples)
            best = cost(candidates).topk(self.elites, largest=False).indices
            elite = candidates[best]
            mean, std = elite.mean(0), elite.std(0, correction=0).clamp_min(self.min_std)
        return mean


@dataclass
class MPPI:
    samples: int = 300
    iterations: int = 30
    init_std: float = 1.0
    temperature: float = 0.05  # in units of the cost's spread (see plan)
    min_std: float = 0.05

    @torch.no_grad()
    def plan(self, cost: Cost, horizon: int, action_dim: int, mean=None) -> torch.Tensor:
        mean = _initial(mean, horizon, action_dim)
        std = torch.full_like(mean, self.init_std)
        for _ in range(self.iterations):
            candidates = _candidates(mean, std, self.samples)
            costs = cost(candidates)
            # temperature relative to the spread of this batch's costs: scale-free
            scale = (costs.std() + 1e-12) * self.temperature
            weights = torch.softmax(-(costs - costs.min()) / scale, dim=0)[:, None, None]
            mean = (weights * candidates).sum(0)
            std = (weights * (candidates - mean).square()).sum(0).sqrt().clamp_min(self.min_std)
        return mean


@dataclass
class Gradient:
    starts: int = 16
    steps: int = 100
    lr: float = 0.1

    def plan(self, cost: Cost, horizon: int, action_dim: int, mean=None) -> torch.Tensor:
        init = torch.empty(self.starts, horizon, action_dim).uniform_(-0.9, 0.9)
        init[0] = _initial(mean, horizon, action_dim).clamp(-0.99, 0.99)
        raw = torch.atanh(init).requires_grad_(True)
        optimiser = torch.optim.Adam([raw], lr=self.lr)
        with torch.enable_grad():
            for _ in range(self.steps):
                optimiser.zero_grad(set_to_none=True)
                cost(torch.tanh(raw)).sum().backward()
                optimiser.step()
        with torch.no_grad():
            plans = torch.tanh(raw)
            return plans[cost(plans).argmin()]


PLANNERS = {"cem": CEM, "mppi": MPPI, "gradient": Gradient}


def make_planner(name: str, **options):
    if name not in PLANNERS:
        raise ValueError(f"unknown planner {name!r}; valid: {', '.join(PLANNERS)}")
    return PLANNERS[name](**options)


def parse_options(name: str, pairs: list[str]) -> dict:
    """`KEY=VALUE` strings -> keyword options of planner `name`, each typed as its field
    (e.g. V-JEPA 2-AC's CEM: samples=400 elites=10 iterations=10)."""
    from dataclasses import fields

    from jepalab.config import ConfigError

    if name not in PLANNERS:
        raise ConfigError(f"unknown planner {name!r}; valid: {', '.join(PLANNERS)}")
    types = {f.name: f.type for f in fields(PLANNERS[name])}
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in types:
            raise ConfigError(f"--planner-option {pair!r}: give KEY=VALUE with KEY one of "
                              f"{', '.join(types)} (planner {name})")
        kind = int if types[key] in (int, "int") else float
        try:
            options[key] = kind(value)
        except ValueError:
            options[key] = None
        floor = key == "min_std"  # 0: no floor (LeWM's CEM)
        if (options[key] is None or not (options[key] >= 0 if floor else options[key] > 0)
                or options[key] == float("inf")):
            raise ConfigError(f"--planner-option {key}={value!r}: {key} must be a "
                              f"{'non-negative' if floor else 'positive'} "
                              f"{'integer' if kind is int else 'finite number'}")
    try:
        make_planner(name, **options)  # the planner's own checks (elites <= samples, ...)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return options
