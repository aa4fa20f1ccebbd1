"""`jepalab export`: a run's evaluation encoder alone, in one safetensors file.

The file holds the encoder's weights under timm's `VisionTransformer` names and, in its
safetensors metadata, the encoder's spec (format jepalab-vit, so `jepalab.load(FILE)` reads
it back), the run's config, and with `--format timm` the `timm.create_model` name and
keyword arguments that rebuild the same network:

    import json, timm
    from safetensors import safe_open
    from safetensors.torch import load_file
    meta = safe_open(FILE, "pt").metadata()
    model = timm.create_model(meta["timm_model"], pretrained=False,
                              **json.loads(meta["timm_kwargs"]))
    model.load_state_dict(load_file(FILE))

Our ViT is timm's with fixed sin-cos positions stored as `pos_embed`, no class token (mean
pooling; timm's `class_token=False, global_pool="avg", fc_norm=False`) or a class token
without a position (timm's `no_embed_class=True`). Video encoders (tubelets) have no timm
counterpart and export in the safetensors format only.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from jepalab.config import ConfigError
from jepalab.nn.vit import ARCHS

FORMATS = ("safetensors", "timm")
# our sizes with a timm name (patch and image size are set through the keyword arguments)
TIMM_NAMES = {"vit_tiny": "vit_tiny_patch16_224", "vit_small": "vit_small_patch16_224",
              "vit_base": "vit_base_patch16_224"}


def timm_arguments(spec) -> tuple[str, dict]:
    """The timm model name and create_model keyword arguments of an image ViT spec."""
    if spec.video:
        raise ConfigError(f"a video encoder ({spec.frames} frames, tubelets of {spec.tubelet}) "
                          "has no timm VisionTransformer counterpart; export it with "
                          "--format safetensors")
    dim, depth, heads = ARCHS[spec.arch]
    kwargs = {"img_size": spec.image_size, "patch_size": spec.patch_size,
              "in_chans": spec.in_chans, "num_classes": 0, "qkv_bias": True, "mlp_ratio": 4.0}
    if spec.class_token:
        kwargs.update(class_token=True, no_embed_class=True, global_pool="token")
    else:
        kwargs.update(class_token=False, global_pool="avg", fc_norm=False)
    name = TIMM_NAMES.get(spec.arch)
    if name is None:  # no timm preset of this size: the generic class with our widths
        name = "vit_base_patch16_224"
        kwargs.update(embed_dim=dim, depth=depth, num_heads=heads)
    return name, kwargs


def export_encoder(encoder: torch.nn.Module, out: str | Path, *, fmt: str = "safetensors",
                   config: dict | None = None) -> Path:
    """Write `encoder` (a jepalab ViT) to `out`; see the module docstring for the format."""
    from jepalab.checkpoint import encoder_metadata

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose {' or '.join(FORMATS)}")
    metadata = encoder_metadata(encoder)
    if metadata["format"] != "jepalab-vit":
        raise ConfigError(f"the encoder is a {metadata.get('class')}, not a ViT: only ViT "
                          "encoders are exported")
    if fmt == "timm":
        name, kwargs = timm_arguments(encoder.spec)
        metadata.update(timm_model=name, timm_kwargs=json.dumps(kwargs))
    if config is not None:
        metadata["config"] = json.dumps(config)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    state = {k: v.detach().contiguous().cpu() for k, v in encoder.state_dict().items()}
    save_file(state, temporary, metadata=metadata)
    temporary.replace(out)
    return out


def export_run(run_dir: str | Path, out: str | Path | None = None,
               fmt: str = "safetensors") -> Path:
    """Export the evaluation encoder of a run's newest checkpoint (checksum verified)."""
    import jepalab

    run_dir = Path(run_dir)
    encoder = jepalab.load(run_dir)
    config_file = run_dir / "config.json"
    config = json.loads(config_file.read_text()) if config_file.exists() else None
    out = Path(out) if out else run_dir / f"encoder-{fmt}.safetensors"
    return export_encoder(encoder, out, fmt=fmt, config=config)
