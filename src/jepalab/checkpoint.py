"""Checkpoints: safetensors weights, JSON metadata, atomic writes, exact resume.

A run directory holds `checkpoint-<step>/` folders and a `latest` file naming the newest
complete one. Each folder has
  model.safetensors      the method's full state (encoders, predictor, EMA teacher, buffers)
  encoder.safetensors    the evaluation encoder alone: a ViT with timm-style names and its spec
                         as metadata (format jepalab-vit), or any other module's weights with
                         its class name (format jepalab-module), which `jepalab.load` refuses
  optimizer.safetensors  the optimiser's tensors
  state.json             step, optimiser scalars and param groups, RNG state, config, and
                         the sha256 of each file above
Nothing is unpickled when loading.

Whatever the number of processes and the engine, a checkpoint holds whole tensors: in a
multi-process run every process calls `save`, FSDP2's shards are gathered (a collective)
and the main process writes; `restore` cuts each process's shard out again. So a run saved
by N processes resumes with any M. (torch.distributed.checkpoint's sharded files would
spare the gather, but DCP unpickles its metadata on load, and whole files keep one format,
its checksums and `jepalab.load` for every run; they cost the main process the method and
its optimiser state whole in CPU memory once per save.)

Folders are written under a temporary name, fsynced and renamed; `latest` is replaced
atomically; older checkpoints are pruned only after a newer one is complete; so a run
killed at any moment resumes from the last complete checkpoint. Resuming verifies the
checksums and falls back, with a warning naming the damaged file, to the previous
checkpoint. A save that fails (a full disk) removes its partial folder and says that the
previous checkpoint is intact. Files follow the user's umask.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from jepalab import distributed
from jepalab.errors import UserError

KEEP = 2  # complete checkpoints kept per run


class CheckpointError(UserError, RuntimeError):
    """A checkpoint could not be read or written; the message names the file."""


class DamagedCheckpointWarning(UserWarning):
    """The newest checkpoint was damaged and an older one was used."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def _whole(state: dict, keep: bool) -> dict:
    """CPU copies of a state dict's tensors, each shard (FSDP2) gathered whole first, which
    every process must do in the same order; {} where not `keep`."""
    whole = {}
    for key, value in state.items():
        value = distributed.full_tensor(value.detach())
        if keep:
            whole[key] = value.contiguous().cpu()
    return whole


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
         extra: dict | None = None, *, write: bool = True) -> Path | None:
    """Write checkpoint-<step> atomically, point `latest` at it, prune old ones. Under FSDP2
    every process calls it and only the one with `write` writes; it returns the folder, or
    None where it wrote nothing."""
    encoder = method.eval_encoder()
    optimizer_tensors, optimizer_rest = _split_optimizer(optimizer.state_dict())
    files = {"model.safetensors": (_whole(method.state_dict(), write), None),
             "encoder.safetensors": (_whole(encoder.state_dict(), write),
                                     encoder_metadata(encoder)),
             "optimizer.safetensors": (_whole(optimizer_tensors, write), None)}
    if not write:
        return None
    run_dir = Path(run_dir)
    final = run_dir / f"checkpoint-{step:07d}"
    temporary = run_dir / f".checkpoint-{step:07d}.{os.getpid()}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        _write(temporary, step, files, optimizer_rest, extra)
    except OSError as e:  # a full disk, a quota, a vanished mount: keep what was there
        shutil.rmtree(temporary, ignore_errors=True)
        previous = latest(run_dir)
        raise CheckpointError(
            f"could not write checkpoint {final} ({e.strerror or e}); "
            + (f"the previous checkpoint {previous} is intact and the run resumes from it"
               if previous else "there is no earlier checkpoint")) from None
    if final.exists():  # the same step saved again (a resumed run): swap, then remove
        stale = run_dir / f".stale-{final.name}.{os.getpid()}"
        os.replace(final, stale)
        os.replace(temporary, final)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.replace(temporary, final)
    _fsync_dir(run_dir)
    atomic_write_text(run_dir / "latest", final.name + "\n")
    for old in sorted(run_dir.glob("checkpoint-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write(folder: Path, step: int, files: dict[str, tuple[dict, dict | None]],
           optimizer_rest: dict, extra: dict | None) -> None:
    """`files`: file name -> (tensors, safetensors metadata)."""
    folder.mkdir(parents=True)
    for name, (tensors, metadata) in files.items():
        save_file(tensors, folder / name, metadata=metadata)
    mode = 0o666 & ~_umask()  # safetensors writes 0600; a shared run should follow the umask
    sha256 = {}
    for file in sorted(folder.iterdir()):
        os.chmod(file, mode)
        sha256[file.name] = _sha256(file)
    state = {"step": step, "optimizer": optimizer_rest, **(extra or {}), "sha256": sha256}
    (folder / "state.json").write_text(json.dumps(state, indent=1))
    for file in folder.iterdir():
        with open(file, "rb") as f:
            os.fsync(f.fileno())


def remove_partial(run_dir: Path) -> None:
    """Remove the half-written folders a killed save left behind (one trainer per run)."""
    for folder in [*Path(run_dir).glob(".checkpoint-*.tmp"), *Path(run_dir).glob(".stale-*")]:
        shutil.rmtree(folder, ignore_errors=True)


def complete(run_dir: Path) -> list[Path]:
    """The run's complete checkpoint folders (with a state.json), newest first."""
    return [p for p in sorted(Path(run_dir).glob("checkpoint-*"), reverse=True)
            if (p / "state.json").exists()]


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    run_dir = Path(run_dir)
    pointer = run_dir / "latest"
    if pointer.exists():
        folder = run_dir / pointer.read_text().strip()
        if (folder / "state.json").exists():
            return folder
    found = complete(run_dir)
    return found[0] if found else None


def verify(folder: Path, names: tuple[str, ...] | None = None) -> None:
    """Check `folder`'s files (or those of `names`) against the sha256 in its state.json;
    raise CheckpointError naming the first that is missing or differs. Checkpoints written
    before checksums were recorded pass."""
    folder = Path(folder)
    recorded = _state(folder).get("sha256", {})
    for name, digest in recorded.items():
        if names is not None and name not in names:
            continue
        file = folder / name
        if not file.exists():
            raise CheckpointError(f"checkpoint file {file} is missing")
        if _sha256(file) != digest:
            raise CheckpointError(f"checkpoint file {file} is damaged (its sha256 differs "
                                  "from the one recorded when it was written)")


def restore_latest(run_dir: Path, method: torch.nn.Module,
                   optimizer: torch.optim.Optimizer) -> tuple[dict, Path]:
    """Restore the newest checkpoint of `run_dir` that verifies; each damaged one skipped
    is named in a DamagedCheckpointWarning. Returns (state.json dict, folder)."""
    problems = []
    for folder in complete(run_dir):
        try:
            verify(folder)
            return restore(folder, method, optimizer), folder
        except CheckpointError as e:
            problems.append(str(e))
            warnings.warn(f"{e}; trying the checkpoint before it", DamagedCheckpointWarning,
                          stacklevel=2)
    raise CheckpointError(f"no usable checkpoint in {run_dir}"
                          + (": " + "; ".join(problems) if problems else ""))


def step_of(folder: Path) -> int:
    """The training step a complete checkpoint folder was written at."""
    return _state(folder)["step"]


def _load(file: Path) -> dict:
    try:
        return load_file(file)
    except Exception as e:  # safetensors raises several types for damaged files
        raise CheckpointError(f"cannot read checkpoint file {file}: {e}") from None


def _state(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / "state.json").read_text())
    except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON
        raise CheckpointError(f"cannot read {Path(folder) / 'state.json'}: {e}") from None


def restore(folder: Path, method: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Load a checkpoint folder into method and optimizer; return its state.json dict."""
    folder = Path(folder)
    state = _state(folder)
    current = method.state_dict()  # under FSDP2, this process's shards: cut to match
    method.load_state_dict({k: distributed.shard_like(v, current[k]) if k in current else v
                            for k, v in _load(folder / "model.safetensors").items()})
    params = [p for group in optimizer.param_groups for p in group["params"]]
    optimizer_tensors = {k: v if k.endswith(".step") else
                         distributed.shard_like(v, params[int(k.split(".")[0])])
                         for k, v in _load(folder / "optimizer.safetensors").items()}
    optimizer.load_state_dict(_join_optimizer(optimizer_tensors, state["optimizer"]))
    return state
