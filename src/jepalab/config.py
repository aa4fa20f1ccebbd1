"""Typed configuration: dataclasses, YAML recipes, dotted overrides, strict validation.

A recipe is a YAML file with the sections below; `method.name` chooses the method, whose
own `Config` dataclass (in its module) types the other `method.*` keys. Everything is
checked before any work starts: an unknown key, a value of the wrong type or an
impossible value raises `ConfigError` naming the key, the value and the nearest valid
choice.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jepalab.errors import UserError

RECIPES_DIR = Path(__file__).parent / "recipes"
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "bf16-native")


class ConfigError(UserError, ValueError):
    """A configuration problem; the message says which key and what would be valid."""


@dataclass
class ModelConfig:
    arch: str = "vit_nano"
    patch_size: int = 4

    def validate(self) -> None:
        from jepalab.nn.vit import ARCHS

        _choose("model.arch", self.arch, ARCHS)
        _positive("model.patch_size", self.patch_size)


@dataclass
class DataConfig:
    name: str = "shapes"
    image_size: int = 32
    seed: int = 0          # fixes the train/val/test split (and the shapes' draws)
    num_train: int = 0     # shapes, moving_shapes: size of the training split (0: default)
    frames: int = 8        # videos only: frames per clip
    window: int = 4        # trajectories only: frames per training window ...
    frameskip: int = 5     # ... this many env steps apart (one block action between two);
    #                        videofolder: frames this many apart in the video
    on_bad_file: str = "stop"  # imagefolder / videofolder: an unreadable file stops the load
    #                            naming it, or (skip) is left out and counted in data.json
    stream: bool = False   # imagefolder / videofolder / trajectories: read files as batches
    #                        need them (data larger than memory) instead of all at load;
    #                        same batches, slower per step

    @property
    def kind(self) -> str:
        """What the data set serves, e.g. "images" or "trajectories" (see data/catalog.py)."""
        from jepalab.data.catalog import kind_of

        return kind_of(self.name)

    def validate(self) -> None:
        from jepalab.data.catalog import source, streaming_names
        from jepalab.data.images import DataError

        try:
            streams = source(self.name).streams
        except DataError as e:
            raise ConfigError(f"data.name: {e}") from None
        if self.stream and not streams:
            raise ConfigError(f"data.stream: {self.name!r} cannot stream (built-in data is made "
                              f"in memory); data sets that can: {', '.join(streaming_names())}")
        if self.stream and self.on_bad_file == "skip":
            raise ConfigError("data.on_bad_file=skip needs every file decoded up front, which "
                              "data.stream=true avoids; with streaming an unreadable file stops "
                              "the run naming it: use data.on_bad_file=stop, or data.stream=false")
        kind = self.name.partition(":")[0]
        _positive("data.image_size", self.image_size)
        if self.window < 2:
            raise ConfigError(f"data.window must be >= 2 frames (a context and a target), got "
                              f"{self.window}")
        _positive("data.frameskip", self.frameskip)
        _choose("data.on_bad_file", self.on_bad_file, ("stop", "skip"))
        generated = ("shapes", "moving_shapes", "moving_shapes_hard", "moving_shapes_frames",
                     "moving_shapes_hard_frames")
        if self.num_train < 0 or (self.num_train and kind not in generated):
            raise ConfigError(f"data.num_train: only the generated data sets "
                              f"({', '.join(generated)}) take a training split size (>= 1), "
                              f"got {self.num_train} for {self.name!r}")
        if self.frames < 2:
            raise ConfigError(f"data.frames must be >= 2 (motion needs two frames), got "
                              f"{self.frames}")


@dataclass
class OptimConfig:
    lr: float = 1e-3               # peak learning rate (AdamW), after warmup
    min_lr: float = 1e-6           # end of the cosine decay
    warmup_steps: int = 100        # linear warmup from 0
    weight_decay: float = 0.04     # start of the cosine weight-decay schedule
    weight_decay_end: float = 0.4  # its end (I-JEPA: 0.04 -> 0.4)
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0         # max gradient norm; 0 turns clipping off

    def validate(self) -> None:
        _positive("optim.lr", self.lr)
        for key in ("min_lr", "warmup_steps", "weight_decay", "weight_decay_end", "grad_clip"):
            if getattr(self, key) < 0:
                raise ConfigError(f"optim.{key} must be >= 0, got {getattr(self, key)}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {self.betas}")


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 128          # global: split evenly across processes
    seed: int = 0
    device: str = "auto"           # auto, cpu, cuda, cuda:N, mps
    precision: str = "auto"        # auto: bf16 on GPUs that have it, else fp32; bf16-native:
    #                                bf16 also on CPUs that compute it natively (AVX512-BF16)
    log_every: int = 25
    monitor_every: int = 250       # collapse diagnostics of the embedder (or eval encoder); 0: off
    collapse_rankme: float = 1.5   # warn when RankMe falls below this (0: off) ...
    collapse_spread: float = 0.2   # ... or an embedder's spread (1 = isotropic) below this
    collapse_fatal: bool = False   # stop the run (with a checkpoint) at the collapse warning
    checkpoint_every: int = 500
    run_dir: str = ""              # default: runs/<recipe>-<time>
    tensorboard: bool = False
    wandb: bool = False            # also log to Weights & Biases (WANDB_MODE=offline: no network)
    threads: int = 0               # torch CPU threads; 0 leaves torch's default
    on_nonfinite: str = "stop"     # a NaN/inf loss or gradient: stop, or skip the step (counted)
    compile: bool = False          # torch.compile the training step's forward (README: speed)
    parallel: str = "ddp"          # several processes (torchrun): ddp (replicas) or fsdp (FSDP2:
    #                                parameters, gradients and optimiser state sharded)

    def validate(self) -> None:
        for key in ("steps", "batch_size", "log_every", "checkpoint_every"):
            _positive(f"train.{key}", getattr(self, key))
        for key in ("monitor_every", "threads", "collapse_rankme", "collapse_spread"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train.{key} must be >= 0, got {getattr(self, key)}")
        _choose("train.precision", self.precision, PRECISIONS)
        _choose("train.on_nonfinite", self.on_nonfinite, ("stop", "skip"))
        _choose("train.parallel", self.parallel, ("ddp", "fsdp"))
        if self.device not in ("auto", "cpu", "mps") and not self.device.startswith("cuda"):
            raise ConfigError(f"train.device: unknown device {self.device!r}; valid: auto, cpu, "
                              "cuda, cuda:N, mps")


@dataclass
class Config:
    method: Any = None             # the method module's Config; its name is in `method_name`
    method_name: str = "ijepa"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    recipe: str = ""

    def validate(self) -> Config:
        for section in (self.model, self.data, self.optim, self.train):
            section.validate()
        if self.data.image_size % self.model.patch_size:
            raise ConfigError(f"data.image_size {self.data.image_size} must be a multiple of "
                              f"model.patch_size {self.model.patch_size}")
        try:
            self.method.validate()
        except ValueError as e:
            raise ConfigError(str(e)) from None
        from jepalab.data.catalog import example
        from jepalab.methods import method_module

        wants = getattr(method_module(self.method_name), "DATA_KIND", "images")
        wants = (wants,) if isinstance(wants, str) else tuple(wants)
        if self.data.kind not in wants:
            raise ConfigError(f"data.name: method {self.method_name!r} trains on "
                              f"{' or '.join(wants)}, but "
                              f"{self.data.name!r} is {self.data.kind}; use {example(wants[0])}")
        return self

    def to_dict(self) -> dict:
        out = {"recipe": self.recipe, "method": {"name": self.method_name,
                                                  **dataclasses.asdict(self.method)}}
        for key in ("model", "data", "optim", "train"):
            out[key] = dataclasses.asdict(getattr(self, key))
        return _plain(out)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "train": TrainConfig}


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _near(word: str, choices) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


def _choose(key: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: {value!r} is not valid; choose one of "
                          f"{', '.join(map(str, choices))}{_near(str(value), choices)}")


def _positive(key: str, value) -> None:
    if not value > 0:
        raise ConfigError(f"{key} must be > 0, got {value}")


def _coerce(key: str, value, annotation):
    """Check `value` against a field annotation (bool, int, float, str, tuple[float, ...])."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        item_types = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)) or len(value) != len(item_types):
            raise ConfigError(f"{key} must be a list of {len(item_types)} numbers like "
                              f"[0.1, 0.2], got {value!r}")
        return tuple(_coerce(key, v, t) for v, t in zip(value, item_types))
    if annotation is float and isinstance(value, str):  # YAML 1.1 reads 3e-3 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, str, bool) and type(value) is annotation:
        return value
    if annotation is Any:
        return value
    raise ConfigError(f"{key} must be {annotation.__name__}, got {value!r} "
                      f"({type(value).__name__})")


def build_section(cls, values: dict, prefix: str):
    """Instantiate dataclass `cls` from a dict, refusing unknown keys and wrong types."""
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix} must be a mapping of keys to values, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown key {prefix}.{key}; valid keys in {prefix}: "
                              f"{', '.join(names)}{_near(key, names)}")
        kwargs[key] = _coerce(f"{prefix}.{key}", value, hints[key])
    return cls(**kwargs)


def from_dict(raw: dict, recipe: str = "") -> Config:
    """Build and validate a Config from nested dicts (a parsed recipe plus overrides)."""
    from jepalab.methods import METHODS, method_module

    if not isinstance(raw, dict):
        raise ConfigError(f"a recipe must be a mapping of sections, got {type(raw).__name__}")
    valid = ["method", *SECTIONS, "recipe"]
    for key in raw:
        if key not in valid:
            raise ConfigError(f"unknown section {key!r}; valid sections: {', '.join(valid)}"
                              f"{_near(key, valid)}")
    if not isinstance(raw.get("method") or {}, dict):
        raise ConfigError(f"method must be a mapping of keys to values, got {raw['method']!r}")
    method_values = dict(raw.get("method") or {})
    name = method_values.pop("name", "ijepa")
    if not isinstance(name, str) or name not in METHODS:
        raise ConfigError(f"method.name: unknown method {name!r}; valid: {', '.join(METHODS)}"
                          f"{_near(str(name), METHODS)}")
    config = Config(method=build_section(method_module(name).Config, method_values, "method"),
                    method_name=name, recipe=raw.get("recipe") or recipe)
    for key, cls in SECTIONS.items():
        setattr(config, key, build_section(cls, raw.get(key) or {}, key))
    return config.validate()


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def read_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections (method, model, data, "
                          f"optim, train), got {type(raw).__name__} {raw!r:.40}")
    return raw


def load_recipe(name_or_path: str) -> tuple[dict, str]:
    """A recipe by name (recipes/NAME.yaml) or by path; returns (raw dict, recipe name)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ConfigError(f"recipe file {str(path)!r} does not exist")
        return read_yaml(path), path.stem
    names = recipe_names()
    if name_or_path not in names:
        raise ConfigError(f"unknown recipe {name_or_path!r}; available: {', '.join(names)}"
                          f"{_near(name_or_path, names)}")
    return read_yaml(RECIPES_DIR / f"{name_or_path}.yaml"), name_or_path


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings to nested dicts; values are parsed as YAML."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(f"override {item!r} must look like section.key=value, "
                              "e.g. train.steps=500 or method.loss=l2")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        raw.setdefault(parts[0], {})
        if not isinstance(raw[parts[0]], dict):
            raise ConfigError(f"override {item!r}: {parts[0]!r} is not a section")
        raw[parts[0]][parts[1]] = value
    return raw


def absolute_paths(cfg: Config) -> Config:
    """`cfg` with its file paths made absolute (a data set's PATH in NAME:PATH and the
    method keys its Config lists in PATHS), so a run's config.json works from any directory
    and after the run is moved."""
    prefix, sep, path = cfg.data.name.partition(":")
    data = dataclasses.replace(cfg.data, name=f"{prefix}:{Path(path).expanduser().resolve()}"
                               if sep and path else cfg.data.name)
    words = getattr(cfg.method, "PATH_WORDS", ())  # values of those keys that name no file
    changes = {key: str(Path(value).expanduser().resolve())
               for key in getattr(cfg.method, "PATHS", ())
               if (value := getattr(cfg.method, key)) and value not in words}
    return dataclasses.replace(cfg, data=data, method=dataclasses.replace(cfg.method, **changes))


def load_config(recipe: str, overrides: list[str] = ()) -> Config:
    raw, name = load_recipe(recipe)
    return from_dict(apply_overrides(raw, list(overrides)), recipe=name)
