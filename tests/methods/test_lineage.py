"""The lineage's methods: one training step each, and the mechanics each paper specifies
(queues, centring, temperature and momentum schedules, masks, views)."""
import math

import pytest
import torch

from jepalab.methods import method_module
from jepalab.nn.vit import VisionTransformer, ViTSpec

IMAGE_METHODS = ["simclr", "mocov2", "mocov3", "byol", "dino", "mae", "barlow", "vicreg",
                 "lejepa", "ijepa-sigreg"]
SPEC = ViTSpec("vit_nano", 32, 4)


def build(name, **overrides):
    torch.manual_seed(0)
    module = method_module(name)
    return module.Method(module.Config(**overrides), SPEC, num_classes=10)


def batch(n=8):
    generator = torch.Generator().manual_seed(1)
    return {"images": torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                                    generator=generator),
            "labels": torch.zeros(n, dtype=torch.long)}


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_one_step_trains_the_encoder_and_leaves_teachers_to_ema(name, host_reads):
    method = build(name)
    with host_reads() as counter:  # the step and its logs stay on the device (no GPU stall)
        out = method(batch())
        out.loss.backward()
        method.on_step_end(0.5)  # EMA, queues and centres update without error
    assert counter.reads == {}
    assert all(isinstance(value, (float, torch.Tensor)) for value in out.logs.values())
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    encoder = method.eval_encoder()
    assert isinstance(encoder, VisionTransformer)
    trained = [m for n, m in method.named_children() if n in ("backbone", "encoder")]
    assert trained, "the method names its trained backbone `backbone` or `encoder`"
    assert trained[0].blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    for child, module in method.named_children():
        if child.startswith(("target_", "teacher_", "key_", "momentum_")):
            assert all(p.grad is None and not p.requires_grad for p in module.parameters())
    assert torch.isfinite(method(batch()).loss)


@pytest.mark.parametrize("name", IMAGE_METHODS + ["ijepa", "cpc"])
def test_a_bf16_autocast_step_close_to_fp32_with_an_fp32_loss(name):
    """bf16 autocast (the bench's precision on CPUs with native bf16): the loss is computed
    in fp32 and lands near the fp32 step's (same weights, same draws)."""
    method = build(name)
    torch.manual_seed(2)
    exact = method(batch()).loss
    torch.manual_seed(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method(batch())
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert out.loss.item() == pytest.approx(exact.item(), rel=0.05, abs=0.05)
    out.loss.backward()
    trained = next(m for n, m in method.named_children()
                   if n in ("backbone", "encoder", "context_encoder"))
    assert trained.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_mocov2_queue_is_a_ring_buffer():
    from jepalab.methods.mocov2 import Queue

    queue = Queue(size=5, dim=2)
    keys = torch.arange(8.0).view(4, 2)
    queue.push(keys[:3])
    assert torch.equal(queue.keys[:3], keys[:3]) and int(queue.pointer) == 3
    queue.push(keys)  # 4 more: positions 3, 4, then wrap to 0, 1
    assert torch.equal(queue.keys[[3, 4, 0, 1]], keys) and int(queue.pointer) == 2
    assert torch.equal(queue.keys[2], keys[2])  # the oldest survivor
    queue.push(torch.ones(7, 2))  # more keys than the queue holds: the last 5 stay
    assert torch.equal(queue.keys, torch.ones(5, 2))


def test_mocov2_contrasts_against_the_queue_and_then_enqueues_the_keys():
    method = build("mocov2", queue_size=16)
    before = method.queue.keys.clone()
    method(batch(8)).loss.backward()
    assert torch.equal(method.queue.keys, before)  # unchanged until the step is over
    method.on_step_end(0.1)
    changed = (method.queue.keys != before).any(1)
    assert changed[:8].all() and not changed[8:].any() and int(method.queue.pointer) == 8
    assert torch.allclose(method.queue.keys[:8].norm(dim=1), torch.ones(8))


def test_mocov3_freezes_the_patch_projection_and_scales_by_two_tau():
    method = build("mocov3")
    assert not method.backbone.patch_embed.proj.weight.requires_grad
    from jepalab import losses
    from jepalab.methods.mocov3 import contrast

    q, k = torch.randn(6, 4), torch.randn(6, 4)
    expected = 2 * 0.2 * losses.info_nce(torch.nn.functional.normalize(q, dim=1),
                                         torch.nn.functional.normalize(k, dim=1),
                                         temperature=0.2)
    assert contrast(q, k, 0.2).item() == pytest.approx(expected.item())


def test_byol_momentum_follows_a_cosine_from_0996_to_1():
    from jepalab.nn.ema import ema_momentum

    assert ema_momentum(0.0, 0.996, 1.0, cosine=True) == pytest.approx(0.996)
    assert ema_momentum(0.5, 0.996, 1.0, cosine=True) == pytest.approx(0.998)
    assert ema_momentum(1.0, 0.996, 1.0, cosine=True) == pytest.approx(1.0)
    quarter = 1 - 0.004 * (math.cos(math.pi / 4) + 1) / 2
    assert ema_momentum(0.25, 0.996, 1.0, cosine=True) == pytest.approx(quarter)


def test_byol_ablation_has_no_predictor_and_copies_the_online_weights():
    method = build("byol", predictor=False, ema_start=0.0, ema_end=0.0)
    assert isinstance(method.predictor, torch.nn.Identity)
    with torch.no_grad():
        method.backbone.norm.weight.add_(1.0)
    method.on_step_end(0.3)
    assert torch.equal(method.target_backbone.norm.weight, method.backbone.norm.weight)


def test_dino_center_update_and_teacher_temperature_warmup():
    from jepalab.methods.dino import update_center

    center = torch.tensor([1.0, 0.0])
    teacher = torch.tensor([[[2.0, 4.0], [4.0, 0.0]], [[0.0, 2.0], [2.0, 2.0]]])  # mean (2, 2)
    update_center(center, teacher, momentum=0.9)
    assert torch.allclose(center, torch.tensor([0.9 + 0.2, 0.2]))

    method = build("dino", local_crops=2)
    assert method.teacher_temperature() == pytest.approx(0.04)
    method.on_step_end(0.15)  # half of the 30% warm-up
    assert method.teacher_temperature() == pytest.approx(0.055)
    method.on_step_end(0.6)
    assert method.teacher_temperature() == pytest.approx(0.07)
    assert method.eval_encoder() is method.teacher_backbone


def test_dino_students_see_local_crops_and_the_teacher_only_globals(monkeypatch):
    method = build("dino", local_crops=3)
    seen = {}
    from jepalab import losses

    original = losses.dino

    def spy(student, teacher, center, **kwargs):
        seen["shapes"] = (student.shape, teacher.shape)
        return original(student, teacher, center, **kwargs)

    monkeypatch.setattr(losses, "dino", spy)
    method(batch(4))
    assert seen["shapes"] == (torch.Size([5, 4, 1024]), torch.Size([2, 4, 1024]))


def test_mae_patchify_and_loss_on_masked_patches_only(monkeypatch):
    from jepalab import losses
    from jepalab.methods.mae import patchify

    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    patches = patchify(images, 4)
    assert patches.shape == (2, 4, 48)
    assert torch.equal(patches[0, 1].view(4, 4, 3)[:, :, 0], images[0, 0, :4, 4:])
    method = build("mae")
    seen = {}
    original = losses.mae_pixel

    def spy(prediction, target, mask, **kwargs):
        seen["mask"] = mask
        return original(prediction, target, mask, **kwargs)

    monkeypatch.setattr(losses, "mae_pixel", spy)
    method(batch(4))
    assert (seen["mask"].sum(1) == 48).all()  # 75% of 64 patches removed per image


def test_lejepa_without_sigreg_is_pure_prediction():
    method = build("lejepa", lam=0.0, local_views=2)
    out = method(batch(8))
    assert out.loss.item() == pytest.approx(float(out.logs["prediction"]), rel=1e-5)
    assert out.logs["sigreg"] > 0


def test_configs_refuse_impossible_values():
    for name, bad in [("simclr", {"temperature": 0.0}), ("byol", {"ema_start": 1.5}),
                      ("vicreg", {"std_coeff": -1.0}), ("lejepa", {"lam": 2.0}),
                      ("mae", {"mask_ratio": 1.0}), ("dino", {"student_temp": 0.0}),
                      ("mocov2", {"queue_size": 0}), ("ijepa-sigreg", {"loss": "l3"})]:
        with pytest.raises(ValueError, match="method"):
            method_module(name).Config(**bad).validate()


def _contrast_worker(rank, group, q, k, out_dir):
    import os

    import torch.distributed as dist

    from jepalab.methods.mocov3 import contrast

    dist.init_process_group("gloo", init_method=group, rank=rank, world_size=2)
    try:
        value = contrast(q.chunk(2)[rank], k.chunk(2)[rank], 0.2)
        torch.save(value, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_mocov3_negatives_come_from_every_process(tmp_path, group):
    import torch.multiprocessing as mp

    from jepalab.methods.mocov3 import contrast

    q, k = torch.randn(8, 4), torch.randn(8, 4)
    mp.start_processes(_contrast_worker, args=(group, q, k, str(tmp_path)), nprocs=2,
                       start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    # each rank's queries see all 8 keys, its positives at its offset: the mean over ranks
    # is the one-process loss on the whole batch
    assert ((ranks[0] + ranks[1]) / 2).item() == pytest.approx(contrast(q, k, 0.2).item(),
                                                               rel=1e-5)

