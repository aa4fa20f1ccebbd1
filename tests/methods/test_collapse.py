"""The collapse warning: it fires when a method's anti-collapse ingredient is removed
(BYOL without predictor and EMA, VICReg without its variance term, LeJEPA with lambda 0)
or when I-JEPA collapses at the old quickstart settings, and stays silent on the real
recipes, trained the same way (16 px shapes, batch 32, fp32). LeJEPA is the quickstart's
(two local views).

Measured on 2 CPU cores, 2026-12-05 (spread = feature std x sqrt(D): 1 isotropic, 0
identical; about 0.2 at initialisation): BYOL ablated 0.054 at step 20 and 0.034 at 40 vs
recipe 0.74-0.81; VICReg ablated under 0.18 from step 100, 0.106 at 160, vs recipe
0.63-0.86; LeJEPA ablated 0.171 at step 60, 0.154 at 100, vs recipe 0.85-0.90. The step
counts below are where each ablation has crossed. (At batch 64, twice the cost: 0.165 and
0.154 for LeJEPA, the same picture.)"""
import json
import warnings

import pytest
import torch

from jepalab.config import load_config
from jepalab.eval.collapse import CollapseRecovered, CollapseWarning
from jepalab.train import train

THREADS = f"train.threads={torch.get_num_threads()}"  # the suite's (conftest)
SHORT = ["data.image_size=16", "train.batch_size=32", "train.precision=fp32",
         "train.log_every=20", "train.monitor_every=20", "optim.warmup_steps=5", THREADS]

CASES = [  # recipe, steps, ablation
    ("byol-shapes", 40, ["method.predictor=false", "method.ema_start=0", "method.ema_end=0"]),
    ("vicreg-shapes", 160, ["method.std_coeff=0"]),
    ("jepa-quickstart", 100, ["method.lam=0"]),
]


def run(tmp_path, recipe, steps, overrides):
    cfg = load_config(recipe, SHORT + [f"train.steps={steps}"] + overrides)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg, tmp_path / "run", show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    fired = [w.message for w in caught if issubclass(w.category, CollapseWarning)]
    return cfg, [r for r in rows if "rankme" in r], fired


@pytest.mark.first(60)
@pytest.mark.parametrize("recipe, steps, ablation", CASES, ids=[c[0] for c in CASES])
def test_warning_fires_once_when_the_anti_collapse_ingredient_is_removed(tmp_path, recipe,
                                                                        steps, ablation):
    cfg, rows, fired = run(tmp_path, recipe, steps, ablation)
    assert len(fired) == 1, [(r["rankme"], r["spread"]) for r in rows]  # once, not each check
    warning = fired[0]
    assert f"step {warning.step}" in str(warning) and warning.step > 0
    threshold = getattr(cfg.train, f"collapse_{warning.metric}")
    assert warning.value < threshold and warning.value < 0.9 * rows[0][warning.metric]


@pytest.mark.first(60)  # the quickstart's LeJEPA: tests/test_quickstart.py, every 20 steps
@pytest.mark.parametrize("recipe, steps, ablation", CASES[:2], ids=[c[0] for c in CASES[:2]])
def test_real_recipe_stays_silent(tmp_path, recipe, steps, ablation):
    cfg, rows, fired = run(tmp_path, recipe, steps, [])
    assert not fired, [str(w) for w in fired]
    assert all(r["rankme"] >= cfg.train.collapse_rankme or r["rankme"] >= 0.9 * rows[0]["rankme"]
               for r in rows[1:])
    assert min(r["spread"] for r in rows[1:]) > 2 * cfg.train.collapse_spread


def test_fatal_warning_stops_the_run_with_a_checkpoint(tmp_path):
    """With train.collapse_fatal the ablated BYOL stops at its warning, saved there."""
    from jepalab import checkpoint
    from jepalab.train import Collapsed

    recipe, steps, ablation = CASES[0]
    with pytest.raises(Collapsed) as stop:
        run(tmp_path, recipe, steps, ablation + ["train.collapse_fatal=true"])
    step = checkpoint.step_of(checkpoint.latest(tmp_path / "run"))
    assert 0 < step < steps and f"step {step}" in str(stop.value)


# The quickstart's I-JEPA before issue 9: 32 px, lr 1e-3 after 25 warm-up steps, EMA from
# 0.99. Its loss falls to 0.01 by step 100 while its target tokens grow alike.
OLD_QUICKSTART = ["data.image_size=32", "optim.lr=1e-3", "optim.warmup_steps=25",
                  "method.ema_start=0.99", "train.batch_size=128", "train.steps=250",
                  "train.log_every=25", "train.monitor_every=25", THREADS]


@pytest.mark.slow  # about 2 minutes on 2 cores; the fatal stop itself is tested above
def test_fatal_warning_stops_the_old_quickstart_ijepa_collapse(tmp_path):
    """I-JEPA has no projector: the monitor reads what its loss regresses (the target
    encoder's LayerNorm'd tokens), whose spread falls under 0.2 within about 125 steps; with
    train.collapse_fatal the run stops there with a checkpoint."""
    from jepalab import checkpoint
    from jepalab.train import Collapsed

    cfg = load_config("ijepa-shapes", OLD_QUICKSTART + ["train.collapse_fatal=true"])
    with warnings.catch_warnings(record=True) as caught, pytest.raises(Collapsed) as stop:
        warnings.simplefilter("always")
        train(cfg, tmp_path / "run", show_progress=False)
    fired = [w.message for w in caught if issubclass(w.category, CollapseWarning)]
    assert len(fired) == 1 and fired[0].metric == "spread", [str(w) for w in fired]
    step = fired[0].step
    assert step < cfg.train.steps and f"step {step}" in str(stop.value)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert rows[0]["spread"] > 0.4 and rows[-1]["step"] == step  # fell from 0.47 at init
    assert checkpoint.step_of(checkpoint.latest(tmp_path / "run")) == step


def test_a_threshold_of_zero_turns_off_only_its_own_check():
    from jepalab.train import CollapseWatch

    watch = CollapseWatch({"rankme": 0.0, "spread": 0.2}, {"rankme": 4.0, "spread": 0.2}, True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        watch.check(10, {"rankme": 1.0, "spread": 0.05})
        watch.check(20, {"rankme": 1.0, "spread": 0.01})
    assert [(w.message.metric, w.message.step) for w in caught] == [("spread", 10)]


def test_a_recovery_is_said_once_and_rearms_the_warning():
    """A dip and recovery (I-JEPA on Two-Room: spread 0.26 -> 0.14 -> 0.44) warns at the
    fall, says so once the metric is back above 1.1 x its limit (not at the limit, so a
    metric sitting there does not flap), and a second fall warns again."""
    from jepalab.train import CollapseWatch

    # limit: min(threshold 0.2, 0.9 x 0.26 at step 0) = 0.2; recovery above 0.22
    watch = CollapseWatch({"rankme": 0.0, "spread": 0.2}, {"spread": 0.26}, True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        events = [watch.check(step, {"rankme": 5.0, "spread": value}) for step, value in
                  [(250, 0.14), (500, 0.12), (750, 0.21), (1000, 0.44), (1250, 0.3),
                   (1500, 0.1)]]
    kinds = [type(e).__name__ if e else None for e in events]
    assert kinds == ["CollapseWarning", None, None, "CollapseRecovered", None,
                     "CollapseWarning"]
    assert [w.message for w in caught] == [e for e in events if e]
    recovered = events[3]
    assert isinstance(recovered, CollapseRecovered) and recovered.warning is events[0]
    assert "warned at step 250" in str(recovered) and "0.440 at step 1000" in str(recovered)
    assert "above 0.220" in str(recovered)
