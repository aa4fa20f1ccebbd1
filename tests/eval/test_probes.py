import math

import pytest
import torch

from jepalab.eval.collapse import feature_std, rankme
from jepalab.eval.probes import knn, linear_probe


def test_rankme_by_hand():
    # singular values (1, 1, 0, 0): p = (1/2, 1/2, 0, 0) -> exp(entropy) = 2
    z = torch.zeros(6, 4)
    z[0, 0], z[1, 1] = 1.0, 1.0
    assert rankme(z) == pytest.approx(2.0, rel=1e-4)
    assert rankme(torch.eye(8)) == pytest.approx(8.0, rel=1e-4)
    # singular values (3, 1): p = (3/4, 1/4) -> exp(-(3/4 ln 3/4 + 1/4 ln 1/4))
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert rankme(torch.diag(torch.tensor([3.0, 1.0]))) == pytest.approx(expected, rel=1e-4)


def test_rankme_sees_collapse():
    torch.manual_seed(0)
    healthy = torch.randn(512, 64)
    collapsed = torch.randn(512, 1) @ torch.randn(1, 64) + 1e-4 * torch.randn(512, 64)
    assert rankme(healthy) > 50 and rankme(collapsed) < 2
    to_a_point = torch.randn(1, 64) + 1e-4 * torch.randn(512, 64)
    assert feature_std(to_a_point) < 0.01 < feature_std(healthy)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        rankme(torch.zeros(3))


def _blobs(n, num_classes, dim, spread, seed):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(99)) * 3
    labels = torch.randint(0, num_classes, (n,), generator=g)
    return centres[labels] + spread * torch.randn(n, dim, generator=g), labels


def test_linear_probe_separates_separable_and_not_noise():
    train, val, test = (_blobs(600, 5, 16, 0.5, s) for s in (1, 2, 3))
    result = linear_probe(*train, *val, *test, num_classes=5)
    assert result.test_acc > 0.97
    noise_train = (torch.randn(600, 16), train[1])  # features carry no label information
    noise = linear_probe(*noise_train, torch.randn(600, 16), val[1], torch.randn(600, 16),
                         test[1], num_classes=5)
    assert noise.test_acc < 0.35


def test_knn_votes_by_neighbours():
    train_x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    train_y = torch.tensor([0, 0, 1, 1])
    test_x = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    assert knn(train_x, train_y, test_x, torch.tensor([0, 1]), num_classes=2, k=2) == 1.0
    assert knn(train_x, train_y, test_x, torch.tensor([1, 0]), num_classes=2, k=2) == 0.0
