"""FSDP2 on CPU (2 gloo processes): the same step as one process with the whole batch, and
checkpoints that resume with another number of processes."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from jepalab import checkpoint, distributed, parallel
from jepalab.build import build_method
from jepalab.config import ConfigError, load_config
from jepalab.train import parameter_groups, train

pytestmark = pytest.mark.xdist_group("fsdp")  # module fixtures: built once

TINY = ["data.name=digits", "data.image_size=16", "model.patch_size=4", "train.batch_size=16",
        "train.log_every=1", "train.monitor_every=3", "optim.warmup_steps=2",
        "method.predictor_depth=1", "method.predictor_width=32", "method.min_keep=2"]
HALF = 4  # images per process in the step comparison
STEPS = 3  # of the runs that stop at step 2 and resume: the monitor runs at steps 0 and 3


def tiny(**extra):
    return load_config("ijepa-shapes", TINY + [f"{k}={v}" for k, v in extra.items()])


def join(rank, group):
    """Join a 2-process gloo group that meets at the file `group` (a file store: a TCP port
    picked free up front could be taken by another test's process before it is bound)."""
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=Path(group).as_uri(), rank=rank,
                                         world_size=2)


def assert_close(actual: dict, expected: dict, atol: float):
    """Two dicts of tensors alike, compared all at once (one comparison per tensor took
    seconds in all on a busy machine); the message names the tensors that differ."""
    assert actual.keys() == expected.keys()
    keys = sorted(expected)
    a, e = (torch.cat([d[k].detach().flatten().double() for k in keys]) for d in (actual, expected))
    if not torch.allclose(a, e, rtol=1e-4, atol=atol):
        raise AssertionError("differ: " + ", ".join(
            k for k in keys if not torch.allclose(actual[k].double(), expected[k].double(),
                                                  rtol=1e-4, atol=atol)))


def two_steps(world):
    """I-JEPA (EMA teacher at momentum 0.5) on this process's rows of fixed images with
    fixed masks and no augmentation, sharded over `world`: the mean loss of each of two
    steps, the first step's gradients and norm, and the weights after them (whole)."""
    torch.manual_seed(0)
    method = build_method(tiny(**{"method.ema_start": 0.5, "method.ema_end": 0.5}), 10)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2 * HALF, 3, 16, 16, generator=generator)
    context, targets = method.cfg.draw_masks(2 * HALF, method.grid, "cpu")
    rows = slice(world.rank * HALF, world.rank * HALF + 2 * HALF // world.size)
    method.view = torch.nn.Identity()
    method.cfg.draw_masks = lambda batch, grid, device: (context[rows], targets[rows])
    model = parallel.wrap(method, "fsdp", world, torch.device("cpu"))
    # lr 1e-3: Adam divides each gradient by its own scale, so a gradient of 1e-8 whose last
    # bits differ between one and two processes (its sums run in another order) moves a
    # weight about lr * 1e-3 apart: at lr 1e-2 that crossed the 1e-5 below on an AVX-512 CPU
    # (1.2e-5), at 1e-3 it is 1.2e-6
    optimizer = torch.optim.AdamW(parameter_groups(method), lr=1e-3, weight_decay=0.05)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    result = {"loss": []}
    for step in range(2):
        loss = model({"images": images[rows]}).loss
        optimizer.zero_grad()
        loss.backward()
        result["loss"].append(distributed.world_mean(loss.detach()).item())
        if step == 0:
            result["grads"] = {name: distributed.full_tensor(p.grad).clone()
                               for name, p in method.named_parameters() if p.grad is not None}
            result["grad_norm"] = distributed.full_tensor(
                torch.nn.utils.clip_grad_norm_(params, 0.05)).item()  # it clips
        optimizer.step()
        method.on_step_end(0.5)
    result["state"] = {k: distributed.full_tensor(v) for k, v in method.state_dict().items()}
    return result


def _worker(rank, out_dir, runs):
    """The step of `two_steps` on 2 processes; then a fresh run of each engine stopped at
    step 2, and each engine resuming a 1-process run's step-2 checkpoint to the end (each
    run joins a group of its own, which `train` leaves when it ends)."""
    join(rank, os.path.join(out_dir, "group-steps"))
    try:
        result = two_steps(distributed.World(rank, 2, rank))
    finally:
        torch.distributed.destroy_process_group()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    for engine, run, resume in runs:
        join(rank, f"{run}.group")
        cfg = tiny(**{"train.steps": STEPS, "train.parallel": engine})
        train(cfg, run, resume=resume, stop_at=None if resume else 2, show_progress=False)


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    """One start of 2 processes for the whole file: starting them and importing FSDP2 takes
    most of its time. Returns the folder of their results and runs."""
    out = tmp_path_factory.mktemp("fsdp")
    with pytest.MonkeyPatch.context() as patch:  # the session's data cache (conftest.py)
        patch.setenv("JEPALAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        train(tiny(**{"train.steps": STEPS}), out / "one", stop_at=2, show_progress=False)
        for engine in ("fsdp", "ddp"):
            shutil.copytree(out / "one", out / f"one-{engine}")
        runs = [(engine, str(out / f"{start}-{engine}"), start == "one")
                for start in ("two", "one") for engine in ("fsdp", "ddp")]
        mp.start_processes(_worker, args=(str(out), runs),
                           nprocs=2, start_method="spawn")
    return out


def test_fsdp_two_processes_match_one_process_with_twice_the_batch(spawned):
    one = two_steps(distributed.World())
    for rank in (0, 1):
        two = torch.load(spawned / f"rank{rank}.pt")
        assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
        assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-5)
        assert_close(two["grads"], one["grads"], atol=1e-7)
        assert_close(two["state"], one["state"], atol=1e-5)  # AdamW amplifies the last bits
    teacher, student = (one["state"]["target_encoder.norm.bias"],
                        one["state"]["context_encoder.norm.bias"])
    assert 0 < (teacher - student).abs().max() < student.abs().max()  # the EMA moved it


def metrics(run):
    return {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").open())}


def assert_close_runs(a, b, steps):
    ma, mb = metrics(a), metrics(b)
    for step in steps:
        for key in ("loss", "grad_norm", "rankme"):
            if key in ma[step]:
                assert mb[step][key] == pytest.approx(ma[step][key], rel=1e-5), (step, key)
    fa, fb = checkpoint.latest(a), checkpoint.latest(b)
    assert fa.name == fb.name == f"checkpoint-{STEPS:07d}"
    for name in ("model.safetensors", "optimizer.safetensors", "encoder.safetensors"):
        assert_close(load_file(fb / name), load_file(fa / name), atol=1e-5)


def test_fsdp_checkpoints_resume_with_another_number_of_processes(spawned):
    """2 -> 1: FSDP2 and DDP runs saved at step 2 by 2 processes and resumed by one continue
    alike (DDP's checkpoints are whole tensors already); 1 -> 2: a 1-process checkpoint
    resumed with FSDP2 continues as with DDP. Losses, gradient norms, RankMe (the monitor
    of a sharded method), and the final weights and AdamW moments."""
    state = json.loads((checkpoint.latest(spawned / "two-fsdp") / "state.json").read_text())
    assert state["step"] == 2 and state["world_size"] == 2
    for engine in ("fsdp", "ddp"):
        train(tiny(**{"train.steps": STEPS}), spawned / f"two-{engine}", resume=True,
              show_progress=False)
    assert_close_runs(spawned / "two-ddp", spawned / "two-fsdp", range(STEPS + 1))
    assert_close_runs(spawned / "one-ddp", spawned / "one-fsdp", range(3, STEPS + 1))


def test_train_parallel_is_checked():
    with pytest.raises(ConfigError, match="train.parallel: 'zero' is not valid; choose one of "
                                          "ddp, fsdp"):
        tiny(**{"train.parallel": "zero"})
