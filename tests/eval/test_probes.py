import json
import math
from dataclasses import asdict

import pytest
import torch

from jepalab.eval.attentive import ATTENTIVE_LRS, ATTENTIVE_WEIGHT_DECAYS, attentive_probe
from jepalab.eval.baselines import ProbeRow
from jepalab.eval.collapse import feature_std, rankme
from jepalab.eval.probes import knn, linear_probe, whiten


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


def flagged_tokens(n, seed, classes=4, tokens=16, dim=16):
    """Each sample: noise tokens, one flagged token holding its class's prototype and one
    unflagged decoy holding another class's. Mean pooling sums both prototypes (which one is
    the label is lost); attending to the flag recovers it."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 3
    prototypes[:, 0] = 0
    y = torch.randint(0, classes, (n,), generator=g)
    decoy = (y + torch.randint(1, classes, (n,), generator=g)) % classes
    x = torch.randn(n, tokens, dim, generator=g)
    where = torch.rand(n, tokens, generator=g).argsort(1)[:, :2]
    rows = torch.arange(n)
    x[rows, where[:, 0]] = prototypes[y] + torch.eye(dim)[0] * 6
    x[rows, where[:, 1]] = prototypes[decoy]
    return x, y


def test_attentive_probe_finds_the_token_that_mean_pooling_loses():
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = (flagged_tokens(n, s) for n, s in
                                                             ((1200, 0), (400, 1), (500, 2)))
    attentive = attentive_probe(train_x, train_y, val_x, val_y, test_x, test_y, num_classes=4,
                                epochs=8)
    pooled = linear_probe(train_x.mean(1), train_y, val_x.mean(1), val_y, test_x.mean(1),
                          test_y, num_classes=4)
    assert attentive.test_acc > 0.9, attentive
    assert pooled.test_acc < 0.75, pooled
    assert (attentive.lr, attentive.weight_decay) in {(a, b) for a in ATTENTIVE_LRS
                                                      for b in ATTENTIVE_WEIGHT_DECAYS}
    predictions = attentive.test_predictions  # the chosen setting's, for a confusion matrix
    assert predictions.shape == test_y.shape
    assert (predictions == test_y).double().mean().item() == pytest.approx(attentive.test_acc)


def test_whiten_maps_every_split_by_the_training_rows_statistics():
    g = torch.Generator().manual_seed(0)
    mixing = torch.tensor([[3.0, 0.0, 0.0, 0.0], [1.0, 0.2, 0.0, 0.0],
                           [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])  # no variance on dim 3
    train = (torch.randn(500, 7, 4, generator=g) @ mixing.T + 5.0)
    other = train[:3, :2]
    white_train, white_other = whiten(train, other, chunk=100)
    rows = white_train.reshape(-1, 4)
    assert white_train.shape == train.shape and white_other.shape == other.shape
    assert torch.isfinite(white_train).all()
    assert rows.mean(0).abs().max() < 1e-4
    variances = torch.linalg.eigvalsh(torch.cov(rows.T.double()))  # ascending
    assert torch.allclose(variances[1:], torch.ones(3, dtype=torch.float64), atol=1e-3)
    assert variances[0] < 1e-6                  # no variance: held at the floor, not blown up
    assert torch.allclose(white_other, white_train[:3, :2], atol=1e-5)  # train's map, not its own


def drowned_tokens(n, seed):
    """flagged_tokens shrunk tenfold beside four directions whose spread from one sample to
    the next is 30-100 times theirs and that carry nothing: a probe that normalises each
    token, not each direction, sees almost only them."""
    x, y = flagged_tokens(n, seed)
    g = torch.Generator().manual_seed(seed + 50)
    nuisance = torch.randn(n, 1, 4, generator=g) * 10 + torch.randn(n, x.shape[1], 4,
                                                                     generator=g) * 0.01
    return torch.cat([x * 0.1, nuisance], -1), y


def test_whitening_lets_the_attentive_probe_read_what_a_large_direction_drowns():
    splits = [t for n, s in ((1200, 0), (400, 1), (500, 2)) for t in drowned_tokens(n, s)]
    raw = attentive_probe(*splits, num_classes=4, epochs=8, whiten=False)
    whitened = attentive_probe(*splits, num_classes=4, epochs=8)
    assert raw.test_acc < 0.4, raw
    assert whitened.test_acc > 0.9, whitened


def test_a_probe_rows_attentive_predictions_stay_out_of_its_record():
    row = ProbeRow("vjepa", 0.5, 0.5, 3.0, attentive=0.5)
    assert row.attentive_predictions is None
    row.attentive_predictions = torch.tensor([0, 2, 1])
    assert "attentive_predictions" not in asdict(row)
    json.dumps(asdict(row))  # what probe.json holds
