"""How precisely a PushT world model's latent holds the state the success test reads.

    python benchmarks/latent_state.py RUN_DIR [RUN_DIR ...] --held-out FILE.h5 [--fit-frames 20000]
        [--frozen ENCODER ... --pool K]

For each run: every frame of its own training file (the first `--fit-frames`) is encoded
(`encode`, the world-model interface) and every frame of `--held-out` (a file the run did
not train on) is read two ways: a small MLP from the latent to the simulator state (agent
x, y; T x, y; the T's angle as cos, sin; two hidden layers of 256, 3000 Adam steps of 256
frames, inputs standardised), and the state of its nearest training frame in latent space
(squared distance, what the planner's cost measures). Printed: the median error of the
agent's and the T's positions (in the arena's 512 units; the anchors' success test allows
20 for the two together) and of the angle (degrees; it allows 20), and the share of
held-out frames whose read-out state would pass that test against the true one. Beside
each run: the encoder at random init (the run's config, untrained) and the raw pixels at
the run's image size (once per training file and size); last, the nearest frame of the
first run's training file in the true state itself (the floor of the nearest-frame
reading, set by how densely the training frames cover the states). `--frozen`: encoders
(any jepalab run or encoder file) whose patch tokens are read the same way, standardised
and pooled as the frozen-encoder world models read them, fitted on the first run's file.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import torch

import jepalab
from jepalab.build import build_method
from jepalab.data.images import resize_uint8
from jepalab.envs.base import wrap_angle
from jepalab.envs.pusht import ANGLE_TOL, ARENA, POSITION_TOL
from jepalab.probe import run_config
from jepalab.world import load_world_model
from jepalab.world.vjepa_ac import FrozenEncoder


def _targets(state: np.ndarray) -> np.ndarray:
    return np.column_stack([state[:, :4] * ARENA, np.cos(state[:, 4]), np.sin(state[:, 4])])


def _frames(path: str, limit: int | None = None):
    """((pixels (F, S, S, 3) uint8, proprio (F, P)), state (F, 7)) of a file's first frames."""
    with h5py.File(path, "r") as f:
        rows = slice(0, limit)
        return (f["pixels"][rows], f["proprio"][rows]), f["state"][rows]


@torch.no_grad()
def _encode(model, frames, batch: int = 512) -> np.ndarray:
    """Each frame's latent, flattened (a model trained with proprio is given the frame's)."""
    pixels, proprio = frames
    out = []
    for i in range(0, len(pixels), batch):
        images = torch.from_numpy(pixels[i:i + batch]).permute(0, 3, 1, 2)
        own = torch.from_numpy(proprio[i:i + batch])
        out.append(model.encode(images, own).flatten(1).float().numpy())
    return np.concatenate(out)


def _patch_tokens(path: str, pool: int, fit_pixels: np.ndarray):
    """A frozen encoder's patch tokens as the frozen-encoder world models read them
    (standardised per place and channel on 512 frames spread over the fit set, pooled)."""
    vit = jepalab.load(path)
    encoder = FrozenEncoder(path, vit.spec, standardize=True, pool=pool)
    spread = fit_pixels[::max(1, len(fit_pixels) // 512)][:512]
    encoder(torch.from_numpy(spread).permute(0, 3, 1, 2))                # measures

    class Tokens:
        def encode(self, images, proprio=None):
            return encoder(images)
    return lambda p: _encode(Tokens(), p)


def _raw(size: int):
    def encode(frames) -> np.ndarray:
        images = torch.from_numpy(frames[0]).permute(0, 3, 1, 2)
        return resize_uint8(images, size).flatten(1).float().numpy() / 255.0
    return encode


def _mlp(x: np.ndarray, y: np.ndarray, steps: int = 3000, batch: int = 256):
    """A 2-hidden-layer MLP fitted from x to y (both standardised); returns its predictor."""
    generator = torch.Generator().manual_seed(0)
    x_t, y_t = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    x_mean, x_std = x_t.mean(0), x_t.std(0) + 1e-6
    y_mean, y_std = y_t.mean(0), y_t.std(0) + 1e-6
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.GELU(),
                              torch.nn.Linear(256, 256), torch.nn.GELU(),
                              torch.nn.Linear(256, y.shape[1]))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        rows = torch.randint(len(x_t), (batch,), generator=generator)
        loss = torch.nn.functional.mse_loss(net((x_t[rows] - x_mean) / x_std),
                                            (y_t[rows] - y_mean) / y_std)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    @torch.no_grad()
    def predict(v: np.ndarray) -> np.ndarray:
        out = net((torch.from_numpy(v).float() - x_mean) / x_std) * y_std + y_mean
        return out.double().numpy()
    return predict


def _errors(predicted: np.ndarray, truth: np.ndarray) -> dict:
    agent = np.linalg.norm(predicted[:, :2] - truth[:, :2], axis=1)
    block = np.linalg.norm(predicted[:, 2:4] - truth[:, 2:4], axis=1)
    angle = np.abs(wrap_angle(np.arctan2(predicted[:, 5], predicted[:, 4])
                              - np.arctan2(truth[:, 5], truth[:, 4])))
    passes = (np.hypot(agent, block) < POSITION_TOL) & (angle < ANGLE_TOL)
    return {"agent": float(np.median(agent)), "T": float(np.median(block)),
            "angle_deg": float(np.degrees(np.median(angle))), "passes": float(passes.mean())}


def _nearest(x: np.ndarray, queries: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Index of each query's nearest row of x (squared Euclidean distance)."""
    x_t = torch.from_numpy(x).double()
    out = [torch.cdist(torch.from_numpy(queries[i:i + chunk]).double(), x_t).argmin(1)
           for i in range(0, len(queries), chunk)]
    return torch.cat(out).numpy()


def readout(encode, fit_frames, fit_state, test_frames, test_state) -> dict:
    """{"mlp": errors, "nearest": errors} of one encoder."""
    x, y = encode(fit_frames), _targets(fit_state)
    queries, truth = encode(test_frames), _targets(test_state)
    return {"mlp": _errors(_mlp(x, y)(queries), truth),
            "nearest": _errors(y[_nearest(x, queries)], truth)}


def _in_tolerances(state: np.ndarray) -> np.ndarray:
    """The state scaled so that the success test's tolerances are 1."""
    return np.column_stack([state[:, :4] * ARENA / POSITION_TOL,
                            np.cos(state[:, 4]) / ANGLE_TOL, np.sin(state[:, 4]) / ANGLE_TOL])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--held-out", required=True, help="a `jepalab collect pusht` file "
                        "the runs did not train on")
    parser.add_argument("--fit-frames", type=int, default=20000)
    parser.add_argument("--frozen", nargs="*", default=[], help="encoders (run directories or "
                        "encoder.safetensors) whose patch tokens to read as well, fitted on "
                        "the first run's training file")
    parser.add_argument("--pool", type=int, default=1, help="--frozen: k x k tokens averaged")
    args = parser.parse_args()
    torch.manual_seed(0)
    test_frames, test_state = _frames(args.held_out)
    rows, raw_done = [], set()
    floor = None
    for run in args.runs:
        model, _ = load_world_model(run)
        cfg = run_config(Path(run))
        described = json.loads((Path(run) / "data.json").read_text())
        fit_frames, fit_state = _frames(cfg.data.name.split(":", 1)[1], args.fit_frames)
        untrained = build_method(cfg, described["action_dim"] * described["frameskip"]).eval()
        encoders = [(run, lambda p, m=model: _encode(m, p)),
                    ("  random init", lambda p, m=untrained: _encode(m, p))]
        if (cfg.data.name, cfg.data.image_size) not in raw_done:   # once per file and size
            raw_done.add((cfg.data.name, cfg.data.image_size))
            encoders.append((f"  raw pixels ({cfg.data.image_size} px)",
                             _raw(cfg.data.image_size)))
        if run == args.runs[0]:
            encoders += [(f"  {path} patch tokens, pool {args.pool}",
                          _patch_tokens(path, args.pool, fit_frames[0])) for path in args.frozen]
        for name, encode in encoders:
            rows.append((name, readout(encode, fit_frames, fit_state, test_frames, test_state)))
        if floor is None:
            near = _nearest(_in_tolerances(fit_state), _in_tolerances(test_state))
            floor = _errors(_targets(fit_state)[near], _targets(test_state))
    print(f"the state read from each encoder on {len(test_state)} held-out frames (median "
          f"errors; the success test allows 20 units for agent and T together, 20 degrees)")
    print(f"{'encoder':<40} {'MLP: agent':>12} {'T':>6} {'angle':>6} {'passes':>6}   "
          f"{'nearest: agent':>14} {'T':>6} {'angle':>6} {'passes':>6}")
    for name, r in rows + [("nearest training state (the floor)", {"nearest": floor})]:
        cells = []
        for way in ("mlp", "nearest"):
            e = r.get(way)
            cells.append(f"{e['agent']:6.1f} {e['T']:6.1f} {e['angle_deg']:5.1f}d "
                         f"{100 * e['passes']:5.0f}%" if e else f"{'':>27}")
        print(f"{name:<40} {cells[0]:>33}   {cells[1]:>35}")


if __name__ == "__main__":
    main()
