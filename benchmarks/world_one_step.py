"""One-step error of a world model on held-out windows, teacher forced: its prediction of
the next frame's latent against copying the last frame's latent and against its own
prediction with the actions shuffled across windows (does it use them?).

    python benchmarks/world_one_step.py RUN_DIR [RUN_DIR ...] [--windows 640] [--seed 0]

Each model is read in its own latent space (`encode`, `predict`: the world-model
interface), on `--windows` windows drawn from its data's val split (held-out episodes);
the errors are the mean absolute (L1, V-JEPA 2-AC's) and squared (MSE, DINO-WM's and
LeWM's) differences over every predicted step, token and channel.
"""
from __future__ import annotations

import argparse

import torch

from jepalab.build import load_data
from jepalab.probe import run_config
from jepalab.world import load_world_model


@torch.no_grad()
def one_step(run: str, windows: int, seed: int) -> dict:
    model, _ = load_world_model(run)
    data = load_data(run_config(run))
    generator = torch.Generator().manual_seed(seed)
    batch = data.val.batch(torch.randperm(len(data.val), generator=generator)[:windows])
    frames, actions = batch["frames"], batch["actions"]
    n, t = frames.shape[:2]
    z = model.encode(frames.flatten(0, 1)).unflatten(0, (n, t))
    shuffled = actions[torch.randperm(n, generator=generator)]
    guesses = {"prediction": model.predict(z[:, :-1], actions), "copying the last frame":
               z[:, :-1], "actions shuffled": model.predict(z[:, :-1], shuffled)}
    return {name: ((guess - z[:, 1:]).abs().mean().item(),
                   (guess - z[:, 1:]).pow(2).mean().item()) for name, guess in guesses.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--windows", type=int, default=640)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| run | prediction L1 / MSE | copying the last frame | actions shuffled |\n"
          "|---|---|---|---|")
    for run in args.runs:
        errors = one_step(run, args.windows, args.seed)
        print(f"| {run} | " + " | ".join(f"{l1:.3f} / {mse:.4f}" for l1, mse in
                                         errors.values()) + " |")


if __name__ == "__main__":
    main()
