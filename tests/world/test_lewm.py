"""LeWM: the predictor's mask and zero-init, a short training whose prediction error falls,
loading a run back for planning."""
import json

import numpy as np
import pytest
import torch

from jepalab.cli import main
from jepalab.config import ConfigError, from_dict
from jepalab.data.trajectories import load_trajectories
from jepalab.envs.collect import collect
from jepalab.nn.predictor import ActionPredictor, frame_causal_mask
from jepalab.train import train
from jepalab.world import load_world_model, rollout
from jepalab.world.evaluate import plan_table

pytestmark = [pytest.mark.xdist_group("lewm"),  # module fixtures: built once
              pytest.mark.first(60)]


def test_frame_causal_mask_is_a_sliding_window_over_frames():
    mask = frame_causal_mask(frames=3, tokens=2, history=2)
    frame = torch.tensor([0, 0, 1, 1, 2, 2])
    for q in range(6):
        for k in range(6):
            assert mask[q, k] == (0 <= frame[q] - frame[k] < 2)


def test_adaln_zero_starts_as_action_blind_and_causal():
    torch.manual_seed(0)
    predictor = ActionPredictor(8, 4, width=16, depth=2, num_heads=2, history=2)
    latents = torch.randn(3, 4, 1, 8)
    a, b = torch.randn(3, 4, 4), torch.randn(3, 4, 4)
    assert torch.allclose(predictor(latents, a), predictor(latents, b))  # gates start at 0
    for block in predictor.blocks:  # once the gates open, actions matter ...
        torch.nn.init.normal_(block.modulation[1].weight, std=0.5)
    out = predictor(latents, a)
    assert not torch.allclose(out, predictor(latents, b))
    changed = latents.clone()
    changed[:, 3] += 1.0  # ... and a later frame never changes an earlier prediction
    assert torch.allclose(predictor(changed, a)[:, :3], out[:, :3], atol=1e-6)
    changed = latents.clone()
    changed[:, 0] += 1.0  # nor one further back than the history
    assert torch.allclose(predictor(changed, a)[:, 2:], out[:, 2:], atol=1e-6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("lewm")
    path = collect("two-room", root / "t.h5", episodes=16, steps=30, policy="noisy-expert",
                   seed=0, env_kwargs={"size": 16}, show_progress=False)
    cfg = from_dict({
        "method": {"name": "lewm", "history": 2, "embed_dim": 16, "projector_hidden": 64,
                   "predictor_width": 32, "predictor_depth": 2, "predictor_heads": 2,
                   "sigreg_slices": 64},
        "data": {"name": f"trajectories:{path}", "image_size": 16, "window": 3,
                 "frameskip": 2},
        "model": {"arch": "vit_nano", "patch_size": 8},
        "optim": {"lr": 2e-3, "warmup_steps": 10, "weight_decay": 1e-3,
                  "weight_decay_end": 1e-3},
        "train": {"steps": 300, "batch_size": 16, "log_every": 10, "monitor_every": 0,
                  "checkpoint_every": 300}})
    run_dir = root / "run"
    train(cfg, run_dir, show_progress=False)
    return run_dir


def test_prediction_error_falls_without_collapse(trained):
    """On the held-out episode, the trained model predicts the next embedding far better
    than copying the current one, and only with the actions that were taken; the raw
    loss is not compared over time because SIGReg rescales the embeddings as it trains."""
    model, described = load_world_model(trained)
    val = load_trajectories(described["path"], image_size=16, window=3, frameskip=2).val
    batch = val.batch(torch.arange(len(val)))
    b, t = batch["frames"].shape[:2]
    torch.manual_seed(0)
    with torch.no_grad():
        z = model.encode(batch["frames"].flatten(0, 1)).view(b, t, 1, -1)
        predicted = model.predict(z[:, :-1], batch["actions"])
        shuffled = model.predict(z[:, :-1], batch["actions"][torch.randperm(b)])
    error = (predicted - z[:, 1:]).pow(2).mean()
    assert error < 0.5 * (z[:, :-1] - z[:, 1:]).pow(2).mean()  # beats "nothing moves"
    assert error < 0.5 * (shuffled - z[:, 1:]).pow(2).mean()   # uses the actions
    assert z.flatten(0, 2).std(dim=0).min() > 0.1               # no collapsed dimension
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["sigreg_term"] < rows[0]["sigreg_term"]  # embeddings closer to Gaussian


def test_probe_of_a_world_model_says_what_it_needs(trained, capsys):
    assert main(["probe", str(trained), "--no-ceiling"]) == 2
    err = capsys.readouterr().err
    assert f"{trained} is a trajectories run (method 'lewm'" in err
    assert "probe needs an image or video encoder's run" in err and "jepalab plan" in err


def test_run_loads_back_as_a_world_model(trained):
    model, data = load_world_model(trained)
    assert data == {"kind": "trajectories", "path": data["path"], "env": "two-room",
                    "env_kwargs": {"size": 16},
                    "action_dim": 2, "frameskip": 2}
    pixels = torch.randint(0, 255, (5, 3, 64, 64), dtype=torch.uint8)  # resized to 16
    latents = model.encode(pixels)
    assert latents.shape == (5, 1, 16)
    z = latents.std(dim=0).mean()
    assert z > 0.1  # distinct frames, distinct latents
    plan = torch.zeros(5, 4, 4)
    out = rollout(model, latents[:, None], torch.zeros(5, 0, 4), plan)
    assert out.shape == (5, 4, 1, 16)


def test_world_model_needs_trajectory_data():
    with pytest.raises(ConfigError, match="trains on trajectories"):
        from_dict({"method": {"name": "lewm"}, "data": {"name": "shapes"}})
    with pytest.raises(ConfigError, match="trains on images"):
        from_dict({"method": {"name": "ijepa"}, "data": {"name": "trajectories:x.h5"}})


def test_plan_under_the_anchors_protocol(trained, tmp_path, capsys):
    """`jepalab plan --protocol lewm`: held-out expert starts and goals, LeWM's defaults
    (distinct actions, last-block cost, the whole plan executed), a 50-step budget."""
    held_out = collect("two-room", tmp_path / "expert.h5", episodes=2, steps=40,
                       policy="noisy-expert", seed=9, env_kwargs={"size": 16},
                       show_progress=False)
    out = tmp_path / "plan"
    assert main(["plan", "two-room", "--model", str(trained), "--protocol", "lewm",
                 "--expert-data", str(held_out), "--episodes", "3", "--gif", "0",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out          # not a terminal: a plain line an episode
    for label in ("cem (last cost, distinct actions)", "random actions"):
        lines = [line.split(label + ": ")[1] for line in printed.splitlines()
                 if label + ": " in line]
        assert [line.split()[0] for line in lines] == ["1/3", "2/3", "3/3"]
        assert all(line.endswith(" reached") for line in lines)
    rows = json.loads((out / "plan.json").read_text())
    settings = rows[0]["settings"]
    assert (settings["protocol"], settings["action_block"], settings["cost"],
            settings["execute"]) == ("lewm", "distinct", "last", 5)
    assert rows[1]["name"] == "random actions" and rows[0]["all"]["episodes"] == 3
    for row in rows:  # how near each episode came, in the success test's tolerances
        for episode in row["episodes_detail"]:
            assert episode["success"] or episode["steps"] == 50   # the anchors' budget
            assert (episode["closest"] < 1) == episode["success"]
        assert row["closest_median"] == np.median([e["closest"] for e in row["episodes_detail"]])
    assert "closest (median)" in [column.header for column in plan_table(rows).columns]
    trained_on = load_world_model(trained)[1]["path"]
    assert main(["plan", "two-room", "--model", str(trained), "--protocol", "lewm",
                 "--expert-data", trained_on, "--quiet"]) == 2
    assert "the file the model was trained on" in capsys.readouterr().err
