"""Self-supervised methods, one file each, and the registry the config and trainer use.

A method module defines `Config` (a dataclass of its hyperparameters, paper defaults)
and `Method` (an nn.Module; the contract is written as Protocols in jepalab/build.py) with:
  forward(batch) -> StepOutput        batch: {"images": uint8 (B,3,H,W), "labels": (B,)}
  on_step_end(progress: float)        after each optimiser step (EMA teachers, schedules)
  eval_encoder() -> nn.Module         the encoder that probes and exports read
  embedder() -> nn.Module             optional: what the loss's embeddings come from (e.g.
                                      backbone + projector), with .features(x); the collapse
                                      monitor reads it; without it, the eval encoder
  preview(batch) -> frames            optional: uint8 (T, H, W, 3), a few training examples
                                      as the loss sees them (V-JEPA: clip views with their
                                      tube masks); the trainer writes them once, at the
                                      start of a fresh run, as RUN_DIR/clips.gif
A world model (jepalab.world) is a method too: its module sets DATA_KIND = "trajectories",
its batches are {"frames", "actions", "proprio"} windows and its third argument is the
block action's size instead of the number of classes.
A module states the data kind it trains on as DATA_KIND (default "images"; see
data/catalog.py). The trainer knows methods only through this interface, never by name.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from types import ModuleType

import torch

METHODS = {
    "barlow": "jepalab.methods.barlow",
    "byol": "jepalab.methods.byol",
    "cpc": "jepalab.methods.cpc",
    "dino": "jepalab.methods.dino",
    "dino-wm": "jepalab.world.dino_wm",
    "ijepa": "jepalab.methods.ijepa",
    "ijepa-sigreg": "jepalab.methods.ijepa_sigreg",
    "imax": "jepalab.methods.imax",
    "lewm": "jepalab.world.lewm",
    "lejepa": "jepalab.methods.lejepa",
    "mae": "jepalab.methods.mae",
    "mocov2": "jepalab.methods.mocov2",
    "mocov3": "jepalab.methods.mocov3",
    "simclr": "jepalab.methods.simclr",
    "supervised": "jepalab.methods.supervised",
    "vicreg": "jepalab.methods.vicreg",
    "vjepa": "jepalab.methods.vjepa",
    "vjepa-sigreg": "jepalab.methods.vjepa_sigreg",
    "vjepa-ac": "jepalab.world.vjepa_ac",
}


@dataclass
class StepOutput:
    """The step's loss and what to log beside it: floats, or 0-dim tensors (detached) that
    stay on the device until the trainer reads them at a log step, so that a step needs no
    host sync."""
    loss: torch.Tensor
    logs: dict[str, float | torch.Tensor] = field(default_factory=dict)


def method_module(name: str) -> ModuleType:
    if name not in METHODS:
        near = difflib.get_close_matches(name, METHODS, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise KeyError(f"unknown method {name!r}; valid: {', '.join(METHODS)}.{hint}")
    return importlib.import_module(METHODS[name])
