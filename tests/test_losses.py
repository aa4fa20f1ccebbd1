import math
import os
import sys

import pytest
import torch
import torch.multiprocessing as mp

from jepalab import losses


def test_jepa_latent_smooth_l1_by_hand():
    prediction = torch.tensor([[0.0, 2.0], [0.5, -0.5]])
    target = torch.zeros(2, 2)
    # Huber, beta 1: |d| < 1 -> d^2 / 2, else |d| - 1/2: 0, 1.5, 0.125, 0.125 -> mean 0.4375
    assert losses.jepa_latent(prediction, target).item() == pytest.approx(0.4375)


def test_jepa_latent_l2_by_hand():
    prediction = torch.tensor([[1.0, 3.0], [0.5, -0.5]])
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    # squared differences 0, 4, 0.25, 0.25 -> mean 1.125
    assert losses.jepa_latent(prediction, target, kind="l2").item() == pytest.approx(1.125)


def test_jepa_latent_gradient_reaches_prediction_only_when_target_detached():
    prediction = torch.randn(3, 4, 5, requires_grad=True)
    target = torch.randn(3, 4, 5)
    losses.jepa_latent(prediction, target).backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0


def test_jepa_latent_rejects_bad_input():
    with pytest.raises(ValueError, match="shapes differ"):
        losses.jepa_latent(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="kind must be one of"):
        losses.jepa_latent(torch.zeros(2, 3), torch.zeros(2, 3), kind="l3")


# ----- the lineage's objectives, each against its equation on a case done by hand -----


def test_imax_by_hand():
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 5.0])
    # a+b = 2,4,8: biased var 56/9; a-b = 0,0,-2: var 8/9; I = 0.5 log 7
    assert losses.imax(a, b, eps=0).item() == pytest.approx(-0.5 * math.log(7), rel=1e-6)


def test_imax_rewards_agreement_and_needs_two_samples():
    signal = torch.randn(256, 1)
    agree = losses.imax(signal + 0.1 * torch.randn(256, 1), signal + 0.1 * torch.randn(256, 1))
    noise = losses.imax(torch.randn(256, 1), torch.randn(256, 1))
    assert agree < noise - 1.0
    with pytest.raises(ValueError, match="at least 2 samples"):
        losses.imax(torch.zeros(1), torch.zeros(1))


def test_info_nce_in_batch_by_hand():
    query, key = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.eye(2)
    # logits / 0.5 = [[4, 0], [0, 2]], positives on the diagonal
    expected = (math.log(1 + math.exp(-4)) + math.log(1 + math.exp(-2))) / 2
    assert losses.info_nce(query, key, temperature=0.5).item() == pytest.approx(expected)


def test_info_nce_with_a_queue_by_hand():
    query, key = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    # candidates [positive, queue...]: logits 1, 0, -1 -> -log(e / (e + 1 + 1/e))
    expected = -math.log(math.e / (math.e + 1 + 1 / math.e))
    assert losses.info_nce(query, key, queue, temperature=1.0).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="negatives must be"):
        losses.info_nce(query, key, torch.zeros(3, 5))


def test_ntxent_by_hand():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [3.0, 0.0]])  # normalised: (1,0) and (1,0)
    e2 = math.exp(2)  # cosine 1 at temperature 0.5
    expected = (-math.log(e2 / (1 + 2 * e2))      # anchor z1[0]: positive z2[0]
                + math.log(3)                     # anchor z1[1]: all similarities 0
                - math.log(e2 / (2 * e2 + 1))     # anchor z2[0]: positive z1[0]
                + math.log(2 * e2 + 1)) / 4       # anchor z2[1]: positive z1[1] at 0
    assert losses.ntxent(z1, z2, temperature=0.5).item() == pytest.approx(expected, rel=1e-6)


def test_ntxent_temperature_sharpens():
    z1, z2 = torch.randn(16, 8), torch.randn(16, 8)
    aligned = losses.ntxent(z1, z1 + 0.01 * torch.randn(16, 8), temperature=0.1)
    assert aligned < losses.ntxent(z1, z2, temperature=0.1)
    assert aligned < losses.ntxent(z1, z1 + 0.01 * torch.randn(16, 8), temperature=1.0)


def test_barlow_twins_by_hand():
    z1 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # standardised columns: (-1, 1), (-1, 1)
    z2 = torch.tensor([[1.0, 5.0], [2.0, 3.0]])  # standardised columns: (-1, 1), (1, -1)
    # C = [[1, -1], [1, -1]]: on-diagonal (1-1)^2 + (-1-1)^2 = 4, off-diagonal 1 + 1 = 2
    assert losses.barlow_twins(z1, z2, eps=0).item() == pytest.approx(4 + 5e-3 * 2)


def test_vicreg_by_hand():
    z1 = torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    z2 = torch.zeros(2, 2)
    # invariance: squared errors 0,0,4,4 -> 2
    # variance: z1 std sqrt(2) -> 0; z2 std sqrt(1e-4) = 0.01 -> 0.99 per dim; (0 + 0.99) / 2
    # covariance: z1 cov [[2, 2], [2, 2]] -> off-diagonal 2^2 + 2^2 = 8, / D = 4; z2: 0
    expected = 25 * 2 + 25 * 0.99 / 2 + 1 * 4
    assert losses.vicreg(z1, z2).item() == pytest.approx(expected, rel=1e-5)


def test_vicreg_terms_can_be_switched_off():
    z = torch.randn(32, 8)
    assert losses.vicreg(z, z, std_coeff=0, cov_coeff=0).item() == 0.0


def test_byol_by_hand():
    value = losses.byol(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 2.0]]))
    assert value.item() == pytest.approx(2 - math.sqrt(2))


def test_dino_by_hand():
    ts, tt = 0.1, 0.04
    log3 = math.log(3)
    teacher = torch.tensor([[[0.0, 0.0]], [[tt * log3, 0.0]]])          # -> (1/2, 1/2), (3/4, 1/4)
    student = torch.tensor([[[0.0, 0.0]], [[ts * log3, 0.0]], [[0.0, ts * log3]]])
    # student probabilities: (1/2, 1/2), (3/4, 1/4), (1/4, 3/4); pairs with s != t:
    log, q = math.log, 0.25
    pairs = [-(0.5 * log(0.75) + 0.5 * log(q)),            # t=0, s=1
             -(0.5 * log(q) + 0.5 * log(0.75)),          # t=0, s=2
             log(2),                                   # t=1, s=0
             -(0.75 * log(q) + 0.25 * log(0.75))]          # t=1, s=2
    value = losses.dino(student, teacher, torch.zeros(2), student_temp=ts, teacher_temp=tt)
    assert value.item() == pytest.approx(sum(pairs) / 4, rel=1e-5)


def test_dino_centring_subtracts_before_sharpening():
    teacher = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])
    student = torch.zeros(2, 1, 2)  # uniform student: loss is the cross-entropy to uniform
    # centring the teacher by its own logits makes its targets uniform too; a constant shift
    # of the centre changes nothing
    centred = losses.dino(student, teacher, torch.tensor([1.0, 0.0]))
    shifted = losses.dino(student, teacher, torch.tensor([6.0, 5.0]))
    assert centred.item() == pytest.approx(math.log(2)) and shifted.item() == pytest.approx(
        math.log(2))
    assert losses.dino(student, teacher, torch.zeros(2)).item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="Vs, N, K"):
        losses.dino(torch.zeros(2, 3), teacher, torch.zeros(2))


def test_dino_teacher_gets_no_gradient():
    teacher = torch.randn(2, 4, 8, requires_grad=True)
    student = torch.randn(3, 4, 8, requires_grad=True)
    losses.dino(student, teacher, torch.zeros(8)).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0


def test_mae_pixel_by_hand():
    prediction = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    target = torch.tensor([[[1.0, 3.0], [2.0, 2.0]]])
    mask = torch.tensor([[1, 0]])  # only the first patch was removed
    # normalised first patch: (t - 2) / sqrt(2) = (-0.707, 0.707): MSE to 0 is 0.5
    assert losses.mae_pixel(prediction, target, mask).item() == pytest.approx(0.5, rel=1e-5)
    # unnormalised: (1 + 9) / 2
    assert losses.mae_pixel(prediction, target, mask, norm_pix=False).item() == pytest.approx(5)
    with pytest.raises(ValueError, match="mask must be"):
        losses.mae_pixel(prediction, target, torch.ones(1, 3))


def test_sigreg_by_hand():
    z = torch.tensor([[1.0], [-1.0]])  # N = 2, D = 1, one direction: x = (1, -1)
    # knots t = 0, 1, 2; trapezoid weights dt, 2dt, dt with dt = 1; sin mean is 0 by symmetry
    expected = 2 * sum(w * math.exp(-t * t / 2) * (math.cos(t) - math.exp(-t * t / 2)) ** 2
                       for t, w in ((0, 1), (1, 2), (2, 1)))
    value = losses.sigreg(z, knots=3, t_max=2.0, directions=torch.ones(1, 1))
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_sigreg_is_small_for_gaussians_and_large_otherwise():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(2048, 16, generator=generator)
    gaussian = losses.sigreg(z, generator=torch.Generator().manual_seed(1))
    assert gaussian < 2
    assert losses.sigreg(3 * z, generator=torch.Generator().manual_seed(1)) > 50 * gaussian
    collapsed = torch.ones(2048, 16) + 0.01 * z
    assert losses.sigreg(collapsed, generator=torch.Generator().manual_seed(1)) > 50 * gaussian


def _sigreg_as_written(z, directions, knots=17, t_max=3.0):
    """SIGReg straight from its equation, autograd through the whole (N, M, knots) tensor."""
    t = torch.linspace(0, t_max, knots, dtype=z.dtype)
    weights = torch.full((knots,), 2 * t_max / (knots - 1), dtype=z.dtype)
    weights[[0, -1]] /= 2
    x = (z @ directions).unsqueeze(-1) * t
    error = (x.cos().mean(-3) - torch.exp(-t * t / 2)) ** 2 + x.sin().mean(-3) ** 2
    return ((error * weights * torch.exp(-t * t / 2)).sum(-1) * z.shape[-2]).mean()


def test_sigreg_value_and_gradient_match_the_equation():
    z = torch.randn(3, 50, 8, generator=torch.Generator().manual_seed(0)) * 1.5 + 0.3
    directions = losses.sigreg_directions(8, 64, generator=torch.Generator().manual_seed(1))
    ours = z.clone().requires_grad_()
    value = losses.sigreg(ours, directions=directions)
    value.backward()
    exact = z.double().requires_grad_()
    expected = _sigreg_as_written(exact, directions.double())
    expected.backward()
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(ours.grad.double(), exact.grad, rtol=1e-4, atol=1e-6)


def test_sigreg_directions_from_the_generator_are_reproducible():
    z = torch.randn(64, 8)
    first = losses.sigreg(z, num_slices=32, generator=torch.Generator().manual_seed(3))
    again = losses.sigreg(z, num_slices=32, generator=torch.Generator().manual_seed(3))
    assert first.item() == again.item()
    with pytest.raises(ValueError, match="directions must be"):
        losses.sigreg(z, directions=torch.ones(4, 2))


def _sigreg_worker(rank, group, z, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=group, rank=rank, world_size=2)
    try:
        shard = z.chunk(2)[rank].clone().requires_grad_(True)
        value = losses.sigreg(shard, num_slices=64, generator=torch.Generator().manual_seed(rank))
        value.backward()
        torch.save({"value": value.detach(), "grad": shard.grad,
                    "rpc_imported": "torch.distributed.nn" in sys.modules},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_sigreg_gives_the_same_value_and_gradient_in_one_and_two_processes(tmp_path, group):
    z = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    mp.start_processes(_sigreg_worker, args=(group, z, str(tmp_path)), nprocs=2,
                       start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    # the ranks seeded their generators differently: rank 0's directions must win
    whole = z.clone().requires_grad_(True)
    single = losses.sigreg(whole, num_slices=64, generator=torch.Generator().manual_seed(0))
    single.backward()
    for rank in ranks:
        assert rank["value"].item() == pytest.approx(single.item(), rel=1e-5)
        # torch.distributed.nn imports RPC's RemoteModule, after which gloo processes
        # sometimes aborted at exit (distributed.py); our collectives must not import it
        assert not rank["rpc_imported"]
    # DDP averages gradients over ranks; the per-rank loss is the global one, so the shards'
    # gradients, put together, are world_size times the single-process gradient
    together = torch.cat([ranks[0]["grad"], ranks[1]["grad"]])
    assert torch.allclose(together, 2 * whole.grad, rtol=1e-4, atol=1e-6)


def test_lejepa_combines_prediction_and_sigreg():
    embeddings = torch.randn(4, 32, 8, generator=torch.Generator().manual_seed(0))
    loss, logs = losses.lejepa(embeddings, lam=0.25, num_slices=16,
                               generator=torch.Generator().manual_seed(5))
    center = embeddings[:2].mean(0)
    prediction = sum(((center - v) ** 2).mean() for v in embeddings) / 4
    directions = losses.sigreg_directions(8, 16, generator=torch.Generator().manual_seed(5))
    regulariser = sum(losses.sigreg(v, directions=directions) for v in embeddings) / 4
    assert logs["prediction"] == pytest.approx(prediction.item(), rel=1e-5)
    assert logs["sigreg"] == pytest.approx(regulariser.item(), rel=1e-5)
    assert loss.item() == pytest.approx(0.75 * prediction.item() + 0.25 * regulariser.item(),
                                        rel=1e-5)


def test_jepa_latent_l1_is_the_mean_absolute_error_by_hand():
    prediction = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    target = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    # |1| + |-2| + |-0.5| + |2| = 5.5 over 4 elements
    assert losses.jepa_latent(prediction, target, kind="l1").item() == pytest.approx(5.5 / 4)
