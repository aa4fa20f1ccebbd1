"""Checkpoints: safetensors weights, JSON metadata, atomic writes, exact resume.

A run directory holds `checkpoint-<step>/` folders and a `latest` file naming the newest
complete one. Each folder has
  model.safetensors      the method's full state (encoders, predictor, EMA teacher, buffers)
  encoder.safetensors    the evaluation encoder alone: a ViT with timm-style names and its spec
                         as metadata (format jepalab-vit), or any other module's weights with
                         its class name (format jepalab-module), which `jepalab.load` refuses
  optimizer.safetensors  the optimiser's tensors
  state.json             step, optimiser scalars and param groups, RNG state, config
Nothing is unpickled when loading. Folders are written under a temporary name, fsynced and
renamed; `latest` is replaced atomically; so a run killed at any moment resumes from the
last complete checkpoint.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

KEEP = 2  # complete checkpoints kept per run


class CheckpointError(RuntimeError):
    """A checkpoint could not be read; the message names the file."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _contiguous(state: dict) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def encoder_metadata(encoder: torch.nn.Module) -> dict[str, str]:
    spec = getattr(encoder, "spec", None)
    if spec is None:  # not a ViT (e.g. IMAX's row of modules): weights and class name only
        kind = type(encoder)
        return {"format": "jepalab-module", "class": f"{kind.__module__}.{kind.__qualname__}"}
    return {"format": "jepalab-vit", "arch": spec.arch, "image_size": str(spec.image_size),
            "patch_size": str(spec.patch_size), "in_chans": str(spec.in_chans),
            "frames": str(spec.frames), "tubelet": str(spec.tubelet),
            "class_token": str(int(spec.class_token))}


def _split_optimizer(state: dict) -> tuple[dict, dict]:
    """Optimiser state_dict -> (tensors by flat name, JSON-able rest)."""
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict, rest: dict) -> dict:
    state: dict = {}
    for flat, value in list(tensors.items()) + list(rest["scalars"].items()):
        index, name = flat.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save(run_dir: Path, step: int, method: torch.nn.Module, optimizer: torch.optim.Optimizer,
         extra: dict | None = None) -> Path:
    """Write checkpoint-<step> atomically, point `latest` at it, prune old ones."""
    run_dir = Path(run_dir)
    final = run_dir / f"checkpoint-{step:07d}"
    temporary = run_dir / f".checkpoint-{step:07d}.{os.getpid()}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    encoder = method.eval_encoder()
    save_file(_contiguous(method.state_dict()), temporary / "model.safetensors")
    save_file(_contiguous(encoder.state_dict()), temporary / "encoder.safetensors",
              metadata=encoder_metadata(encoder))
    optimizer_tensors, optimizer_rest = _split_optimizer(optimizer.state_dict())
    save_file(_contiguous(optimizer_tensors), temporary / "optimizer.safetensors")
    state = {"step": step, "optimizer": optimizer_rest, **(extra or {})}
    (temporary / "state.json").write_text(json.dumps(state, indent=1))
    for file in temporary.iterdir():
        with open(file, "rb") as f:
            os.fsync(f.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)
    _fsync_dir(run_dir)
    atomic_write_text(run_dir / "latest", final.name + "\n")
    for old in sorted(run_dir.glob("checkpoint-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    run_dir = Path(run_dir)
    pointer = run_dir / "latest"
    if pointer.exists():
        folder = run_dir / pointer.read_text().strip()
        if (folder / "state.json").exists():
            return folder
    complete = [p for p in sorted(run_dir.glob("checkpoint-*")) if (p / "state.json").exists()]
    return complete[-1] if complete else None


def step_of(folder: Path) -> int:
    """The training step a complete checkpoint folder was written at."""
    return json.loads((Path(folder) / "state.json").read_text())["step"]


def _load(file: Path) -> dict:
    try:
        return load_file(file)
    except Exception as e:  # safetensors raises several types for damaged files
        raise CheckpointError(f"cannot read checkpoint file {file}: {e}") from None


def restore(folder: Path, method: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Load a checkpoint folder into method and optimizer; return its state.json dict."""
    folder = Path(folder)
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {folder / 'state.json'}: {e}") from None
    device = next(method.parameters()).device
    method.load_state_dict({k: v.to(device) for k, v in
                            _load(folder / "model.safetensors").items()})
    optimizer_tensors = {k: v.to(device) if not k.endswith(".step") else v
                         for k, v in _load(folder / "optimizer.safetensors").items()}
    optimizer.load_state_dict(_join_optimizer(optimizer_tensors, state["optimizer"]))
    return state
