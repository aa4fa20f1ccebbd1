"""Trajectory files: the HDF5 round trip, windows with frameskip, clear errors."""
import h5py
import numpy as np
import pytest
import torch

from jepalab.config import ConfigError
from jepalab.data.images import DataError
from jepalab.data.trajectories import load_trajectories, read_trajectories
from jepalab.envs import make
from jepalab.envs.collect import collect

pytestmark = pytest.mark.xdist_group("trajectories")  # module fixtures: built once


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("traj") / "two-room.h5"
    return collect("two-room", path, episodes=3, steps=12, policy="random", seed=7,
                   env_kwargs={"size": 16}, show_progress=False)


def test_round_trip_replays_exactly(small_file):
    arrays, starts, attrs = read_trajectories(small_file)
    assert attrs["env"] == "two-room" and attrs["policy"] == "random" and attrs["seed"] == 7
    assert attrs["env_kwargs"] == {"size": 16} and attrs["episodes"] == 3
    assert starts.tolist() == [0, 13, 26, 39]
    assert arrays["pixels"].shape == (39, 16, 16, 3) and arrays["pixels"].dtype == np.uint8
    assert arrays["actions"].shape == (39, 2) and arrays["proprio"].shape == (39, 2)
    # the recorded actions, replayed from the recorded seed, give the recorded frames
    env = make("two-room", size=16)
    for e in range(3):
        frames = range(starts[e], starts[e + 1])
        obs, _ = env.reset(seed=7 * 100_003 + e)
        np.testing.assert_array_equal(obs["pixels"], arrays["pixels"][frames[0]])
        for f in frames[:-1]:
            obs, *_ = env.step(arrays["actions"][f])
            np.testing.assert_array_equal(obs["pixels"], arrays["pixels"][f + 1])
            np.testing.assert_allclose(obs["proprio"], arrays["proprio"][f + 1])
        assert not arrays["actions"][frames[-1]].any()  # the last frame has no action


@pytest.mark.parametrize("hold, changes", [(1.0, (38, 40)), (5.0, (4, 12))])
def test_the_random_policy_holds_each_action_for_hold_steps_on_average(tmp_path, hold, changes):
    path = collect("two-room", tmp_path / "r.h5", episodes=1, steps=40, policy="random",
                   seed=3, hold=hold, env_kwargs={"size": 8}, show_progress=False)
    arrays, _, attrs = read_trajectories(path)
    actions = arrays["actions"][:-1]                      # the last frame has no action
    new = 1 + int((np.abs(np.diff(actions, axis=0)).sum(1) > 0).sum())
    assert changes[0] <= new <= changes[1]                # 40 draws; about 40 / hold of them
    assert attrs["policy_kwargs"] == {"hold": hold}


def test_a_slower_noisy_expert_caps_the_norm_of_the_experts_action(tmp_path):
    path = collect("pusht", tmp_path / "slow.h5", episodes=2, steps=30, policy="noisy-expert",
                   seed=3, speed=0.25, noise=0.0, env_kwargs={"size": 8}, show_progress=False)
    arrays, starts, attrs = read_trajectories(path)
    norms = np.linalg.norm(arrays["actions"], axis=1)
    assert norms.max() <= 0.25 + 1e-6 and np.isclose(norms, 0.25, atol=1e-4).mean() > 0.5
    assert attrs["policy_kwargs"] == {"speed": 0.25, "noise": 0.0}
    fast = collect("pusht", tmp_path / "fast.h5", episodes=2, steps=30, policy="noisy-expert",
                   seed=3, noise=0.0, env_kwargs={"size": 8}, show_progress=False)
    fast_norms = np.linalg.norm(read_trajectories(fast)[0]["actions"], axis=1)
    assert fast_norms.max() > 0.9        # the expert as it acts pushes at full speed
    reacher = collect("reacher", tmp_path / "reacher.h5", episodes=1, steps=20,
                      policy="noisy-expert", noise=0.0, env_kwargs={"size": 8},
                      show_progress=False)
    arrays, _, attrs = read_trajectories(reacher)
    assert np.linalg.norm(arrays["actions"], axis=1).max() > 1.0   # no cap unless asked
    assert attrs["policy_kwargs"] == {"noise": 0.0}
    with pytest.raises(ConfigError, match="--speed"):
        collect("pusht", tmp_path / "bad.h5", episodes=1, policy="noisy-expert", speed=0.0,
                show_progress=False)


def test_windows_follow_frameskip(small_file):
    data = load_trajectories(small_file, image_size=16, window=3, frameskip=4, val_fraction=0.0)
    arrays, _, _ = read_trajectories(small_file)
    # 13 frames per episode, a window spans 9: 5 windows per episode
    assert len(data.train) == 15 and len(data.val) == 0
    assert data.block_action_dim == 8 and data.describe()["env"] == "two-room"
    batch = data.train.batch(torch.tensor([6]))  # episode 1, first frame 13 + 1
    assert batch["frames"].shape == (1, 3, 3, 16, 16)
    assert batch["actions"].shape == (1, 2, 8) and batch["proprio"].shape == (1, 3, 2)
    for k, frame in enumerate((14, 18, 22)):
        expected = torch.from_numpy(arrays["pixels"][frame]).permute(2, 0, 1)
        assert torch.equal(batch["frames"][0, k], expected)
    blocks = torch.from_numpy(arrays["actions"][14:22]).reshape(2, 8)
    assert torch.equal(batch["actions"][0], blocks)


def test_val_split_holds_whole_episodes(small_file):
    data = load_trajectories(small_file, image_size=8, window=2, frameskip=1, val_fraction=0.34)
    assert len(data.val.images) == 13 and len(data.train.images) == 26
    assert data.train.images.shape[-1] == 8  # resized


def test_errors_name_the_file_and_the_fix(tmp_path, small_file):
    with pytest.raises(DataError, match="jepalab collect"):
        read_trajectories(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DataError, match="not a jepalab trajectory file"):
        read_trajectories(tmp_path / "other.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(DataError, match="could not be read as HDF5"):
        read_trajectories(tmp_path / "text.h5")
    with pytest.raises(DataError, match="lower data.window"):
        load_trajectories(small_file, image_size=16, window=4, frameskip=5)


def test_missing_or_mismatched_datasets_are_named(tmp_path, small_file):
    import shutil

    missing, short = tmp_path / "missing.h5", tmp_path / "short.h5"
    shutil.copy(small_file, missing)
    with h5py.File(missing, "a") as f:
        del f["proprio"]
    with pytest.raises(DataError, match="lacks the dataset.*proprio"):
        read_trajectories(missing)
    shutil.copy(small_file, short)
    with h5py.File(short, "a") as f:
        actions = f["actions"][:-2]
        del f["actions"]
        f["actions"] = actions
    with pytest.raises(DataError, match="dataset 'actions' has .* rows, but 'pixels' has"):
        read_trajectories(short)


def test_killed_collection_leaves_no_file(tmp_path, monkeypatch):
    from jepalab.envs.two_room import TwoRoom

    calls = {"n": 0}
    step = TwoRoom.step

    def failing_step(self, action):
        calls["n"] += 1
        if calls["n"] > 20:
            raise KeyboardInterrupt
        return step(self, action)

    monkeypatch.setattr(TwoRoom, "step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        collect("two-room", tmp_path / "t.h5", episodes=5, steps=10, show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_collect_off_a_terminal_says_how_far_it_is_and_how_fast(tmp_path, capsys):
    collect("two-room", tmp_path / "t.h5", episodes=3, steps=4, env_kwargs={"size": 16})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[2] for line in lines] == ["1/3", "3/3"]  # the first, the last
    assert all(line.startswith("collect two-room: ") and line.endswith(" episodes/s")
               for line in lines), lines


def test_a_streamed_file_serves_the_same_windows_reading_frames_by_window(small_file):
    import pickle

    from jepalab.data.trajectories import FileFrames

    kwargs = dict(image_size=8, window=3, frameskip=2, val_fraction=0.34)  # resized frames
    memory = load_trajectories(small_file, **kwargs)
    streamed = load_trajectories(small_file, stream=True, **kwargs)
    assert isinstance(streamed.train.images, FileFrames)
    assert len(streamed.train.images) == len(memory.train.images) == 26
    index = torch.tensor([0, 7, 7, 17, 3])  # repeats and any order, as a step's batch
    for split in ("train", "val"):
        ours, theirs = getattr(streamed, split), getattr(memory, split)
        assert torch.equal(ours.images[:], theirs.images)
        pick = index[index < len(ours)]
        for key, value in ours.batch(pick).items():
            assert torch.equal(value, theirs.batch(pick)[key]), (split, key)
    assert torch.equal(streamed.monitor_inputs(5), memory.monitor_inputs(5))
    # it travels to another process without its open file
    clone = pickle.loads(pickle.dumps(streamed.train.images))
    assert torch.equal(clone[[4, 1]], memory.train.images[[4, 1]])
    # a batch reads only its windows' frames
    reads = []
    frames = streamed.train.images
    original = frames.read
    frames.read = lambda positions: reads.append(sorted(set(positions))) or original(positions)
    streamed.train.batch(torch.tensor([0, 0, 5]))
    assert reads == [[0, 2, 4, 5, 7, 9]]  # windows 0 and 5: frames 0, 2, 4 and 5, 7, 9


def test_a_streamed_world_model_run_resumes_exactly_and_matches_in_memory(small_file,
                                                                          tmp_path):
    from safetensors.torch import load_file

    from jepalab import checkpoint
    from jepalab.config import from_dict
    from jepalab.train import train

    def config(stream):
        return from_dict({
            "method": {"name": "lewm", "history": 2, "embed_dim": 16, "projector_hidden": 32,
                       "predictor_width": 32, "predictor_depth": 1, "predictor_heads": 2,
                       "sigreg_slices": 16},
            "data": {"name": f"trajectories:{small_file}", "image_size": 8, "window": 3,
                     "frameskip": 2, "stream": stream},
            "model": {"arch": "vit_nano", "patch_size": 4},
            "optim": {"warmup_steps": 1},
            "train": {"steps": 4, "batch_size": 8, "log_every": 1, "monitor_every": 2,
                      "checkpoint_every": 2, "collapse_rankme": 0, "collapse_spread": 0}})
    train(config(True), tmp_path / "whole", show_progress=False)
    train(config(True), tmp_path / "parts", show_progress=False, stop_at=2)
    train(config(True), tmp_path / "parts", resume=True, show_progress=False)
    train(config(False), tmp_path / "memory", show_progress=False)
    runs = [checkpoint.latest(tmp_path / run) for run in ("whole", "parts", "memory")]
    reference = load_file(runs[0] / "model.safetensors")
    for run in runs[1:]:
        other = load_file(run / "model.safetensors")
        assert all(torch.equal(other[k], reference[k]) for k in reference), run


@pytest.mark.parametrize("chunks", [None, (1, 2), (4, 2), (64, 2)])
def test_read_rows_reads_each_row_once_whatever_the_chunking(tmp_path, chunks, small_file):
    from jepalab.data.trajectories import read_rows

    values = np.arange(200).reshape(100, 2)
    with h5py.File(tmp_path / "rows.h5", "w") as f:
        f.create_dataset("x", data=values, chunks=chunks)
        rows = np.array([0, 3, 4, 5, 63, 64, 99])
        assert np.array_equal(read_rows(f["x"], rows), values[rows])
        assert read_rows(f["x"], rows[:0]).shape == (0, 2)
    with h5py.File(small_file) as f:  # collect writes a frame per chunk: reads by window
        assert f["pixels"].chunks == (1, 16, 16, 3)


def test_episodes_read_as_clips_are_their_windows_in_memory_or_streamed(small_file):
    """trajectoryclips:FILE: a world model's windows as unlabelled clips, to pretrain a video
    encoder on the episodes; streamed, the same clips read from the file."""
    from jepalab.data import catalog
    from jepalab.data.trajectories import load_trajectory_clips

    windows = load_trajectories(small_file, image_size=16, window=3, frameskip=2)
    for stream in (False, True):
        clips = load_trajectory_clips(small_file, image_size=16, frames=3, frameskip=2,
                                      stream=stream)
        assert clips.train.clips.shape == (len(windows.train), 3, 3, 16, 16)
        every = torch.arange(len(windows.train))
        assert torch.equal(clips.train.clips[every], windows.train.batch(every)["frames"])
        assert torch.equal(clips.train.batch(every[-2:])["clips"],
                           windows.train.batch(every[-2:])["frames"])
        assert torch.equal(clips.val.clips[:], windows.val.batch(
            torch.arange(len(windows.val)))["frames"])
        assert clips.declares == 0 and clips.describe()["classes"] == []
    assert catalog.kind_of(f"trajectoryclips:{small_file}") == "videos"
    with pytest.raises(DataError, match="fewer than a window"):
        load_trajectory_clips(small_file, image_size=16, frames=20, frameskip=2)


def test_episodes_read_as_frames_are_every_frame_in_memory_or_streamed(small_file):
    """trajectoryframes:FILE: every frame of the training episodes as an unlabelled image,
    the held-out episodes' frames as val and test; streamed, the same images from the file."""
    from jepalab.data import catalog
    from jepalab.data.trajectories import load_trajectory_frames

    episodes = load_trajectories(small_file, image_size=16, window=1, frameskip=1)
    for stream in (False, True):
        frames = load_trajectory_frames(small_file, image_size=16, stream=stream)
        assert frames.train.images.shape == (len(episodes.train), 3, 16, 16)
        assert torch.equal(frames.train.images[:], episodes.train.batch(
            torch.arange(len(episodes.train)))["frames"][:, 0])
        assert torch.equal(frames.val.images[:], frames.test.images[:])
        assert len(frames.val.images) == len(episodes.val) > 0
        assert frames.classes == [] and not frames.train.labels.any()
    assert catalog.kind_of(f"trajectoryframes:{small_file}") == "images"
