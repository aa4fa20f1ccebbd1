import json

import pytest
import torch

from jepalab.config import load_config
from jepalab.data.views import to_float
from jepalab.methods import cpc
from jepalab.nn.vit import ViTSpec
from jepalab.train import train

SPEC = ViTSpec("vit_nano", 32, 4)  # an 8x8 token grid: 8 rows of 4 pixels


def small_method(**overrides):
    torch.manual_seed(0)
    return cpc.Method(cpc.Config(context_dim=32, **overrides), SPEC, num_classes=10)


def images(n):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)


def test_shapes_and_rows_are_encoded_independently(host_reads):
    method = small_method()
    x = to_float(images(4))
    z = method.encode_rows(x)
    c = method.contexts(z)
    assert z.shape == (4, 8, 128) and c.shape == (4, 8, 32)
    row = 5
    changed = x.clone()
    changed[:, :, 4 * row:4 * row + 4] = torch.randn_like(changed[:, :, 4 * row:4 * row + 4])
    z2 = method.encode_rows(changed)
    c2 = method.contexts(z2)
    torch.testing.assert_close(z2[:, :row], z[:, :row])          # rows above: untouched
    torch.testing.assert_close(z2[:, row + 1:], z[:, row + 1:])  # rows below: untouched
    assert (z2[:, row] - z[:, row]).abs().amax(-1).min() > 1e-3   # the row itself changed
    torch.testing.assert_close(c2[:, :row], c[:, :row])          # context before it: untouched
    assert (c2[:, row:] - c[:, row:]).abs().amax(-1).min() > 1e-4  # from it on: changed

    with host_reads() as counter:  # the step and its logs stay on the device
        out = method({"images": images(4), "labels": torch.zeros(4, dtype=torch.long)})
    assert counter.reads == {}
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert sorted(out.logs) == [f"mi_bound_k{k}" for k in range(1, 6)]
    assert method.eval_encoder() is method.encoder


def test_gradient_reaches_backbone_context_and_every_predictor():
    method = small_method(prediction_steps=3)
    out = method({"images": images(6), "labels": torch.zeros(6, dtype=torch.long)})
    out.loss.backward()
    encoder = method.encoder
    for param in (encoder.patch_embed.proj.weight, encoder.blocks[0].attn.qkv.weight,
                  encoder.blocks[-1].mlp.fc2.weight, method.context.weight_ih_l0,
                  method.context.weight_hh_l0, *[p.weight for p in method.predictors]):
        assert param.grad is not None and param.grad.abs().sum() > 0
    assert len(method.predictors) == 3


def test_config_checks_prediction_steps_against_the_grid():
    with pytest.raises(ValueError, match="prediction_steps"):
        cpc.Config(prediction_steps=0).validate()
    with pytest.raises(ValueError, match="rows - 1 = 7"):
        cpc.Method(cpc.Config(prediction_steps=8), SPEC, num_classes=10)


@pytest.mark.first(60)
def test_short_run_lowers_the_loss(tmp_path):
    """40 steps of the cpc-shapes recipe at batch 64 on the first 2,000 training images
    (rendering all 20,000 at 32 px would cost more than the training): the InfoNCE loss
    starts near chance, log(64) = 4.16 nats, and falls by more than one nat (measured:
    3.25 over the first three logs, 1.88 over the last three)."""
    cfg = load_config("cpc-shapes", ["train.steps=40", "train.batch_size=64",
                                     "data.num_train=2000",
                                     f"train.threads={torch.get_num_threads()}",
                                     "train.log_every=5", "train.monitor_every=0",
                                     "optim.warmup_steps=10"])
    train(cfg, tmp_path, show_progress=False)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    loss = [json.loads(line)["loss"] for line in lines]
    first, last = sum(loss[:3]) / 3, sum(loss[-3:]) / 3
    assert last < first - 1.0, loss
