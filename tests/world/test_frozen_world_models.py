"""World models on a frozen encoder (V-JEPA 2-AC-style, DINO-WM-style): the encoder stays
frozen while the predictor learns, a run reloads for planning, and misuse fails clearly."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from jepalab.build import build_method
from jepalab.checkpoint import encoder_metadata
from jepalab.config import ConfigError, from_dict, load_config
from jepalab.data.trajectories import load_trajectories, load_trajectory_clips
from jepalab.data.views import to_float
from jepalab.envs.collect import collect
from jepalab.nn.vit import VisionTransformer, ViTSpec
from jepalab.probe import probe_run
from jepalab.train import parameter_groups, train
from jepalab.world import load_world_model, rollout

pytestmark = [pytest.mark.xdist_group("frozen-world-models"),  # module fixtures: built once
              pytest.mark.first(35)]

METHODS = ("vjepa-ac", "dino-wm")
PREDICTION_LOG = {"vjepa-ac": "teacher_forcing", "dino-wm": "prediction"}
# 40 steps (2026-12-05, one thread): prediction loss 0.441 -> 0.157 (V-JEPA 2-AC) and
# 0.378 -> 0.075 (DINO-WM) against the test's bar of half; 80 steps gave 0.068 and 0.025
STEPS, WINDOW, FRAMESKIP = 40, 4, 5


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small Two-Room trajectory file and a random (untrained) ViT saved as an encoder."""
    root = tmp_path_factory.mktemp("frozen")
    collect("two-room", root / "t.h5", episodes=8, steps=30, env_kwargs={"size": 32},
            show_progress=False)
    torch.manual_seed(0)
    vit = VisionTransformer(ViTSpec("vit_nano", 32, 8))
    save_file(vit.state_dict(), root / "encoder.safetensors", metadata=encoder_metadata(vit))
    return root


def raw_config(files, name: str, **method) -> dict:
    return {"method": {"name": name, "encoder": str(files / "encoder.safetensors"), **method},
            "data": {"name": f"trajectories:{files / 't.h5'}", "image_size": 32,
                     "window": WINDOW, "frameskip": FRAMESKIP},
            "model": {"arch": "vit_nano", "patch_size": 8},
            "optim": {"lr": 1e-3, "warmup_steps": 5, "weight_decay": 0.0,
                      "weight_decay_end": 0.0},
            "train": {"steps": STEPS, "batch_size": 16, "log_every": 4, "monitor_every": 0,
                      "checkpoint_every": 1000, "device": "cpu", "threads": 1}}


def a_batch(files, size: int = 4) -> dict:
    data = load_trajectories(files / "t.h5", image_size=32, window=WINDOW, frameskip=FRAMESKIP)
    return data.train.batch(torch.arange(size))


@pytest.fixture(scope="module", params=METHODS)
def trained(request, files):
    name = request.param
    run_dir = files / f"run-{name}"
    method = train(from_dict(raw_config(files, name)), run_dir, show_progress=False)
    return name, run_dir, method


def test_the_encoder_stays_frozen(trained, files):
    _, run_dir, method = trained
    original = load_file(files / "encoder.safetensors")
    after = method.eval_encoder().state_dict()
    assert all(torch.equal(after[key], value) for key, value in original.items())
    assert all(not p.requires_grad and p.grad is None for p in method.encoder.parameters())
    optimised = {id(p) for group in parameter_groups(method) for p in group["params"]}
    assert not optimised & {id(p) for p in method.encoder.parameters()}
    assert optimised == {id(p) for p in method.predictor.parameters()}
    method.train()
    assert not method.encoder.training and method.predictor.training
    # the run's own checkpoint holds the frozen encoder, so the run is self-contained
    saved = load_file(run_dir / (run_dir / "latest").read_text().strip() / "encoder.safetensors")
    assert all(torch.equal(saved[key], value) for key, value in original.items())


def test_training_lowers_the_prediction_loss(trained):
    name, run_dir, _ = trained
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [row[PREDICTION_LOG[name]] for row in rows if PREDICTION_LOG[name] in row]
    assert len(losses) == STEPS // 4
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    print(f"{name}: prediction loss {first:.4f} -> {last:.4f}")
    assert last < 0.5 * first
    if name == "vjepa-ac":
        assert all("rollout" in row for row in rows)


def test_the_run_reloads_and_rolls_out(trained, files):
    _, run_dir, method = trained
    model, described = load_world_model(run_dir)
    assert described["action_dim"] * described["frameskip"] == 2 * FRAMESKIP
    batch = a_batch(files)
    pixels = batch["frames"][:, :2].flatten(0, 1)
    latents = model.encode(pixels).unflatten(0, (4, 2))
    assert latents.shape == (4, 2, 16, 128)
    assert torch.allclose(latents, method.eval().encode(pixels).unflatten(0, (4, 2)))
    plan = torch.randn(4, 5, 2 * FRAMESKIP)
    with torch.no_grad():
        future = rollout(model, latents, batch["actions"][:, :1], plan)
        again = rollout(method, latents, batch["actions"][:, :1], plan)
    assert future.shape == (4, 5, 16, 128) and torch.isfinite(future).all()
    assert torch.allclose(future, again, atol=1e-5)


@pytest.mark.parametrize("name", METHODS)
def test_a_prediction_sees_no_later_frame(files, name):
    cfg = from_dict(raw_config(files, name))
    method = build_method(cfg, 2 * FRAMESKIP).eval()
    batch = a_batch(files)
    z = method.encode(batch["frames"].flatten(0, 1)).unflatten(0, (4, WINDOW))
    with torch.no_grad():
        whole = method.predict(z, torch.cat([batch["actions"], batch["actions"][:, :1]], 1))
        first = method.predict(z[:, :1], batch["actions"][:, :1])
    assert torch.allclose(whole[:, :1], first, atol=1e-5)


@pytest.mark.parametrize("name", METHODS)
def test_a_missing_encoder_is_named(files, name):
    with pytest.raises(ConfigError, match="method.encoder is required"):
        from_dict(raw_config(files, name, encoder=""))
    cfg = from_dict(raw_config(files, name, encoder=str(files / "nowhere")))
    with pytest.raises(FileNotFoundError, match="method.encoder.*nowhere.*run directory"):
        build_method(cfg, 2 * FRAMESKIP)


def test_a_config_unlike_the_encoder_is_refused(files):
    raw = raw_config(files, "dino-wm")
    raw["model"]["patch_size"] = 4
    with pytest.raises(ValueError, match="model.patch_size=8"):
        build_method(from_dict(raw), 2 * FRAMESKIP)


def test_a_rollout_longer_than_the_window_is_refused(files):
    cfg = from_dict(raw_config(files, "vjepa-ac", rollout_steps=WINDOW))
    method = build_method(cfg, 2 * FRAMESKIP)
    with pytest.raises(ValueError, match="method.rollout_steps 4 .* data.window is 4"):
        method(a_batch(files))


def test_standardized_tokens_keep_the_first_batch_statistics(files):
    """method.standardize: the first batch measures each place's and channel's mean and std;
    later batches and a reloaded model reuse them; without it the tokens are the ViT's."""
    method = build_method(from_dict(raw_config(files, "dino-wm", standardize=True)),
                          2 * FRAMESKIP)
    plain = build_method(from_dict(raw_config(files, "dino-wm")), 2 * FRAMESKIP)
    first = a_batch(files, 8)["frames"].flatten(0, 1)                    # 32 frames
    later = a_batch(files, 16)["frames"][8:].flatten(0, 1)
    raw_first, raw_later = plain.encode(first), plain.encode(later)
    torch.testing.assert_close(raw_first, plain.encoder.vit.patch_tokens(
        to_float(first)))                                               # plain: the ViT's
    z = method.encode(first)
    std = raw_first.std(0, correction=0)
    kept = std > 0.1 * std.mean()                                        # not clamped
    assert z.shape == raw_first.shape
    torch.testing.assert_close(z.mean(0), torch.zeros_like(std), atol=1e-3, rtol=0)
    torch.testing.assert_close(z.std(0, correction=0)[kept], torch.ones_like(std)[kept],
                               atol=1e-3, rtol=0)
    expected = (raw_later - raw_first.mean(0)) / std.clamp_min(0.1 * std.mean() + 1e-6)
    torch.testing.assert_close(method.encode(later), expected, atol=1e-5, rtol=1e-5)
    reloaded = build_method(from_dict(raw_config(files, "dino-wm", standardize=True)),
                            2 * FRAMESKIP)
    torch.testing.assert_close(reloaded.encode(later[:1]), raw_later[:1])  # one frame: unmeasured
    reloaded.load_state_dict(method.state_dict())
    torch.testing.assert_close(reloaded.encode(later), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", METHODS)
def test_pooled_tokens_average_each_square_of_places(files, name):
    """method.pool=2: the 4 x 4 token grid becomes 2 x 2, each token the mean of its 2 x 2
    square (row-major places), standardised afterwards; the predictor and a rollout run on
    the 4 tokens; a pool that does not divide the grid is refused with the valid ones."""
    plain = build_method(from_dict(raw_config(files, name, pool=2)), 2 * FRAMESKIP)
    method = build_method(from_dict(raw_config(files, name, pool=2, standardize=True)),
                          2 * FRAMESKIP)
    frames = a_batch(files, 8)["frames"].flatten(0, 1)
    places = plain.encoder.vit.patch_tokens(to_float(frames)).unflatten(1, (4, 4))
    assert plain.encoder.grid == method.encoder.grid == (2, 2)
    means = torch.stack([places[:, :2, :2].mean((1, 2)), places[:, :2, 2:].mean((1, 2)),
                         places[:, 2:, :2].mean((1, 2)), places[:, 2:, 2:].mean((1, 2))], 1)
    torch.testing.assert_close(plain.encoder(frames), means, atol=1e-6, rtol=1e-5)
    z = method.encoder(frames)                         # the first batch: standardised by itself
    torch.testing.assert_close(z.mean(0), torch.zeros_like(z[0]), atol=1e-3, rtol=0)
    assert 0.1 < float(z.std(0, correction=0).mean()) <= 1 + 1e-3
    batch = a_batch(files)
    z = method.encode(batch["frames"].flatten(0, 1)).unflatten(0, (4, WINDOW))
    assert z.shape[2] == 4
    assert rollout(method, z[:, :1], batch["actions"][:, :0], batch["actions"][:, :2]).shape \
        == (4, 2, 4, z.shape[-1])
    assert torch.isfinite(method(batch).loss)
    with pytest.raises(ValueError, match=r"method.pool=3 must divide .* 4 x 4 .* \[1, 2, 4\]"):
        build_method(from_dict(raw_config(files, name, pool=3)), 2 * FRAMESKIP)
    with pytest.raises(ConfigError, match="method.pool must be >= 1"):
        from_dict(raw_config(files, name, pool=0))


def learns_on_its_tokens(method, files) -> bool:
    """One training step of an action-conditioned model on a frozen encoder: a finite loss
    whose gradient reaches the predictor's output layer."""
    out = method(a_batch(files))
    out.loss.backward()
    reached = method.predictor.output_proj.weight.grad.abs().sum() > 0
    return bool(torch.isfinite(out.loss)) and bool(reached)


def test_vjepa_pretrained_on_the_episodes_serves_as_the_frozen_encoder(files, tmp_path):
    """V-JEPA 2's order: a video encoder pretrained on the environment's own episodes read as
    clips (`trajectoryclips:`), then frozen under the action-conditioned predictor, which
    sees each frame as a still clip of one tubelet."""
    path = files / "t.h5"
    clips = load_trajectory_clips(path, image_size=32, frames=4, frameskip=2)
    windows = load_trajectories(path, image_size=32, window=4, frameskip=2)
    assert clips.classes == [] and clips.declares == 0 and clips.frames == 4
    assert len(clips.train) == len(windows.train) and len(clips.val) == len(windows.val) > 0
    assert torch.equal(clips.train.clips[3:5], windows.train.batch(torch.arange(3, 5))["frames"])
    assert torch.equal(clips.val.clips[[1, 0]], windows.val.batch(torch.tensor([1, 0]))["frames"])
    run = tmp_path / "vjepa"
    train(load_config("vjepa-moving-shapes", [
        f"data.name=trajectoryclips:{path}", "data.frames=4", "data.frameskip=2",
        "method.predictor_depth=1", "method.predictor_width=32", "train.steps=2",
        "train.batch_size=8", "train.monitor_every=0", "train.threads=1"]), run,
        show_progress=False)
    with pytest.raises(ConfigError, match="unlabelled"):
        probe_run(run, train_ceiling_if_missing=False)
    method = build_method(from_dict(raw_config(files, "vjepa-ac", encoder=str(run))),
                          2 * FRAMESKIP)
    vit = method.encoder.vit
    assert vit.spec.video and method.encoder.grid == (4, 4)
    frames = a_batch(files)["frames"][:, 0]                                 # (4, 3, 32, 32)
    still = to_float(frames)[:, None].expand(-1, vit.spec.tubelet, -1, -1, -1)
    torch.testing.assert_close(method.encoder(frames), vit.patch_tokens(still))
    assert method.encoder(frames).shape == (4, 16, vit.embed_dim)
    assert learns_on_its_tokens(method, files)


def test_ijepa_trained_on_the_episodes_frames_serves_as_the_frozen_encoder(files, tmp_path):
    """The image counterpart of V-JEPA's order: I-JEPA trained on every frame of the
    episodes (`trajectoryframes:`), then frozen under the action-conditioned predictor, which
    reads each frame's patch tokens."""
    path = files / "t.h5"
    run = tmp_path / "ijepa"
    train(load_config("ijepa-shapes", [
        f"data.name=trajectoryframes:{path}", "data.image_size=32", "model.patch_size=8",
        "train.steps=2", "train.batch_size=8", "train.monitor_every=0", "train.threads=1"]),
        run, show_progress=False)
    with pytest.raises(ConfigError, match="unlabelled"):
        probe_run(run, train_ceiling_if_missing=False)
    method = build_method(from_dict(raw_config(files, "vjepa-ac", encoder=str(run))),
                          2 * FRAMESKIP)
    vit = method.encoder.vit
    assert not vit.spec.video and method.encoder.grid == (4, 4)
    frames = a_batch(files)["frames"][:, 0]                                 # (4, 3, 32, 32)
    torch.testing.assert_close(method.encoder(frames), vit.patch_tokens(to_float(frames)))
    assert method.encoder(frames).shape == (4, 16, vit.embed_dim)
    assert learns_on_its_tokens(method, files)


def test_proprio_joins_every_token_standardised_and_scaled(files):
    """method.proprio_dim: the data's proprio, standardised by the first batch's mean and
    std and times proprio_scale, joins each token as more channels (DINO-WM's proprio),
    is predicted with them and kept by a reload; a model trained with it refuses frames
    without it, and a dimension unlike the data's is named."""
    cfg = from_dict(raw_config(files, "dino-wm", proprio_dim=2, proprio_scale=3.0))
    method = build_method(cfg, 2 * FRAMESKIP)
    plain = build_method(from_dict(raw_config(files, "dino-wm")), 2 * FRAMESKIP)
    first, later = a_batch(files, 8), a_batch(files, 16)
    frames, proprio = first["frames"].flatten(0, 1), first["proprio"].flatten(0, 1)   # 32
    z = method.encode(frames, proprio)
    assert z.shape == (32, 16, 128 + 2)
    torch.testing.assert_close(z[..., :128], plain.encode(frames))
    mean, std = proprio.mean(0), proprio.std(0, correction=0)
    torch.testing.assert_close(z[:, 5, 128:], 3.0 * (proprio - mean) / std, atol=1e-5, rtol=1e-5)
    assert torch.equal(z[:, 0, 128:], z[:, 15, 128:])                  # the same on every token
    p2 = later["proprio"].flatten(0, 1)
    expected = 3.0 * (p2 - mean) / std
    torch.testing.assert_close(method.encode(later["frames"].flatten(0, 1), p2)[:, 3, 128:],
                               expected, atol=1e-5, rtol=1e-5)
    reloaded = build_method(cfg, 2 * FRAMESKIP)
    reloaded.load_state_dict(method.state_dict())
    torch.testing.assert_close(reloaded.encode(later["frames"][:1, 0], p2[:1])[:, 0, 128:],
                               expected[:1], atol=1e-5, rtol=1e-5)   # one frame: measured
    assert learns_on_its_tokens(method, files)
    assert method.predict(z[None, :3], first["actions"][:1, :3]).shape == (1, 3, 16, 130)
    with pytest.raises(ValueError, match=r"method.proprio_dim=2: it needs the agent's proprio"):
        method.encode(frames)
    wrong = build_method(from_dict(raw_config(files, "dino-wm", proprio_dim=4)), 2 * FRAMESKIP)
    with pytest.raises(ValueError, match=r"method.proprio_dim is 4 .* has 2 .* "
                                         r"method.proprio_dim=2"):
        wrong(first)
    with pytest.raises(ConfigError, match="method.proprio_scale must be > 0"):
        from_dict(raw_config(files, "dino-wm", proprio_dim=2, proprio_scale=0))


def test_a_proprio_model_plans_with_the_goals_proprio(files):
    """The planning agent hands the model the observation's proprio and the goal's: a
    DINO-WM-style model with proprio plans an episode's first blocks, and its goal latent
    carries the goal's proprio channels."""
    import numpy as np

    from jepalab.envs import make
    from jepalab.world.evaluate import Agent, PlanSettings

    method = build_method(from_dict(raw_config(files, "dino-wm", proprio_dim=2)),
                          2 * FRAMESKIP).eval()
    batch = a_batch(files, 8)
    method.encode(batch["frames"].flatten(0, 1), batch["proprio"].flatten(0, 1))  # measures
    env = make("two-room", size=32)
    obs, _ = env.reset(seed=0)
    agent = Agent(method, PlanSettings(horizon=2, planner_options={
        "samples": 16, "elites": 4, "iterations": 2}), 2, FRAMESKIP)
    agent.reset(obs)
    channels = method.proprio(torch.from_numpy(obs["goal_proprio"])[None],
                              torch.zeros(1, 16, 0))[0]
    torch.testing.assert_close(agent.goal[..., 128:], channels)
    assert not np.allclose(obs["goal_proprio"], obs["proprio"])
    agent.observe(obs, None)
    with torch.no_grad():
        blocks = agent.plan()
    assert blocks.shape == (1, 2 * FRAMESKIP) and torch.isfinite(blocks).all()


def test_a_random_encoder_is_the_seeded_random_features_baseline(files, tmp_path):
    """method.encoder=random: a ViT of model.arch at random init, drawn from train.seed (the
    same weights twice, others under another seed); the run's config keeps the word, and the
    run reloads for planning with the very weights it trained on."""
    raw = raw_config(files, "dino-wm", encoder="random")
    raw["train"].update(steps=2)
    torch.manual_seed(0)
    one = build_method(from_dict(raw), 2 * FRAMESKIP)
    torch.manual_seed(0)
    two = build_method(from_dict(raw), 2 * FRAMESKIP)
    torch.manual_seed(1)
    other = build_method(from_dict(raw), 2 * FRAMESKIP)
    first = next(one.encoder.vit.parameters())
    assert torch.equal(first, next(two.encoder.vit.parameters()))
    assert not torch.equal(first, next(other.encoder.vit.parameters()))
    run = tmp_path / "random"
    method = train(from_dict(raw), run, show_progress=False)
    assert json.loads((run / "config.json").read_text())["method"]["encoder"] == "random"
    model, _ = load_world_model(run)
    frames = a_batch(files)["frames"][:, 0]
    torch.testing.assert_close(model.encode(frames), method.eval().encode(frames))
