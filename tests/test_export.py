"""`jepalab export`: the encoder alone, under timm's VisionTransformer names and shapes."""
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import jepalab
from jepalab.cli import main
from jepalab.config import ConfigError, load_config
from jepalab.export import export_encoder
from jepalab.nn.vit import VisionTransformer, ViTSpec
from jepalab.train import train


def timm_vit_keys(embed_dim, depth, img_size=224, patch=16, class_token=False):
    """The state-dict names and shapes of timm's VisionTransformer (timm/models/
    vision_transformer.py: PatchEmbed.proj Conv2d, Block = norm1, attn.qkv, attn.proj,
    norm2, mlp.fc1, mlp.fc2 with mlp_ratio 4 and qkv_bias; final norm; no head when
    num_classes=0; fc_norm=False; with class_token and no_embed_class=True the position
    table has the patches only), written out since timm cannot be imported here."""
    d, patches = embed_dim, (img_size // patch) ** 2
    keys = {"pos_embed": (1, patches, d), "patch_embed.proj.weight": (d, 3, patch, patch),
            "patch_embed.proj.bias": (d,), "norm.weight": (d,), "norm.bias": (d,)}
    if class_token:
        keys["cls_token"] = (1, 1, d)
    for i in range(depth):
        keys.update({f"blocks.{i}.norm1.weight": (d,), f"blocks.{i}.norm1.bias": (d,),
                     f"blocks.{i}.attn.qkv.weight": (3 * d, d),
                     f"blocks.{i}.attn.qkv.bias": (3 * d,),
                     f"blocks.{i}.attn.proj.weight": (d, d), f"blocks.{i}.attn.proj.bias": (d,),
                     f"blocks.{i}.norm2.weight": (d,), f"blocks.{i}.norm2.bias": (d,),
                     f"blocks.{i}.mlp.fc1.weight": (4 * d, d),
                     f"blocks.{i}.mlp.fc1.bias": (4 * d,),
                     f"blocks.{i}.mlp.fc2.weight": (d, 4 * d), f"blocks.{i}.mlp.fc2.bias": (d,)})
    return keys


@pytest.mark.parametrize("arch, dim, depth, name", [
    ("vit_tiny", 192, 12, "vit_tiny_patch16_224"), ("vit_small", 384, 12, "vit_small_patch16_224"),
    ("vit_base", 768, 12, "vit_base_patch16_224")])
@pytest.mark.parametrize("class_token", [False, True])
def test_timm_names_and_shapes(tmp_path, arch, dim, depth, name, class_token):
    encoder = VisionTransformer(ViTSpec(arch, 224, 16, class_token=class_token))
    path = export_encoder(encoder, tmp_path / "e.safetensors", fmt="timm")
    tensors = load_file(path)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == timm_vit_keys(
        dim, depth, class_token=class_token)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    kwargs = json.loads(meta["timm_kwargs"])
    assert meta["timm_model"] == name and kwargs["num_classes"] == 0
    assert kwargs["global_pool"] == ("token" if class_token else "avg")
    assert kwargs.get("no_embed_class", False) == class_token
    images = torch.randn(1, 3, 224, 224)
    assert torch.allclose(jepalab.load(path).features(images), encoder.features(images))


def test_export_of_a_run_loads_back_and_refuses_video_to_timm(tmp_path, capsys):
    cfg = load_config("ijepa-shapes", ["data.name=digits", "data.image_size=16",
                                       "model.patch_size=4", "train.batch_size=16",
                                       "train.steps=2", "train.monitor_every=0",
                                       "optim.warmup_steps=1", "method.predictor_depth=1",
                                       "method.predictor_width=32", "method.min_keep=2"])
    method = train(cfg, tmp_path / "run", show_progress=False)
    out = tmp_path / "exported.safetensors"
    assert main(["export", str(tmp_path / "run"), "--format", "timm", "--out", str(out)]) == 0
    images = torch.randn(2, 3, 16, 16)
    expected = method.eval_encoder().eval().features(images)
    assert torch.allclose(jepalab.load(out).features(images), expected, atol=1e-6)
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["config"])["method"]["name"] == "ijepa"
    kwargs = json.loads(meta["timm_kwargs"])
    assert (kwargs["embed_dim"], kwargs["depth"], kwargs["img_size"]) == (128, 4, 16)
    video = VisionTransformer(ViTSpec("vit_nano", 16, 4, frames=4))
    with pytest.raises(ConfigError, match="video encoder.*--format safetensors"):
        export_encoder(video, tmp_path / "v.safetensors", fmt="timm")
    export_encoder(video, tmp_path / "v.safetensors")  # its own format is fine
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
