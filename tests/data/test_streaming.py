"""Streamed image folders (data.stream=true): the same batches as in memory, exact resume,
training under a memory cap below the decoded data set's size; on files written to tmp_path."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from jepalab import checkpoint
from jepalab.config import ConfigError, load_config
from jepalab.data.files import load_imagefolder
from jepalab.data.images import DataError
from jepalab.data.streaming import FileImages
from jepalab.eval.baselines import first
from jepalab.eval.probes import extract_features, pixel_features
from jepalab.nn.vit import VisionTransformer, ViTSpec
from jepalab.train import train

TINY = ["data.image_size=16", "model.patch_size=4", "train.batch_size=8", "train.threads=1",
        "train.log_every=1", "train.monitor_every=3", "train.checkpoint_every=2",
        "optim.warmup_steps=2", "method.predictor_depth=1", "method.predictor_width=32",
        "method.min_keep=2"]


@pytest.fixture(autouse=True)
def _threads():
    """train.threads=1 sets torch's thread count for the process: give it back after."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def write_noise(folder, classes=("cat", "dog", "emu"), n_per_class=10, seed=0):
    """Random-pixel images of mixed sizes and modes (RGB, grey, palette, RGBA)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            h, w = rng.integers(6, 24, size=2)
            image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            image = image.convert(("RGB", "L", "P", "RGBA")[(c + i) % 4])
            image.save(folder / name / f"{name}{i:02d}.png")


def test_streamed_batches_equal_the_in_memory_batches(tmp_path):
    write_noise(tmp_path)
    memory = load_imagefolder(tmp_path, image_size=16, seed=1)
    streamed = load_imagefolder(tmp_path, image_size=16, seed=1, stream=True)
    assert isinstance(streamed.train.images, FileImages)
    assert streamed.describe() == memory.describe()
    index = torch.tensor([5, 0, 23, 5, 11])
    for name in ("train", "val", "test"):
        ours, theirs = getattr(streamed, name), getattr(memory, name)
        assert len(ours) == len(theirs) and ours.images.shape == theirs.images.shape
        assert torch.equal(ours.labels, theirs.labels)
        assert torch.equal(ours.images[:], theirs.images)
    rng_state = torch.get_rng_state()
    batch, expected = streamed.train.batch(index), memory.train.batch(index)
    assert torch.equal(torch.get_rng_state(), rng_state)  # decoding draws no random numbers
    assert batch.keys() == expected.keys()
    for key in batch:
        assert torch.equal(batch[key], expected[key]), key
    images, pixels = streamed.train.images, memory.train.images
    for key in (3, -1, slice(2, 9, 3), np.array([4, 1]), pixels[:, 0, 0, 0] > 128,
                torch.tensor(7)):
        assert torch.equal(images[key], pixels[key]), key
    assert images[20:20].shape == (0, 3, 16, 16)
    with pytest.raises(IndexError):
        images[len(images)]
    head = first(images, 5)
    assert isinstance(head, FileImages) and torch.equal(head[:], pixels[:5])
    assert torch.equal(first(pixels, 5), pixels[:5])
    torch.manual_seed(0)
    encoder = VisionTransformer(ViTSpec("vit_nano", 16, 4))
    assert torch.equal(extract_features(encoder, images, batch_size=7),
                       extract_features(encoder, pixels, batch_size=7))
    assert torch.equal(pixel_features(images, batch_size=7), pixel_features(pixels))


def test_streamed_split_layout_matches_in_memory(tmp_path):
    write_noise(tmp_path / "train", n_per_class=6)
    write_noise(tmp_path / "val", n_per_class=2, seed=1)
    memory = load_imagefolder(tmp_path, image_size=8, seed=2)
    streamed = load_imagefolder(tmp_path, image_size=8, seed=2, stream=True)
    assert (len(streamed.train), len(streamed.val), len(streamed.test)) == (16, 6, 2)
    for name in ("train", "val", "test"):
        ours, theirs = getattr(streamed, name), getattr(memory, name)
        assert torch.equal(ours.images[:], theirs.images) and torch.equal(ours.labels,
                                                                          theirs.labels)


def test_a_bad_file_stops_the_batch_that_reads_it_naming_it(tmp_path):
    write_noise(tmp_path)
    (tmp_path / "dog" / "dog03.png").write_bytes(b"\x00garbage, not a png")
    data = load_imagefolder(tmp_path, image_size=8, stream=True)  # nothing decoded yet
    split = next(s for s in (data.train, data.val, data.test)
                 if any(f.endswith("dog03.png") for f in s.images.files))
    bad = next(i for i, f in enumerate(split.images.files) if f.endswith("dog03.png"))
    split.batch(torch.tensor([i for i in range(len(split)) if i != bad]))
    with pytest.raises(DataError, match=r"cannot read image file .*dog03\.png.*data\.stream") \
            as caught:
        split.batch(torch.tensor([bad]))
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(DataError, match="cannot both stream and skip"):
        load_imagefolder(tmp_path, image_size=8, stream=True, skip_bad=True)


@pytest.mark.parametrize("overrides, words", [
    (["data.name=shapes", "data.stream=true"], ["data.stream", "'shapes' cannot stream",
                                                "imagefolder:PATH"]),
    (["data.name=imagefolder:/x", "data.stream=true", "data.on_bad_file=skip"],
     ["data.on_bad_file=skip", "data.stream=true"]),
])
def test_the_config_refuses_what_cannot_stream(overrides, words):
    with pytest.raises(ConfigError) as caught:
        load_config("ijepa-shapes", overrides)
    for word in words:
        assert word in str(caught.value)


def test_streamed_training_resumes_exactly_and_matches_in_memory(tmp_path):
    write_noise(tmp_path / "data")
    name = f"data.name=imagefolder:{tmp_path / 'data'}"
    streamed = load_config("ijepa-shapes", TINY + [name, "train.steps=6", "data.stream=true"])
    memory = load_config("ijepa-shapes", TINY + [name, "train.steps=6"])
    train(streamed, tmp_path / "whole", show_progress=False)
    train(streamed, tmp_path / "parts", show_progress=False, stop_at=3)
    train(streamed, tmp_path / "parts", resume=True, show_progress=False)
    train(memory, tmp_path / "memory", show_progress=False)
    runs = [checkpoint.latest(tmp_path / run) for run in ("whole", "parts", "memory")]
    assert [run.name for run in runs] == ["checkpoint-0000006"] * 3
    for file in ("model.safetensors", "optimizer.safetensors"):
        reference = load_file(runs[0] / file)
        for run in runs[1:]:
            other = load_file(run / file)
            assert other.keys() == reference.keys()
            assert all(torch.equal(other[k], reference[k]) for k in reference), (run, file)

    def losses(run):
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").open()]
        return [(r["step"], r.get("loss"), r.get("rankme")) for r in rows]
    assert losses("whole") == losses("parts") == losses("memory")
    assert len(losses("whole")) == 7


CAPPED = textwrap.dedent("""
    import re, resource, sys
    from jepalab.config import load_config
    from jepalab.data.files import load_imagefolder
    from jepalab.train import train

    def private_bytes():  # VmData: heap and anonymous maps, where arrays and tensors live
        status = open("/proc/self/status").read()
        return int(re.search(r"VmData:\\s+(\\d+) kB", status).group(1)) * 1024

    data, run, size, headroom, how = sys.argv[1:]
    cap = private_bytes() + int(headroom)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, resource.getrlimit(resource.RLIMIT_DATA)[1]))
    print("cap", cap, flush=True)
    if how == "memory":
        load_imagefolder(data, image_size=int(size))
    else:
        train(load_config("ijepa-shapes", [
            f"data.name=imagefolder:{data}", f"data.image_size={size}", "data.stream=true",
            "model.patch_size=64", "train.batch_size=4", "train.steps=2", "train.threads=1",
            "train.monitor_every=0", "train.log_every=1", "optim.warmup_steps=1",
            "method.predictor_depth=1", "method.predictor_width=32", "method.min_keep=2"]),
            run, show_progress=False)
        print("trained", flush=True)
""")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc; RLIMIT_DATA as Linux has it")
def test_streaming_trains_under_a_memory_cap_the_decoded_data_exceeds(tmp_path):
    """1600 tiny PNGs that decode to 1.2 GB at 512 px; the process may hold its memory after
    importing torch plus 600 MB (RLIMIT_DATA: RLIMIT_AS would count torch's reserved address
    space, over 1 GB before any data). Loading into memory fails; streaming trains."""
    size, headroom, count = 512, 600 * 2**20, 1600
    for c in range(2):
        (tmp_path / "data" / f"c{c}").mkdir(parents=True)
        for i in range(count // 2):
            Image.new("RGB", (8, 8), (200 * c, i % 256, i // 256)).save(
                tmp_path / "data" / f"c{c}" / f"{i}.png")
    decoded = count * 3 * size * size
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")

    def run(how):
        return subprocess.run([sys.executable, "-c", CAPPED, str(tmp_path / "data"),
                               str(tmp_path / "run"), str(size), str(headroom), how],
                              env=env, capture_output=True, text=True, timeout=120)
    memory = run("memory")
    assert memory.returncode != 0 and "MemoryError" in memory.stderr, memory.stderr[-2000:]
    streamed = run("stream")
    assert streamed.returncode == 0, streamed.stderr[-2000:]
    cap = int(streamed.stdout.split()[1])
    assert cap < decoded and "trained" in streamed.stdout
    assert checkpoint.latest(tmp_path / "run").name == "checkpoint-0000002"
