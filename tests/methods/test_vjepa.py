"""V-JEPA: a step on clips, what its gradients reach, the EMA teacher, the config's refusals."""
import pytest
import torch

from jepalab.build import build_method
from jepalab.config import ConfigError, load_config
from jepalab.probe import probe_run
from jepalab.train import train

TINY = ["data.image_size=16", "data.frames=4", "model.patch_size=4", "method.predictor_depth=1",
        "method.predictor_width=32"]


def method():
    torch.manual_seed(0)
    return build_method(load_config("vjepa-moving-shapes", TINY), 10)


def test_a_step_trains_the_context_encoder_and_predictor_not_the_teacher():
    vjepa = method()
    clips = torch.randint(0, 256, (6, 4, 3, 16, 16), dtype=torch.uint8)
    out = vjepa({"clips": clips, "labels": torch.zeros(6, dtype=torch.long)})
    assert torch.isfinite(out.loss) and out.loss > 0
    assert {"short_loss", "long_loss", "short_context_tokens"} <= out.logs.keys()
    # the long-range mask hides more of the clip than the short-range one
    assert out.logs["long_context_tokens"] < out.logs["short_context_tokens"]
    assert out.loss.item() == pytest.approx((out.logs["short_loss"] + out.logs["long_loss"]) / 2,
                                            rel=1e-5)
    out.loss.backward()
    assert vjepa.context_encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    assert vjepa.predictor.mask_token.grad.abs().sum() > 0
    assert all(p.grad is None for p in vjepa.target_encoder.parameters())


def test_the_teacher_follows_the_student_by_ema():
    vjepa = method()
    with torch.no_grad():
        for p in vjepa.context_encoder.parameters():
            p.add_(1.0)
    before = vjepa.target_encoder.norm.weight.clone()
    vjepa.on_step_end(0.0)  # momentum 0.998: the teacher moves 0.2% of the way
    after = vjepa.target_encoder.norm.weight
    student = vjepa.context_encoder.norm.weight
    assert torch.allclose(after, 0.998 * before + 0.002 * student, atol=1e-6)


def test_vjepa_needs_video_data():
    with pytest.raises(ConfigError, match="trains on videos"):
        load_config("vjepa-moving-shapes", ["data.name=shapes"])
    with pytest.raises(ConfigError, match="trains on images"):
        load_config("ijepa-shapes", ["data.name=moving_shapes"])


def test_a_video_run_is_probed_with_the_attentive_probe_beside_its_baselines(tmp_path):
    cfg = load_config("vjepa-moving-shapes", TINY + [
        "train.steps=2", "train.batch_size=8", "data.num_train=64", "train.monitor_every=0",
        f"train.run_dir={tmp_path}"])
    train(cfg, tmp_path, show_progress=False)
    result = probe_run(tmp_path, seeds=1, train_ceiling_if_missing=False, show_progress=False)
    rows = {row["name"]: row for row in result["rows"]}
    assert set(rows) == {"vjepa", "random init", "raw pixels"}
    for name in ("vjepa", "random init"):  # video runs get the attentive probe by default
        assert 0 <= rows[name]["attentive"] <= 1
    assert rows["raw pixels"]["attentive"] is None
    assert result["data"] == "moving_shapes"


@pytest.mark.parametrize("overrides", [[], ["method.sigreg_on=tokens",
                                            "method.stop_gradient=true"]])
def test_vjepa_sigreg_step_mixes_prediction_and_sigreg(overrides):
    torch.manual_seed(0)
    vjepa = build_method(load_config("vjepa-sigreg-moving-shapes", TINY + overrides), 10)
    clips = torch.randint(0, 256, (6, 4, 3, 16, 16), dtype=torch.uint8)
    out = vjepa({"clips": clips, "labels": torch.zeros(6, dtype=torch.long)})
    lam = vjepa.cfg.lam
    assert out.loss.item() == pytest.approx((1 - lam) * out.logs["prediction"]
                                            + lam * out.logs["sigreg"], rel=1e-5)
    out.loss.backward()
    assert vjepa.encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="sigreg_on must be one of"):
        load_config("vjepa-sigreg-moving-shapes", ["method.sigreg_on=frames"])
