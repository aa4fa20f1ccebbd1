"""One-step error of a world model on held-out windows, teacher forced: its prediction of
the next frame's latent against copying the last frame's latent and against its own
prediction with the actions shuffled across windows (does it use them?).

    python benchmarks/world_one_step.py RUN_DIR [RUN_DIR ...] [--windows 640] [--seed 0]
    python benchmarks/world_one_step.py RUN_DIR [RUN_DIR ...] --ahead 5

With `--ahead K` it rolls each model out open loop instead, from `history` true frames with
the true actions, 1 ... K blocks ahead (a plan's horizon), and prints the median squared
distance (summed over tokens and channels: the `last` cost's units) between the predicted
and the true latent at each step, beside copying the last true frame.

Each model is read in its own latent space (`encode`, `predict`: the world-model
interface), on `--windows` windows drawn from its data's val split (held-out episodes);
the errors are the mean absolute (L1, V-JEPA 2-AC's) and squared (MSE, DINO-WM's and
LeWM's) differences over every predicted step, token and channel.
"""
from __future__ import annotations

import argparse
import dataclasses

import torch

from jepalab.build import load_data
from jepalab.probe import run_config
from jepalab.world import load_world_model, rollout


def _held_out(model, run: str, windows: int, seed: int, window: int | None = None):
    """`model`'s latents (n, t, ...) of `windows` windows of the run's val split (of `window`
    frames; None: the run's own), their actions, and the generator that drew them."""
    cfg = run_config(run)
    if window is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, window=window))
    data = load_data(cfg)
    generator = torch.Generator().manual_seed(seed)
    batch = data.val.batch(torch.randperm(len(data.val), generator=generator)[:windows])
    frames, actions = batch["frames"], batch["actions"]
    n, t = frames.shape[:2]
    return model.encode(frames.flatten(0, 1)).unflatten(0, (n, t)), actions, generator


@torch.no_grad()
def one_step(run: str, windows: int, seed: int) -> dict:
    model, _ = load_world_model(run)
    z, actions, generator = _held_out(model, run, windows, seed)
    shuffled = actions[torch.randperm(len(z), generator=generator)]
    guesses = {"prediction": model.predict(z[:, :-1], actions), "copying the last frame":
               z[:, :-1], "actions shuffled": model.predict(z[:, :-1], shuffled)}
    return {name: ((guess - z[:, 1:]).abs().mean().item(),
                   (guess - z[:, 1:]).pow(2).mean().item()) for name, guess in guesses.items()}


@torch.no_grad()
def open_loop(run: str, ahead: int, windows: int, seed: int) -> tuple[list, list]:
    """Median squared latent error 1 ... `ahead` blocks ahead (`world.rollout` from
    `history` true frames with the true actions), and copying the last true frame's."""
    model, _ = load_world_model(run)
    history = model.history
    z, actions, _ = _held_out(model, run, windows, seed, window=history + ahead)
    imagined = rollout(model, z[:, :history], actions[:, :history - 1],
                       actions[:, history - 1:history - 1 + ahead])
    truth = z[:, history:]

    def medians(guess):
        return [(guess[:, k] - truth[:, k]).flatten(1).square().sum(1).median().item()
                for k in range(ahead)]

    return medians(imagined), medians(z[:, history - 1:history].expand_as(truth))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--windows", type=int, default=640)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ahead", type=int, help="open-loop rollouts this many blocks ahead "
                        "instead of one-step errors")
    args = parser.parse_args()
    if args.ahead is not None:
        if args.ahead < 1:
            parser.error(f"--ahead must be >= 1, got {args.ahead}")
        print("| run | median squared latent error, 1 ... K blocks ahead | copying the last "
              "true frame |\n|---|---|---|")
        for run in args.runs:
            predicted, copied = open_loop(run, args.ahead, args.windows, args.seed)
            print(f"| {run} | " + ", ".join(f"{e:.2f}" for e in predicted) + " | "
                  + ", ".join(f"{e:.2f}" for e in copied) + " |")
        return
    print("| run | prediction L1 / MSE | copying the last frame | actions shuffled |\n"
          "|---|---|---|---|")
    for run in args.runs:
        errors = one_step(run, args.windows, args.seed)
        print(f"| {run} | " + " | ".join(f"{l1:.3f} / {mse:.4f}" for l1, mse in
                                         errors.values()) + " |")


if __name__ == "__main__":
    main()
