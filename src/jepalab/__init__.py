"""jepalab: joint-embedding predictive architectures, their ancestors, and latent world models."""
from __future__ import annotations

import os
import sys
from pathlib import Path

__version__ = "0.1.0"

# OpenMP threads that finish their share of an operation early spin until the others are
# done. When another process takes a core, the thread that shares it arrives late at every
# barrier while its partner burns the free core spinning: vit_nano I-JEPA at 32 px on 2 cores
# kept 0.38 of its idle speed beside one busy process (0.6 with passive waits), and a 16 px
# run fell 30-50x. Passive waits cost 10-25% of the idle speed and keep a shared machine
# usable (benchmarks/throughput.py --contended; README, "Threads"). OpenMP reads the
# policy when torch loads, so it is set only if torch is not loaded yet, and never over the
# user's own choice.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def load(path: str | Path):
    """The trained encoder (an nn.Module in eval mode) of a run directory or exported file.

    `path` is a run directory (its latest checkpoint), a checkpoint folder, or an
    `encoder.safetensors` file written by jepalab.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    from jepalab import checkpoint
    from jepalab.errors import RunKindError
    from jepalab.nn.vit import VisionTransformer, ViTSpec

    path = Path(path)
    if path.is_dir():
        folder = path if (path / "encoder.safetensors").exists() else checkpoint.latest(path)
        if folder is None:
            raise FileNotFoundError(f"{path} holds no checkpoint (no checkpoint-*/ with "
                                    "encoder.safetensors); train first or pass a file")
        checkpoint.verify(folder, ("encoder.safetensors",))
        path = folder / "encoder.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for foreign files
        raise RunKindError(f"{path} is not a safetensors file jepalab can read ({e})") from None
    if meta.get("format") == "jepalab-module":
        raise RunKindError(f"{path} holds a {meta.get('class')} encoder, not a ViT; jepalab.load "
                         "rebuilds ViT encoders only. Build the method from the run's "
                         "config.json and load the checkpoint's model.safetensors into it")
    if meta.get("format") != "jepalab-vit":
        raise RunKindError(f"{path} is not a jepalab encoder file (metadata format "
                         f"{meta.get('format')!r}, expected 'jepalab-vit')")
    spec = ViTSpec(meta["arch"], int(meta["image_size"]), int(meta["patch_size"]),
                   int(meta["in_chans"]), bool(int(meta.get("class_token", "0"))),
                   int(meta.get("frames", "1")), int(meta.get("tubelet", "2")))
    encoder = VisionTransformer(spec)
    encoder.load_state_dict(load_file(path))
    return encoder.eval()
