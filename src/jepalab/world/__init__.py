"""Latent world models and planning.

A world model (LeWM, V-JEPA 2-AC-style, DINO-WM-style; each also a method the trainer
trains on trajectory data) exposes, besides the method interface:
  encode(pixels uint8 (B, 3, H, W), proprio (B, P) or None) -> latents (B, N, D)
      N tokens per frame (1: CLS); proprio, the agent's own state, read by models trained
      with it (DINO-WM-style `method.proprio_dim`) and ignored by the others
  predict(latents (B, T, N, D), actions (B, T, A)) -> (B, T, N, D)
      the latent after each frame's block action, seeing `history` frames back
  history: int                                               frames of context it was trained on
and optionally
  cached_rollout(context (1, k, N, D), context_actions (1, k - 1, A), plan (B, H, A))
      what `rollout` gives for B plans sharing one context, without the shared work
`rollout` chains `predict` over a plan (`plan_rollout` takes the cached path where there is
one); the planners in `planners.py` search actions whose rolled-out latents come close to
the goal's; `evaluate.py` runs them in the environments.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch


def check_sizes(cfg, positive: tuple[str, ...]) -> None:
    """A world model's config: each `method.<key>` of `positive` at least 1, and the
    predictor's width divisible by its heads."""
    for key in positive:
        if getattr(cfg, key) < 1:
            raise ValueError(f"method.{key} must be >= 1, got {getattr(cfg, key)}")
    if cfg.predictor_width % cfg.predictor_heads:
        raise ValueError(f"method.predictor_width {cfg.predictor_width} must be divisible "
                         f"by method.predictor_heads {cfg.predictor_heads}")


def rollout(model, context: torch.Tensor, context_actions: torch.Tensor,
            plan: torch.Tensor) -> torch.Tensor:
    """Predict the latents a plan leads to, one block at a time (autoregressively).

    context (B, k, N, D): latents of the last k frames, the current one last;
    context_actions (B, k - 1, A): the blocks taken between them;
    plan (B, H, A): the blocks to try. Returns (B, H, N, D): the latent after each block.
    """
    latents, actions = context, context_actions
    out = []
    for h in range(plan.shape[1]):
        actions = torch.cat([actions, plan[:, h:h + 1]], dim=1)[:, -model.history:]
        latents = latents[:, -model.history:]
        nxt = model.predict(latents, actions)[:, -1:]
        out.append(nxt)
        latents = torch.cat([latents, nxt], dim=1)
    return torch.cat(out, dim=1)


def plan_rollout(model, context: torch.Tensor, context_actions: torch.Tensor,
                 plan: torch.Tensor) -> torch.Tensor:
    """`rollout` of B candidate plans from one shared context (1, k, N, D) and its
    (1, k - 1, A) actions: the model's `cached_rollout` if it has one and sees more than
    one frame (the same numbers, less work), else `rollout` on the context repeated."""
    cached = getattr(model, "cached_rollout", None)
    if cached is not None and model.history > 1:  # with one frame of history nothing is
        return cached(context, context_actions, plan)  # shared: chaining is as fast
    n = plan.shape[0]
    return rollout(model, context.expand(n, -1, -1, -1), context_actions.expand(n, -1, -1), plan)


def load_world_model(run_dir: str | Path):
    """(model in eval mode, data description) of a world-model run directory: the method
    rebuilt from its config.json, weights from its latest checkpoint; the description
    (data.json: env, env_kwargs, action_dim, frameskip) says what it was trained on."""
    from safetensors.torch import load_file

    from jepalab import checkpoint
    from jepalab.build import build_method
    from jepalab.config import from_dict
    from jepalab.errors import RunKindError

    run_dir = Path(run_dir)
    described = run_dir / "data.json"
    if not (run_dir / "config.json").exists() or not described.exists():
        raise FileNotFoundError(f"{run_dir} is not a world-model run (it needs config.json and "
                                "data.json, written by `jepalab train` on trajectory data)")
    found = checkpoint.latest(run_dir)
    if found is None:
        raise FileNotFoundError(f"{run_dir} holds no checkpoint yet; train it first")
    raw = json.loads((run_dir / "config.json").read_text())
    raw["method"] = dict(raw["method"])
    if "encoder" in raw["method"]:  # a frozen encoder: the checkpoint holds its own copy
        raw["method"]["encoder"] = str(found / "encoder.safetensors")
    cfg = from_dict(raw, recipe=raw.get("recipe", ""))
    data = json.loads(described.read_text())
    kind = data.get("kind", "trajectories")  # runs from before image runs wrote data.json
    if kind != "trajectories":
        raise RunKindError(f"{run_dir} is an {kind} run (method {cfg.method_name!r}), not a "
                           "world model; plan needs one trained on trajectories (e.g. `jepalab "
                           "train lewm-two-room`)")
    model = build_method(cfg, data["action_dim"] * data["frameskip"])
    checkpoint.verify(found, ("model.safetensors",))
    model.load_state_dict(load_file(found / "model.safetensors"))
    if not hasattr(model, "encode"):
        raise RunKindError(f"{run_dir} was trained with method {cfg.method_name!r}, which is "
                           "not a world model")
    return model.eval(), data
