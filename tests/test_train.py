"""The trainer: exact resume, atomic checkpoints, stop on signal, 2-process DDP on CPU."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

import jepalab
from jepalab import checkpoint
from jepalab.config import load_config
from jepalab.train import batch_indices, train
from jepalab.world import load_world_model

TINY = ["data.name=digits", "data.image_size=16", "model.patch_size=4", "train.batch_size=16",
        "train.log_every=1", "train.monitor_every=3", "optim.warmup_steps=2",
        "method.predictor_depth=1", "method.predictor_width=32", "method.min_keep=2"]


def tiny(steps=6, **extra):
    overrides = TINY + [f"train.steps={steps}"] + [f"{k}={v}" for k, v in extra.items()]
    return load_config("ijepa-shapes", overrides)


def weights(folder):
    return load_file(folder / "model.safetensors")


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_batches_cover_each_epoch_once():
    seen = torch.cat([batch_indices(s, 10, 4, seed=0) for s in range(5)])  # 2 epochs
    assert sorted(seen[:10].tolist()) == list(range(10))
    assert sorted(seen[10:].tolist()) == list(range(10))
    assert not torch.equal(seen[:10], seen[10:])


def test_resume_after_stop_matches_uninterrupted(tmp_path, capsys):
    cfg = tiny(steps=6, **{"train.checkpoint_every": 2})
    train(cfg, tmp_path / "whole", show_progress=True)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("train: ")]
    assert printed[-1].startswith("train: 6/6 loss ")   # not a terminal: plain lines, the last
    train(cfg, tmp_path / "parts", show_progress=False, stop_at=3)
    assert json.loads((checkpoint.latest(tmp_path / "parts") / "state.json").read_text())[
        "step"] == 3
    train(cfg, tmp_path / "parts", resume=True, show_progress=False)
    whole, parts = checkpoint.latest(tmp_path / "whole"), checkpoint.latest(tmp_path / "parts")
    assert whole.name == parts.name == "checkpoint-0000006"
    assert_same(weights(whole), weights(parts))
    assert_same(load_file(whole / "optimizer.safetensors"),
                load_file(parts / "optimizer.safetensors"))
    # the metrics log has each step once, as if never stopped
    steps = [json.loads(line)["step"] for line in (tmp_path / "parts/metrics.jsonl").open()]
    assert steps == list(range(0, 7))  # step 0: the embeddings at initialisation


def test_checkpoint_folder_contents_and_pruning(tmp_path):
    train(tiny(steps=6, **{"train.checkpoint_every": 1}), tmp_path, show_progress=False)
    folders = sorted(p.name for p in tmp_path.glob("checkpoint-*"))
    assert folders == ["checkpoint-0000005", "checkpoint-0000006"]  # the last two kept
    assert (tmp_path / "latest").read_text().strip() == "checkpoint-0000006"
    assert not list(tmp_path.glob(".*tmp*"))
    folder = tmp_path / "checkpoint-0000006"
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "encoder.safetensors",
                                                   "optimizer.safetensors", "state.json"}
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert metrics[0]["step"] == 0 and "rankme" in metrics[0] and "loss" not in metrics[0]
    assert {"loss", "lr", "samples_per_s", "grad_norm"} <= metrics[1].keys()
    assert "rankme" in metrics[3] and "rankme" not in metrics[1]


def test_incomplete_checkpoint_is_ignored(tmp_path):
    train(tiny(steps=2, **{"train.checkpoint_every": 1}), tmp_path, show_progress=False)
    broken = tmp_path / "checkpoint-0000009"  # a crash mid-write leaves no state.json
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"partial")
    (tmp_path / "latest").unlink()
    assert checkpoint.latest(tmp_path).name == "checkpoint-0000002"


def test_load_returns_the_eval_encoder(tmp_path):
    method = train(tiny(steps=2), tmp_path, show_progress=False)
    encoder = jepalab.load(tmp_path)
    images = torch.randn(2, 3, 16, 16)
    target = method.eval_encoder().eval()
    assert torch.allclose(encoder(images), target(images))
    assert json.loads((tmp_path / "data.json").read_text())["kind"] == "images"
    with pytest.raises(ValueError, match="is an images run .*not a world model"):
        load_world_model(tmp_path)  # what `jepalab plan` reads
    file = checkpoint.latest(tmp_path) / "encoder.safetensors"
    assert torch.allclose(jepalab.load(file).features(images), target.features(images))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        jepalab.load(tmp_path / "empty")


@pytest.mark.first(45)
def test_sigint_stops_with_a_checkpoint_and_resume_completes(tmp_path):
    # the same thread count in the subprocess and here: sums split over threads differently
    # differ in the last bit (OMP_NUM_THREADS=1 outside, 2 threads in pytest, failed before)
    overrides = TINY + ["train.steps=60", "train.checkpoint_every=1000", "train.monitor_every=0",
                        f"train.threads={torch.get_num_threads()}"]
    reference = tmp_path / "reference"
    command = [sys.executable, "-m", "jepalab.cli", "train", "ijepa-shapes", *overrides,
               "--quiet"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    process = subprocess.Popen(command + [f"train.run_dir={tmp_path / 'run'}"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or
                                      len(metrics.read_text().splitlines()) < 5):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "resume=" in output
    stopped_at = json.loads((checkpoint.latest(tmp_path / "run") / "state.json").read_text())
    assert 5 <= stopped_at["step"] < 60
    done = subprocess.run([sys.executable, "-m", "jepalab.cli", "train",
                           f"resume={tmp_path / 'run'}", "--quiet"], env=env, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    train(load_config("ijepa-shapes", overrides), reference, show_progress=False)
    assert_same(weights(checkpoint.latest(reference)),
                weights(checkpoint.latest(tmp_path / "run")))


def _ddp_worker(rank, group, run_dir, out_dir):
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=group, rank=rank, world_size=2)
    method = train(tiny(steps=4), run_dir, show_progress=False)
    state = {k: v.clone() for k, v in method.state_dict().items()}
    torch.save(state, os.path.join(out_dir, f"rank{rank}.pt"))


def test_two_process_ddp_on_cpu_keeps_ranks_in_sync(tmp_path, group):
    mp.start_processes(_ddp_worker, args=(group, str(tmp_path / "run"), str(tmp_path)),
                       nprocs=2, start_method="spawn")
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    assert_same(rank0, rank1)
    saved = weights(checkpoint.latest(tmp_path / "run"))
    assert_same({k: v for k, v in rank0.items()}, saved)
    initial = tiny(steps=4)
    torch.manual_seed(initial.train.seed)
    from jepalab.build import build_method
    fresh = build_method(initial, 10).state_dict()
    assert any(not torch.equal(fresh[k], rank0[k]) for k in fresh)  # it trained


def test_ensure_trained_finishes_a_stopped_run_and_skips_a_finished_one(tmp_path):
    from jepalab.train import ensure_trained

    cfg = tiny(steps=4)
    train(cfg, tmp_path, show_progress=False, stop_at=2)
    ensure_trained(cfg, tmp_path, show_progress=False)
    assert checkpoint.step_of(checkpoint.latest(tmp_path)) == 4
    before = (checkpoint.latest(tmp_path) / "state.json").stat().st_mtime_ns
    ensure_trained(cfg, tmp_path, show_progress=False)  # finished: nothing is retrained
    assert (checkpoint.latest(tmp_path) / "state.json").stat().st_mtime_ns == before


def test_a_run_names_its_data_by_absolute_path_and_resumes_from_anywhere(tmp_path,
                                                                         monkeypatch):
    """Trained from one directory with a relative data path, then moved: the run still
    resumes and its data still loads from another directory."""
    from PIL import Image

    from jepalab.build import load_data
    from jepalab.cli import main
    from jepalab.probe import run_config

    work = tmp_path / "work"
    for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (work / "pics" / name).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (16, 16), colour).save(work / "pics" / name / f"{i}.png")
    monkeypatch.chdir(work)
    overrides = [o for o in TINY if not o.startswith("data.name")]
    assert main(["train", "ijepa-shapes", *overrides, "data.name=imagefolder:pics",
                 "train.steps=2", "train.run_dir=runs/a", "--quiet"]) == 0
    saved = json.loads((work / "runs/a/config.json").read_text())["data"]["name"]
    assert saved == f"imagefolder:{work / 'pics'}"
    (work / "runs/a").rename(tmp_path / "moved")
    monkeypatch.chdir(tmp_path)
    assert len(load_data(run_config(tmp_path / "moved")).train) == 16
    assert main(["train", f"resume={tmp_path / 'moved'}", "train.steps=3", "--quiet"]) == 0
    assert checkpoint.step_of(checkpoint.latest(tmp_path / "moved")) == 3


def test_wandb_offline_gets_the_run(tmp_path, monkeypatch):
    """`train.wandb=true` (the log extra; skipped where wandb is not installed), offline."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(tiny(steps=3, **{"train.wandb": "true"}), tmp_path, show_progress=False)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_a_missing_logger_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("No module named 'wandb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_wandb)
    from jepalab.errors import MissingExtra

    with pytest.raises(MissingExtra, match=r"pip install -e '\.\[log\]'"):
        train(tiny(steps=1, **{"train.wandb": "true"}), tmp_path, show_progress=False)


def test_a_step_reads_nothing_back_to_the_host_between_log_steps(tmp_path, host_reads):
    """The finiteness check and the logs wait on the device until a log step, so a GPU is
    never stalled mid-window: twice the steps between two log steps, the same reads."""
    reads = []
    for steps in (3, 6):
        cfg = tiny(steps, **{"train.log_every": steps, "train.monitor_every": 0})
        with host_reads() as counter:
            train(cfg, tmp_path / str(steps), show_progress=False)
        reads.append(counter.reads)
    assert reads[0] == reads[1] and reads[0]  # the log step itself reads the device


def test_prefetch_reads_each_step_ahead_once_and_raises_at_the_step_that_failed():
    from jepalab.train import Prefetch

    reads = []

    def read(step):
        reads.append(step)
        if step == 3:
            raise OSError("unreadable file in step 3's batch")
        return {"x": torch.tensor([step])}

    ahead = Prefetch(read, end=5, pin=False)
    try:
        assert ahead.get(0)["x"].item() == 0  # a fresh video run's preview reads step 0 ...
        assert [ahead.get(step)["x"].item() for step in (0, 1, 2)] == [0, 1, 2]  # ... then the loop
        with pytest.raises(OSError, match="step 3"):
            ahead.get(3)
    finally:
        ahead.close()
    assert sorted(reads) == [0, 0, 1, 2, 3]  # step 1 was read ahead once, not twice
