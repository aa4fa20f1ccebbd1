"""Video files: videofolder (videos the test encodes with PyAV) and npyvideo arrays."""
import numpy as np
import pytest
import torch

from jepalab.config import DataConfig
from jepalab.data import catalog
from jepalab.data.images import DataError
from jepalab.data.video_files import load_npyvideo, load_videofolder

pytestmark = pytest.mark.xdist_group("video-files")  # module fixtures: built once

av = pytest.importorskip("av")


def write_video(path, frames, height=24, width=32, direction=1):
    """An mp4 of a bright bar sliding across a dark frame (left to right or back)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            image = np.full((height, width, 3), 20, np.uint8)
            x = 2 + 2 * t if direction > 0 else width - 6 - 2 * t
            image[:, x:x + 4] = 230
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for name, direction in (("left", -1), ("right", 1)):
        (root / name).mkdir()
        for i in range(4):
            write_video(root / name / f"clip{i}.mp4", 12, direction=direction)
    return root


def test_videofolder_reads_a_clip_per_video(folder):
    data = catalog.load(DataConfig(f"videofolder:{folder}", image_size=16, frames=4,
                                   frameskip=2))
    assert catalog.kind_of(f"videofolder:{folder}") == "videos"
    assert data.classes == ["left", "right"] and data.skipped == 0
    assert len(data.train) + len(data.val) + len(data.test) == 8
    clips = torch.cat([data.train.clips, data.val.clips, data.test.clips])
    labels = torch.cat([data.train.labels, data.val.labels, data.test.labels])
    assert clips.shape[1:] == (4, 3, 16, 16) and clips.dtype == torch.uint8
    # the bar moves: its column (brightest) goes right in "right" clips, left in "left" ones
    column = clips.float().mean(dim=(2, 3)).argmax(-1)                  # (N, T)
    moved = (column[:, -1] - column[:, 0]).sign()
    assert torch.equal(moved, labels * 2 - 1)


def test_a_broken_video_is_named_or_skipped(folder, tmp_path):
    for name in ("left", "right"):
        (tmp_path / name).mkdir()
        for i in range(2):
            write_video(tmp_path / name / f"ok{i}.mp4", 12)
    (tmp_path / "left" / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(DataError, match="broken.mp4"):
        load_videofolder(tmp_path, image_size=16, frames=4)
    data = load_videofolder(tmp_path, image_size=16, frames=4, skip_bad=True)
    assert data.skipped == 1 and len(data.train) + len(data.val) + len(data.test) == 4
    named = catalog.load(DataConfig(f"videofolder:{tmp_path}", image_size=16, frames=4,
                                    frameskip=2, on_bad_file="skip"))
    assert named.skipped == 1 and named.describe()["skipped_files"] == 1
    with pytest.raises(DataError, match="fewer than 20 frames 3 apart"):
        load_videofolder(folder, image_size=16, frames=20, stride=3)


def test_npyvideo_reads_clips_and_their_labels(tmp_path):
    clips = np.random.default_rng(0).integers(0, 256, (20, 6, 12, 12), dtype=np.uint8)
    np.save(tmp_path / "clips.npy", clips)
    data = load_npyvideo(tmp_path / "clips.npy", image_size=12, frames=5)
    assert data.classes == ["clip"] and data.train.clips.shape[1:] == (5, 3, 12, 12)
    every = torch.cat([data.train.clips, data.val.clips, data.test.clips])
    assert sorted(map(bytes, every[:, :, 0].numpy())) == sorted(map(bytes, clips[:, :5]))
    np.save(tmp_path / "clips.labels.npy", np.arange(20) % 3)
    labelled = load_npyvideo(tmp_path / "clips.npy", image_size=12, frames=5)
    assert labelled.classes == ["0", "1", "2"]
    np.save(tmp_path / "float.npy", clips.astype(np.float32))
    with pytest.raises(DataError, match="expected uint8 clips"):
        load_npyvideo(tmp_path / "float.npy", image_size=12, frames=5)
    with pytest.raises(DataError, match="fewer than data.frames 8"):
        load_npyvideo(tmp_path / "clips.npy", image_size=12, frames=8)


def test_a_streamed_videofolder_serves_the_same_clips_decoding_only_a_batch(folder, tmp_path):
    from jepalab.data.video_files import FileClips

    memory = load_videofolder(folder, image_size=16, frames=4, seed=3)
    streamed = load_videofolder(folder, image_size=16, frames=4, seed=3, stream=True)
    assert isinstance(streamed.train.clips, FileClips)
    assert streamed.describe() == memory.describe()
    for name in ("train", "val", "test"):
        ours, theirs = getattr(streamed, name), getattr(memory, name)
        assert torch.equal(ours.labels, theirs.labels)
        assert torch.equal(ours.clips[:], theirs.clips)
    index = torch.tensor([4, 0, 4, 2])  # repeats and any order, as a step's batch
    assert torch.equal(streamed.train.batch(index)["clips"], memory.train.batch(index)["clips"])
    assert torch.equal(streamed.monitor_inputs(3), memory.monitor_inputs(3))
    # a file that breaks after the run started stops the batch that reads it, naming it
    broken = tmp_path / "videos"
    for name in ("left", "right"):
        (broken / name).mkdir(parents=True)
        for i in range(2):
            write_video(broken / name / f"ok{i}.mp4", 12)
    data = load_videofolder(broken, image_size=16, frames=4, stream=True)
    (broken / "left" / "ok0.mp4").write_bytes(b"no longer a video")
    with pytest.raises(DataError, match=r"ok0.mp4.*data.stream=true"):
        torch.cat([data.train.clips[:], data.val.clips[:], data.test.clips[:]])
    with pytest.raises(DataError, match="cannot both stream and skip"):
        load_videofolder(folder, image_size=16, frames=4, stream=True, skip_bad=True)
