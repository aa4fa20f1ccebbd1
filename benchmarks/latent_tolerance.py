"""Does a Reacher world model's latent tell a goal inside the anchors' tolerance from one
just outside it? (LeWM's success test: each joint within 0.05 rad of the goal's.)

    MUJOCO_GL=egl python benchmarks/latent_tolerance.py RUN_DIR [RUN_DIR ...] [--poses 200]

For `--poses` random arm poses (the environment's own resets), goals turned 0.01-0.05 rad
(inside), 0.05-0.10 (just outside) and 0.15-0.30 (far) on the larger joint are rendered at
the size the run's data was collected at and encoded with `model.encode`. Printed: the
median squared latent distance of each kind of goal from its pose (the `last` cost's
units), and how often a just-outside or far goal lies farther than an inside one (an AUC;
0.5 is blind), beside the same for the raw pixels.
"""
from __future__ import annotations

import argparse

import h5py
import numpy as np
import torch

from jepalab.envs import make
from jepalab.probe import run_config
from jepalab.world import load_world_model

KINDS = {"inside": (0.01, 0.05), "just outside": (0.05, 0.10), "far": (0.15, 0.30)}


def _turned(rng, low: float, high: float) -> np.ndarray:
    """A change of both joints whose larger part lies in [low, high)."""
    change = rng.uniform(-low, low, 2)
    change[rng.integers(2)] = rng.choice([-1, 1]) * rng.uniform(low, high)
    return change


def _auc(near, far) -> float:
    """P(a far distance exceeds a near one)."""
    return float((np.asarray(far)[:, None] > np.asarray(near)[None]).mean())


@torch.no_grad()
def measure(run: str, poses: int) -> dict:
    model, _ = load_world_model(run)
    path = run_config(run).data.name.removeprefix("trajectories:")
    with h5py.File(path, "r") as f:
        size = f["pixels"].shape[-2]
    env, rng = make("reacher", size=size), np.random.default_rng(0)
    latent, pixels = {k: [] for k in KINDS}, {k: [] for k in KINDS}

    def render(angles):
        env.set_configuration(angles)
        return env.render()

    for i in range(poses):
        env.reset(seed=i)
        pose = env.physics.data.qpos[:2].copy()
        frames = [render(pose)] + [render(pose + _turned(rng, *span)) for span in KINDS.values()]
        x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
        z = model.encode(x).flatten(1)
        for k, zk, xk in zip(KINDS, z[1:], x[1:]):
            latent[k].append(float((zk - z[0]).square().sum()))
            pixels[k].append(float((xk.float() - x[0].float()).square().mean()))
    env.close()
    return {"size": size, "median": {k: float(np.median(v)) for k, v in latent.items()},
            "auc": [_auc(latent["inside"], latent[k]) for k in ("just outside", "far")],
            "pixel_auc": [_auc(pixels["inside"], pixels[k]) for k in ("just outside", "far")]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--poses", type=int, default=200)
    args = parser.parse_args()
    print("| run | px | median latent distance: inside / just outside / far | AUC inside vs "
          "just outside, far | raw pixels' AUC |\n|---|---|---|---|---|")
    for run in args.runs:
        r = measure(run, args.poses)
        medians = " / ".join(f"{v:.2f}" for v in r["median"].values())
        print(f"| {run} | {r['size']} | {medians} | {r['auc'][0]:.2f}, {r['auc'][1]:.2f} | "
              f"{r['pixel_auc'][0]:.2f}, {r['pixel_auc'][1]:.2f} |")


if __name__ == "__main__":
    main()
