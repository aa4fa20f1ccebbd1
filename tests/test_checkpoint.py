"""Checkpoints that survive damage: checksums verified on resume, a damaged newest
checkpoint named and skipped, a full disk leaving the previous one intact, the umask."""
import errno
import os
import stat

import pytest
import torch
from safetensors.torch import load_file

import jepalab
from jepalab import checkpoint
from jepalab.config import load_config
from jepalab.train import train

TINY = ["data.name=digits", "data.image_size=16", "model.patch_size=4", "train.batch_size=16",
        "train.log_every=1", "train.monitor_every=0", "optim.warmup_steps=2",
        "method.predictor_depth=1", "method.predictor_width=32", "method.min_keep=2",
        "train.checkpoint_every=2"]


def tiny(steps):
    return load_config("ijepa-shapes", TINY + [f"train.steps={steps}"])


def damage(file, at=0.5, count=64):
    """Overwrite `count` bytes in the middle of `file` (the tensor data, past the header)."""
    data = bytearray(file.read_bytes())
    start = int(len(data) * at)
    data[start:start + count] = bytes(255 - b for b in data[start:start + count])
    file.write_bytes(bytes(data))


def test_each_file_carries_its_checksum_and_damage_is_named(tmp_path):
    train(tiny(2), tmp_path, show_progress=False)
    folder = checkpoint.latest(tmp_path)
    checkpoint.verify(folder)  # as written: passes
    damage(folder / "optimizer.safetensors")
    with pytest.raises(checkpoint.CheckpointError, match="optimizer.safetensors is damaged"):
        checkpoint.verify(folder)
    checkpoint.verify(folder, ("encoder.safetensors",))  # the encoder alone is still good
    damage(folder / "encoder.safetensors")
    with pytest.raises(checkpoint.CheckpointError, match="encoder.safetensors is damaged"):
        jepalab.load(tmp_path)
    (folder / "model.safetensors").write_bytes(b"")  # truncated
    with pytest.raises(checkpoint.CheckpointError, match="model.safetensors is damaged"):
        checkpoint.verify(folder, ("model.safetensors",))


def test_resume_skips_a_damaged_newest_checkpoint_and_ends_as_if_never_stopped(tmp_path):
    train(tiny(6), tmp_path / "whole", show_progress=False)
    run = tmp_path / "run"
    train(tiny(6), run, show_progress=False, stop_at=4)  # checkpoints at 2 and 4
    damage(run / "checkpoint-0000004" / "model.safetensors")
    # safetensors still parses the damaged file: only the checksum can tell
    assert load_file(run / "checkpoint-0000004" / "model.safetensors")
    with pytest.warns(checkpoint.DamagedCheckpointWarning,
                      match=r"checkpoint-0000004/model.safetensors is damaged"):
        train(tiny(6), run, resume=True, show_progress=False)
    whole, resumed = checkpoint.latest(tmp_path / "whole"), checkpoint.latest(run)
    assert whole.name == resumed.name == "checkpoint-0000006"
    for name in ("model.safetensors", "optimizer.safetensors"):
        a, b = load_file(whole / name), load_file(resumed / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    checkpoint.verify(resumed)


def test_no_usable_checkpoint_is_a_clear_error(tmp_path):
    train(tiny(2), tmp_path, show_progress=False)
    for folder in checkpoint.complete(tmp_path):
        damage(folder / "model.safetensors")
    with pytest.warns(checkpoint.DamagedCheckpointWarning), \
            pytest.raises(checkpoint.CheckpointError, match="no usable checkpoint in"):
        train(tiny(4), tmp_path, resume=True, show_progress=False)


def test_a_full_disk_during_a_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    train(tiny(2), tmp_path, show_progress=False)
    previous = checkpoint.latest(tmp_path)
    real_save = checkpoint.save_file

    def disk_fills_up(tensors, path, metadata=None):
        if str(path).endswith("optimizer.safetensors"):  # after two files were written
            with open(path, "wb") as f:
                f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", disk_fills_up)
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"No space left on device.*checkpoint-0000002 is intact"):
        train(tiny(4), tmp_path, resume=True, show_progress=False)
    assert checkpoint.latest(tmp_path) == previous
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".checkpoint")]
    checkpoint.verify(previous)
    monkeypatch.setattr(checkpoint, "save_file", real_save)  # space again: the run resumes
    train(tiny(4), tmp_path, resume=True, show_progress=False)
    assert checkpoint.step_of(checkpoint.latest(tmp_path)) == 4


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_checkpoint_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        train(tiny(2), tmp_path, show_progress=False)
    finally:
        os.umask(old)
    for file in [*checkpoint.latest(tmp_path).iterdir(), tmp_path / "config.json"]:
        assert stat.S_IMODE(file.stat().st_mode) == 0o666 & ~umask, file.name


def poison_step(monkeypatch, at):
    """Make the method's loss NaN on its `at`-th forward pass (1-based)."""
    from jepalab.methods import StepOutput, method_module

    module = method_module("ijepa")
    forward, calls = module.Method.forward, [0]

    def nan_at(self, batch):
        out = forward(self, batch)
        calls[0] += 1
        return StepOutput(out.loss * float("nan"), out.logs) if calls[0] == at else out

    monkeypatch.setattr(module.Method, "forward", nan_at)


def test_a_nonfinite_loss_stops_naming_step_method_and_last_good_checkpoint(tmp_path,
                                                                             monkeypatch):
    from jepalab.nonfinite import NonFinite

    poison_step(monkeypatch, at=3)
    with pytest.raises(NonFinite, match=r"at step 3 \(method ijepa\): loss nan.*last good "
                       r"checkpoint is .*checkpoint-0000002.*on_nonfinite=skip"):
        train(tiny(6), tmp_path, show_progress=False)
    assert checkpoint.step_of(checkpoint.latest(tmp_path)) == 2  # nothing bad was saved


def test_a_stop_read_at_the_next_log_step_names_the_first_bad_step_and_saves_nothing_after(
        tmp_path, monkeypatch):
    from jepalab.nonfinite import NonFinite

    poison_step(monkeypatch, at=3)  # steps 3 and on are NaN; read at step 4's checkpoint
    cfg = load_config("ijepa-shapes", TINY + ["train.steps=8", "train.log_every=8"])
    with pytest.raises(NonFinite, match=r"at step 3 \(method ijepa\): loss nan.*last good "
                       r"checkpoint is .*checkpoint-0000002"):
        train(cfg, tmp_path, show_progress=False)
    assert checkpoint.step_of(checkpoint.latest(tmp_path)) == 2
    assert not (tmp_path / "metrics.jsonl").exists() or "loss" not in (
        tmp_path / "metrics.jsonl").read_text()  # no NaN row was logged


def test_skip_counts_the_nonfinite_step_and_trains_on(tmp_path, monkeypatch):
    import json

    poison_step(monkeypatch, at=3)
    cfg = load_config("ijepa-shapes", TINY + ["train.steps=5", "train.on_nonfinite=skip"])
    method = train(cfg, tmp_path, show_progress=False)
    assert all(torch.isfinite(p).all() for p in method.parameters())
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert [r["nonfinite_skipped"] for r in rows if "loss" in r] == [0, 0, 1, 1, 1]
    assert json.loads((checkpoint.latest(tmp_path) / "state.json").read_text())[
        "nonfinite_skipped"] == 1


def test_fp16_on_a_cpu_is_refused_with_what_to_use(tmp_path):
    from jepalab.config import ConfigError

    cfg = load_config("ijepa-shapes", TINY + ["train.steps=2", "train.precision=fp16",
                                              "train.device=cpu"])
    with pytest.raises(ConfigError, match="fp16 runs on CUDA GPUs only.*use bf16 or fp32"):
        train(cfg, tmp_path, show_progress=False)


# A trainer in a subprocess whose checkpoint writes take a while (0.15 s a file), so a
# test can kill it inside one; the numbers it computes are the trainer's own.
SLOW_SAVE = """
import sys, time
import jepalab.checkpoint as checkpoint
write = checkpoint.save_file
def slow(*args, **kwargs):
    time.sleep(0.15)
    return write(*args, **kwargs)
checkpoint.save_file = slow
from jepalab.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.first(65)
def test_sigkill_at_any_moment_then_resume_is_bit_identical(tmp_path):
    import json
    import random
    import signal
    import subprocess
    import sys
    import time

    args = TINY + ["train.steps=24", "train.checkpoint_every=4", "train.threads=1",
                   "train.monitor_every=5", "--quiet"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))

    def trainer(*items):
        return subprocess.Popen([sys.executable, "-c", SLOW_SAVE, "train", *items], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def logged(run):
        path = run / "metrics.jsonl"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def wait_for(condition, what, process):
        deadline = time.time() + 120
        while not condition():
            assert process.poll() is None, f"finished before {what}: {process.stdout.read()}"
            assert time.time() < deadline, f"timed out waiting for {what}"
            time.sleep(0.005)

    # the uninterrupted run beside the killed one (one thread each)
    reference = trainer("ijepa-shapes", *args, f"train.run_dir={tmp_path / 'reference'}")
    run, rng, kills = tmp_path / "run", random.Random(0), []
    process = trainer("ijepa-shapes", *args, f"train.run_dir={run}")
    for moment in ("checkpoint write", "step", "checkpoint write"):
        if moment == "checkpoint write":  # a half-written folder is on disk right now
            wait_for(lambda: any(run.glob(".checkpoint-*.tmp/*.safetensors")), moment, process)
        else:  # some steps after the last resume
            target = logged(run) + rng.randint(2, 6)
            wait_for(lambda target=target: logged(run) >= target, moment, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        kills.append((moment, checkpoint.step_of(checkpoint.latest(run))
                      if checkpoint.latest(run) else None))
        process = trainer(f"resume={run}", "--quiet") if checkpoint.latest(run) else \
            trainer("ijepa-shapes", *args, f"train.run_dir={run}")
    assert process.wait(timeout=300) == 0, process.stdout.read()
    assert reference.wait(timeout=300) == 0, reference.stdout.read()
    assert len(kills) == 3 and kills[0][0] == "checkpoint write"
    whole, resumed = checkpoint.latest(tmp_path / "reference"), checkpoint.latest(run)
    assert whole.name == resumed.name == "checkpoint-0000024"
    for name in ("model.safetensors", "optimizer.safetensors", "encoder.safetensors"):
        a, b = load_file(whole / name), load_file(resumed / name)
        assert a.keys() == b.keys(), name
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key, kills)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == list(range(25))  # each step once, none torn
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
