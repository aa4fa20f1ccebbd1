"""Global-batch statistics under torch.distributed: two gloo processes holding B samples each
give what one process gives on all 2B samples.

Loss values: every process returns the loss of the global batch. Gradients: DDP averages
parameter gradients over the W processes, so each process's gradient for its own rows must
be W times the one-process gradient of those rows (a parameter's gradient sums its rows').

One 2-process group, spawned once for the module (spawning costs seconds), computes every
piece; each test compares one piece with one process on the concatenated batch.
"""
import os

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from jepalab import losses
from jepalab.distributed import world_mean
from jepalab.methods import mocov2
from jepalab.methods.dino import update_center
from jepalab.methods.mocov3 import contrast
from jepalab.nn.heads import mlp, world_batchnorm
from jepalab.nn.vit import ViTSpec
from jepalab.world.vjepa_ac import token_statistics

pytestmark = pytest.mark.xdist_group("distributed-losses")  # module fixtures: built once

WORLD, B = 2, 6
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def _batch() -> dict:
    """The global batch (W * B samples), the same in the parent and in the workers."""
    g = torch.Generator().manual_seed(0)
    names = {"z1": 5, "z2": 5, "a": 3, "b": 3, "q": 4, "k": 4, "x": 6, "x2": 6}
    batch = {name: torch.randn(WORLD * B, dim, generator=g) for name, dim in names.items()}
    batch["teacher"] = torch.randn(2, WORLD * B, 7, generator=g)  # DINO: (views, N, K)
    return batch


def _shard(batch: dict, rank: int) -> dict:
    return {name: x.chunk(WORLD, dim=1 if name == "teacher" else 0)[rank]
            for name, x in batch.items()}


def _vicreg(sim, std, cov):
    return lambda t: losses.vicreg(t["z1"], t["z2"], sim_coeff=sim, std_coeff=std,
                                   cov_coeff=cov)


# name -> (loss of the batch, the inputs it is differentiated for)
LOSSES = {
    "vicreg": (_vicreg(25.0, 25.0, 1.0), ("z1", "z2")),
    "vicreg_invariance": (_vicreg(1.0, 0.0, 0.0), ("z1", "z2")),
    "vicreg_variance": (_vicreg(0.0, 1.0, 0.0), ("z1", "z2")),
    "vicreg_covariance": (_vicreg(0.0, 0.0, 1.0), ("z1", "z2")),
    "barlow_twins": (lambda t: losses.barlow_twins(t["z1"], t["z2"]), ("z1", "z2")),
    "imax": (lambda t: losses.imax(t["a"], t["b"]), ("a", "b")),
    "ntxent": (lambda t: losses.ntxent(t["z1"], t["z2"]), ("z1", "z2")),
    "info_nce_in_batch": (lambda t: losses.info_nce(t["q"], t["k"], temperature=0.5),
                          ("q", "k")),
    "mocov3_contrast": (lambda t: contrast(t["q"], t["k"], 0.2), ("q",)),  # keys: no grad
}


def _compute(batch: dict) -> dict:
    """Every piece the tests compare, on this process's batch."""
    results = {}
    for name, (loss, wrt) in LOSSES.items():
        inputs = {key: x.clone().requires_grad_(key in wrt) for key, x in batch.items()}
        value = loss(inputs)
        value.backward()
        results[name] = {"value": value.detach(), **{key: inputs[key].grad for key in wrt}}

    center = torch.zeros(7)
    update_center(center, batch["teacher"], momentum=0.9)
    results["dino_center"] = center

    mean, std = token_statistics(batch["x"].view(-1, 2, 3))  # frames of 2 tokens of width 3
    results["token_statistics"] = {"mean": mean, "std": std}

    torch.manual_seed(0)  # the same initial queue everywhere
    method = mocov2.Method(mocov2.Config(queue_size=32, projector_dim=4),
                           ViTSpec("vit_nano", 16, 4), num_classes=10)
    method._keys = F.normalize(batch["k"], dim=1)  # what forward leaves for on_step_end
    method.on_step_end(0.1)
    results["mocov2_queue"] = {"keys": method.queue.keys, "pointer": method.queue.pointer}

    torch.manual_seed(0)
    projector = world_batchnorm(mlp(6, 8, 4))
    x = batch["x"].clone().requires_grad_(True)
    out = projector(x)
    out.square().mean().backward()  # this process's mean: DDP averages it over processes
    norm = projector[1]
    results["projector"] = {
        "out": out.detach(), "x": x.grad, "running_mean": norm.running_mean,
        "running_var": norm.running_var,
        **{name: p.grad for name, p in projector.named_parameters()}}

    # a training step: the parameter gradients averaged over processes, as DDP averages
    # them (DDP itself gives the same; constructing it imports torch._dynamo, seconds)
    torch.manual_seed(0)
    model = world_batchnorm(mlp(6, 8, 5))
    z1, z2 = model(torch.cat([batch["x"], batch["x2"]])).chunk(2)  # two views, one call
    value = losses.vicreg(z1, z2) + losses.barlow_twins(z1, z2) + losses.ntxent(z1, z2)
    value.backward()
    results["step"] = {"value": value.detach(),
                       **{name: world_mean(p.grad) for name, p in model.named_parameters()}}
    return results


def _worker(rank: int, group: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=group, rank=rank, world_size=WORLD)
    try:
        results = _compute(_shard(_batch(), rank))
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Each rank's results. Module-scoped, so it names its own meeting file (as the
    function-scoped `group` fixture does) for the one group that serves every test."""
    out = tmp_path_factory.mktemp("ranks")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")
        mp.start_processes(_worker, args=((out / "group").as_uri(), str(out)), nprocs=WORLD,
                           start_method="spawn")
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def single() -> dict:
    return _compute(_batch())


@pytest.mark.parametrize("name", LOSSES)
def test_loss_and_gradients_in_two_processes_match_one_process(name, ranks, single):
    for rank in ranks:
        torch.testing.assert_close(rank[name]["value"], single[name]["value"], **TOLERANCE)
    for key in LOSSES[name][1]:
        together = torch.cat([rank[name][key] for rank in ranks])
        torch.testing.assert_close(together, WORLD * single[name][key], **TOLERANCE,
                                   msg=lambda m, key=key: f"gradient of {key}: {m}")


def test_dino_centre_is_the_mean_over_the_global_batch(ranks, single):
    for rank in ranks:
        torch.testing.assert_close(rank["dino_center"], single["dino_center"], **TOLERANCE)


def test_standardize_measures_the_tokens_of_every_process(ranks, single):
    """V-JEPA 2-AC / DINO-WM's `method.standardize`: every rank gets the statistics of the
    global first batch, so all standardise alike."""
    for rank in ranks:
        for key in ("mean", "std"):
            torch.testing.assert_close(rank["token_statistics"][key],
                                       single["token_statistics"][key], **TOLERANCE)


def test_mocov2_enqueues_every_process_keys_in_rank_order(ranks, single):
    assert int(single["mocov2_queue"]["pointer"]) == WORLD * B
    for rank in ranks:
        torch.testing.assert_close(rank["mocov2_queue"]["keys"], single["mocov2_queue"]["keys"],
                                   **TOLERANCE)
        assert int(rank["mocov2_queue"]["pointer"]) == WORLD * B


def test_a_step_through_a_batchnorm_projector_gives_the_one_process_gradients(ranks, single):
    mine = single["step"]
    for rank in ranks:
        torch.testing.assert_close(rank["step"]["value"], mine["value"], **TOLERANCE)
        for key in ("0.weight", "1.weight", "1.bias", "3.weight", "3.bias"):
            torch.testing.assert_close(rank["step"][key], mine[key], **TOLERANCE,
                                       msg=lambda m, key=key: f"{key}: {m}")


def test_projector_batchnorm_uses_global_batch_statistics(ranks, single):
    mine, theirs = single["projector"], [rank["projector"] for rank in ranks]
    torch.testing.assert_close(torch.cat([r["out"] for r in theirs]), mine["out"], **TOLERANCE)
    torch.testing.assert_close(torch.cat([r["x"] for r in theirs]), WORLD * mine["x"],
                               **TOLERANCE)
    for key in ("running_mean", "running_var"):
        for rank in theirs:
            torch.testing.assert_close(rank[key], mine[key], **TOLERANCE)
    for key in ("0.weight", "1.weight", "1.bias", "3.weight", "3.bias"):
        # DDP's average over processes is the one-process parameter gradient
        torch.testing.assert_close(sum(r[key] for r in theirs) / WORLD, mine[key],
                                   **TOLERANCE, msg=lambda m, key=key: f"{key}: {m}")
