import numpy as np
import pytest
import torch
from safetensors import safe_open

import jepalab
from jepalab import checkpoint
from jepalab.build import build_method
from jepalab.config import DataConfig, load_config
from jepalab.data import catalog
from jepalab.data.stereograms import make_stereograms
from jepalab.data.views import to_float
from jepalab.methods import imax
from jepalab.nn.vit import ViTSpec
from jepalab.train import train

HELD_OUT_SEED = 12345  # the built-in data set draws from seed 0


def disparity_correlations(encoder, width=40, modules=10) -> np.ndarray:
    """|Pearson r| between each module's output and the true disparity of its patch, on
    2000 stereograms the model never saw."""
    held_out = make_stereograms(2000, width=width, modules=modules, seed=HELD_OUT_SEED)
    with torch.no_grad():
        outputs = encoder.features(to_float(held_out.images)).numpy()
    truth = held_out.module_disparity.numpy()
    return np.abs([np.corrcoef(outputs[:, k], truth[:, k])[0, 1] for k in range(modules)])


def test_stereograms_are_deterministic_smooth_and_shaped():
    a = make_stereograms(64, width=40, modules=10, max_disparity=2.0, seed=3)
    b = make_stereograms(64, width=40, modules=10, max_disparity=2.0, seed=3)
    c = make_stereograms(64, width=40, modules=10, max_disparity=2.0, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.disparity, b.disparity)
    assert not torch.equal(a.images, c.images)
    assert a.images.dtype == torch.uint8 and a.images.shape == (64, 3, 1, 40)
    assert a.disparity.shape == (64, 40) and a.module_disparity.shape == (64, 10)
    assert a.images[:, 2].eq(0).all() and a.images[:, :2].float().std() > 30
    assert a.disparity.abs().max() <= 2.0
    assert (a.disparity.diff(dim=1).abs().max() < 0.35  # a smooth surface, no jumps
            and a.disparity.std(dim=0).mean() > 0.5)   # that differs between examples
    assert torch.allclose(a.module_disparity, a.disparity.view(64, 10, 4).mean(-1))
    flat = make_stereograms(8, max_disparity=0.0, seed=3)
    assert torch.equal(flat.images[:, 0], flat.images[:, 1])  # no disparity: both eyes agree


def test_right_eye_is_the_left_shifted_by_the_disparity():
    """right(x) = left(x + d): the integer shift that best matches the two strips is the
    strip's disparity rounded, for almost all strips (the surface may bend within one)."""
    s = make_stereograms(500, width=40, modules=10, max_disparity=2.0, seed=5)
    left, right = s.images[:, 0, 0].float(), s.images[:, 1, 0].float()
    inner = slice(4, 36)
    errors = torch.stack([(right[:, inner] - left.roll(-shift, dims=1)[:, inner]).pow(2).mean(1)
                          for shift in range(-2, 3)])
    best = errors.argmin(0) - 2
    assert (best == s.disparity[:, inner].mean(1).round()).float().mean() > 0.8


def test_builtin_data_set_has_splits_and_disparity_labels():
    data = catalog.load(DataConfig("stereograms", image_size=40, seed=0))
    assert (len(data.train), len(data.val), len(data.test)) == (4000, 500, 500)
    assert data.train.images.shape[1:] == (3, 1, 40) and len(data.classes) == 10
    assert 0 <= data.train.labels.min() and data.train.labels.max() < 10
    assert len(data.train.labels.unique()) >= 8


def test_step_gives_imax_of_adjacent_modules_and_gradients_to_every_module(host_reads):
    torch.manual_seed(0)
    method = imax.Method(imax.Config(modules=10), ViTSpec("vit_nano", 40, 4), num_classes=10)
    batch = {"images": make_stereograms(32, seed=0).images, "labels": torch.zeros(32).long()}
    with host_reads() as counter:  # the step and its logs stay on the device
        out = method(batch)
    assert counter.reads == {}
    y = method.eval_encoder().features(to_float(batch["images"]))
    assert y.shape == (32, 10)
    a, b = y[:, :-1], y[:, 1:]
    by_hand = -(0.5 * torch.log((a + b).var(0, unbiased=False) / (a - b).var(0, unbiased=False)))
    assert torch.allclose(out.loss, by_hand.mean(), atol=1e-5)
    out.loss.backward()
    assert all((w.grad.abs().sum(dim=(1, 2)) > 0).all() for w in method.encoder.weights)
    with pytest.raises(ValueError, match="multiple of method.modules"):
        imax.Method(imax.Config(modules=7), ViTSpec("vit_nano", 40, 4), num_classes=10)


@pytest.mark.first(35)
def test_recipe_learns_disparity_and_random_init_does_not(tmp_path):
    """The imax-stereograms recipe through the standard trainer (about 15 s on one core):
    on held-out stereograms every module's output tracks the disparity of its patch
    (|r| >= 0.8); the same network at its initial weights does not."""
    cfg = load_config("imax-stereograms")
    torch.manual_seed(cfg.train.seed)  # as the trainer does: these are the run's initial weights
    untrained = build_method(cfg, 10).eval_encoder()
    threads = torch.get_num_threads()
    try:
        method = train(cfg, tmp_path, show_progress=False)  # the recipe sets 1 thread
    finally:
        torch.set_num_threads(threads)
    trained_r = disparity_correlations(method.eval_encoder())
    random_r = disparity_correlations(untrained)
    assert trained_r.min() >= 0.8, trained_r
    assert random_r.max() < 0.8, random_r

    # the row of modules is checkpointed as weights with its class; load() says why it refuses
    file = checkpoint.latest(tmp_path) / "encoder.safetensors"
    with safe_open(str(file), framework="pt") as f:
        assert f.metadata()["format"] == "jepalab-module"
    with pytest.raises(ValueError, match="encoder.safetensors holds a .*ModuleRow encoder"):
        jepalab.load(tmp_path)
