"""What the trainer asks for, in one place: a config's data and its method.

The data comes from the catalogue (data/catalog.py) by name, whatever its kind; the method
from the registry (methods/__init__.py) by name, told what its data declares. The trainer
calls these and the protocols below, and names no data kind and no method.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch

from jepalab.config import Config, ConfigError
from jepalab.data import catalog
from jepalab.methods import StepOutput, method_module
from jepalab.nn.vit import ViTSpec


class DataSet(Protocol):
    """A loaded data set of any kind (ImageData, TrajectoryData, ...)."""
    train: object             # a split: len(split), split.batch(index) -> dict of tensors
    val: object

    @property
    def declares(self) -> int:
        """What its method is told: the number of classes, the block action's size, ..."""

    def monitor_inputs(self, n: int) -> torch.Tensor:
        """What the collapse monitor encodes: n validation inputs."""

    def describe(self) -> dict:
        """What the run trained on, for its data.json."""


class Method(Protocol):
    """The method contract: one training step's loss, a hook after each optimiser step,
    the encoder that probes and exports read."""

    def __call__(self, batch: dict[str, torch.Tensor]) -> StepOutput: ...

    def on_step_end(self, progress: float) -> None:
        """After each optimiser step, `progress` = steps done / total (EMA teachers)."""

    def eval_encoder(self) -> torch.nn.Module: ...


@runtime_checkable
class Embeds(Protocol):
    """A method whose loss compares embeddings of its own (a projector's output, I-JEPA's
    target tokens): `embedder()` has `.features(x)`, and the collapse monitor reads it."""

    def embedder(self) -> torch.nn.Module: ...


@runtime_checkable
class Previews(Protocol):
    """A method that can show what it trains on: `preview(batch)` draws a few examples of a
    training batch as its loss sees them (V-JEPA: the clips' views with their tube masks)
    into uint8 frames (T, H, W, 3); the trainer writes them as RUN_DIR/clips.gif at the
    start of a fresh run."""

    def preview(self, batch: dict[str, torch.Tensor]) -> np.ndarray: ...


def embeds(method: Method) -> bool:
    """Whether the method has embeddings of its own for the monitor (`Embeds`)."""
    return isinstance(method, Embeds)


def monitored(method: Method) -> torch.nn.Module:
    """What the collapse monitor encodes: the method's embedder, else its eval encoder."""
    return method.embedder() if embeds(method) else method.eval_encoder()


def load_data(cfg: Config) -> DataSet:
    return catalog.load(cfg.data)


def backbone_spec(cfg: Config) -> ViTSpec:
    """The ViT of `cfg`: over clips of data.frames frames for video data, else images."""
    frames = cfg.data.frames if catalog.kind_of(cfg.data.name) == "videos" else 1
    return ViTSpec(cfg.model.arch, cfg.data.image_size, cfg.model.patch_size, frames=frames)


def build_method(cfg: Config, declared: int) -> Method:
    """The method of `cfg`; `declared` is what its data declares (`DataSet.declares`).
    A constructor's ValueError is a setting that cannot be built (e.g. more CPC rows ahead
    than the grid has): reported as the config error it is."""
    try:
        return method_module(cfg.method_name).Method(cfg.method, backbone_spec(cfg), declared)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"method {cfg.method_name!r} cannot be built with these settings: "
                          f"{e}") from e
