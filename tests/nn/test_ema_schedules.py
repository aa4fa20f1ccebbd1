import math

import pytest
import torch

from jepalab import schedules
from jepalab.config import OptimConfig
from jepalab.nn.ema import ema_momentum, ema_update


def test_ema_update_by_hand():
    target, online = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    target.weight.data.fill_(1.0)
    online.weight.data.fill_(3.0)
    ema_update(target, online, momentum=0.75)  # 0.75 * 1 + 0.25 * 3
    assert target.weight.item() == pytest.approx(1.5)
    assert online.weight.item() == 3.0


def test_momentum_rises_linearly_and_clamps():
    assert ema_momentum(0.0, 0.996, 1.0) == pytest.approx(0.996)
    assert ema_momentum(0.5, 0.996, 1.0) == pytest.approx(0.998)
    assert ema_momentum(1.5, 0.996, 1.0) == pytest.approx(1.0)


def test_warmup_then_cosine():
    assert schedules.warmup_cosine(0, 100, 10, 1.0, 0.0) == pytest.approx(0.1)
    assert schedules.warmup_cosine(9, 100, 10, 1.0, 0.0) == pytest.approx(1.0)
    assert schedules.warmup_cosine(10, 100, 10, 1.0, 0.0) == pytest.approx(1.0)
    middle = schedules.warmup_cosine(55, 100, 10, 1.0, 0.0)  # half way through the decay
    assert middle == pytest.approx(0.5)
    assert schedules.warmup_cosine(100, 100, 10, 1.0, 0.1) == pytest.approx(0.1)
    assert schedules.cosine(0.25, 0.04, 0.4) == pytest.approx(
        0.4 + (0.04 - 0.4) * 0.5 * (1 + math.cos(math.pi / 4)))


def test_apply_sets_groups_and_spares_exempt_ones():
    weights, bias = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.AdamW([{"params": [weights], "apply_decay": True},
                                   {"params": [bias], "weight_decay": 0.0, "apply_decay": False}])
    optim = OptimConfig(lr=0.5, warmup_steps=0, weight_decay=0.04, weight_decay_end=0.4)
    lr, wd = schedules.apply(optimizer, 0, 11, optim)
    assert (lr, wd) == (pytest.approx(0.5), pytest.approx(0.04))
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(0.04)
    assert optimizer.param_groups[1]["weight_decay"] == 0.0
    schedules.apply(optimizer, 10, 11, optim)
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(0.4)
