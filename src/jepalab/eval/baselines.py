"""The baselines every probed number stands beside, measured with the same probes on the
same splits: a random-init encoder of the same architecture (mean and spread over seeds)
and a linear / kNN read-out of raw pixels; a trained encoder (the run's, or the supervised
ceiling that `jepalab.probe` trains) is probed by `probe_encoder`. Nothing here trains.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from jepalab.data.images import ImageData
from jepalab.data.streaming import select
from jepalab.eval.attentive import attentive_probe, extract_pooled_and_tokens
from jepalab.eval.collapse import rankme
from jepalab.eval.probes import extract_features, knn, linear_probe, pixel_features
from jepalab.nn.vit import VisionTransformer, ViTSpec

PROBE_TRAIN = 10000  # training images the probes fit on (the split's first ones)


@dataclass
class ProbeRow:
    name: str
    linear: float
    knn: float
    rankme: float
    linear_std: float = 0.0   # spread over seeds, where a row averages several
    knn_std: float = 0.0
    seeds: int = 1
    attentive: float | None = None  # the attentive probe on the tokens, where it was run
    attentive_std: float = 0.0

    def __post_init__(self):
        # Not a field, so asdict (probe.json) leaves it out: the attentive probe's test
        # predictions (N_test,), set by probe_encoder where it ran (never on an average).
        self.attentive_predictions: torch.Tensor | None = None


def first(images, n: int):
    """The first n images (or clips): a view of a tensor; of a streamed folder's `FileImages`,
    the first n files, still on disk (the probes decode them chunk by chunk)."""
    return select(images, slice(0, n))


def probe_features(name: str, train_x, val_x, test_x, data: ImageData, n: int) -> ProbeRow:
    train_y = data.train.labels[:n]
    num_classes = len(data.classes)
    linear = linear_probe(train_x, train_y, val_x, data.val.labels, test_x, data.test.labels,
                          num_classes=num_classes)
    top1 = knn(train_x, train_y, test_x, data.test.labels, num_classes=num_classes)
    return ProbeRow(name, linear.test_acc, top1, rankme(test_x))


def probe_encoder(name: str, encoder: torch.nn.Module, data: ImageData,
                  device: str | torch.device = "cpu", n: int = PROBE_TRAIN,
                  attentive: bool = False) -> ProbeRow:
    """Linear and kNN on the pooled features (and with `attentive`, the attentive probe on
    the patch tokens, its test predictions in `row.attentive_predictions`) of the first n
    training images (or clips), val and test."""
    splits = (first(data.train.images, n), data.val.images, data.test.images)
    if not attentive:
        return probe_features(name, *(extract_features(encoder, x, device=device)
                                      for x in splits), data, n)
    pooled, tokens = zip(*(extract_pooled_and_tokens(encoder, x, device=device) for x in splits))
    row = probe_features(name, *pooled, data, n)
    result = attentive_probe(tokens[0], data.train.labels[:n], tokens[1], data.val.labels,
                             tokens[2], data.test.labels, num_classes=len(data.classes))
    row.attentive, row.attentive_predictions = result.test_acc, result.test_predictions
    return row


def probe_pixels(data: ImageData, n: int = PROBE_TRAIN) -> ProbeRow:
    features = [pixel_features(images) for images in
                (first(data.train.images, n), data.val.images, data.test.images)]
    return probe_features("raw pixels", *features, data, n)


def random_init(spec: ViTSpec, seed: int) -> VisionTransformer:
    """The random-init encoder of `seed` (0, 1, ...): every report's random-init rows (probe,
    QA, label efficiency) are these same encoders."""
    torch.manual_seed(10_000 + seed)
    return VisionTransformer(spec)


def probe_random_init(spec: ViTSpec, data: ImageData, seeds: int,
                      device: str | torch.device = "cpu", attentive: bool = False,
                      n: int = PROBE_TRAIN) -> ProbeRow:
    rows = [probe_encoder("random init", random_init(spec, seed).to(device), data, device, n,
                          attentive) for seed in range(seeds)]
    return average(rows, "random init")


def average(rows: list[ProbeRow], name: str) -> ProbeRow:
    def spread(values):
        return statistics.stdev(values) if len(values) > 1 else 0.0
    linear, top1 = [r.linear for r in rows], [r.knn for r in rows]
    attentive = [r.attentive for r in rows if r.attentive is not None]
    return ProbeRow(name, statistics.mean(linear), statistics.mean(top1),
                    statistics.mean(r.rankme for r in rows), spread(linear), spread(top1),
                    len(rows), statistics.mean(attentive) if attentive else None,
                    spread(attentive))
