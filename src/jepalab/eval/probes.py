"""Probes on frozen features: linear (with a small lr x weight-decay sweep) and kNN."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from jepalab.data.views import to_float

LINEAR_LRS = (1e-2, 1e-1)
LINEAR_WEIGHT_DECAYS = (0.0, 1e-4, 1e-3, 1e-2)


@torch.no_grad()
def extract_features(encoder: torch.nn.Module, images: torch.Tensor, batch_size: int = 500,
                     device: str | torch.device = "cpu") -> torch.Tensor:
    """Mean-pooled encoder features (N, D) of uint8 images (N, 3, H, W), no augmentation.
    The images are read `batch_size` at a time, so a streamed folder's `FileImages` is
    decoded chunk by chunk, never whole."""
    encoder.eval()
    parts = [encoder.features(to_float(images[i:i + batch_size].to(device))).float().cpu()
             for i in range(0, len(images), batch_size)]
    return torch.cat(parts)


def pixel_features(images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Raw-pixel baseline features: flattened normalised pixels (N, 3*H*W), read in chunks as
    `extract_features` reads them."""
    features = torch.empty(len(images), math.prod(images.shape[1:]))
    for i in range(0, len(images), batch_size):
        features[i:i + batch_size] = to_float(images[i:i + batch_size]).flatten(1)
    return features


@dataclass
class LinearProbeResult:
    test_acc: float
    val_acc: float
    lr: float
    weight_decay: float


def _standardise(train, *others):
    mean, std = train.mean(0, keepdim=True), train.std(0, keepdim=True) + 1e-6
    return [(x - mean) / std for x in (train, *others)]


@torch.no_grad()
def whiten(train: torch.Tensor, *others: torch.Tensor, floor: float = 1e-4,
           chunk: int = 65536) -> list[torch.Tensor]:
    """PCA-whitened copies of train and others (..., D): the mean and covariance of train's
    rows over its last dimension (in float64, `chunk` rows at a time), every principal
    direction scaled to unit variance, eigenvalues under `floor` times the largest held at
    that floor (so directions with no variance are not blown up). An invertible linear map
    of the features: the same information, but no direction dominates a probe's optimiser
    (a trained encoder's tokens can spend most of their variance on a few directions, such
    as a clip's colours, and leave what a probe needs in small ones)."""
    rows = train.reshape(-1, train.shape[-1])
    # in chunks: `rows.mean(dtype=torch.float64)` makes a float64 copy of every row first
    mean = sum(part.sum(0, dtype=torch.float64) for part in rows.split(chunk)) / len(rows)
    second = torch.zeros(rows.shape[1], rows.shape[1], dtype=torch.float64)
    for part in rows.split(chunk):
        centred = part.double() - mean
        second += centred.T @ centred
    values, vectors = torch.linalg.eigh(second / max(len(rows) - 1, 1))
    scale = (vectors / values.clamp_min(values.max() * floor).sqrt()).float()
    mean = mean.float()
    whitened = []
    for x in (train, *others):  # written chunk by chunk into one tensor: no second copy
        out = torch.empty(x.shape, dtype=torch.float32)
        for part, into in zip(x.reshape(-1, x.shape[-1]).split(chunk),
                              out.view(-1, x.shape[-1]).split(chunk)):
            torch.mm(part.float() - mean, scale, out=into)
        whitened.append(out)
    return whitened


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(-1) == labels).float().mean())


@torch.no_grad()
def _fit_heads(x, y, num_classes, lrs, weight_decays, steps, seed, betas=(0.9, 0.999),
               eps=1e-8):
    """Full-batch AdamW on H softmax-regression heads at once (one per (lr, wd) pair).

    The heads share the features, so their weights sit side by side in one (D, H*C) matrix
    and each step is one matmul; the cross-entropy gradient is written out:
    d mean CE / d logits = (softmax - onehot) / N, per head.
    Returns weight (D, H*C) and bias (H*C,).
    """
    n, dim = x.shape
    heads = len(lrs)
    generator = torch.Generator().manual_seed(seed)
    bound = 1.0 / dim**0.5  # nn.Linear's initialisation
    weight = (torch.rand(dim, heads * num_classes, generator=generator) * 2 - 1) * bound
    bias = torch.zeros(heads * num_classes)
    lr = torch.tensor(lrs, dtype=torch.float32).repeat_interleave(num_classes)
    decay = torch.tensor(weight_decays, dtype=torch.float32).repeat_interleave(num_classes)
    onehot = F.one_hot(y, num_classes).float()[:, None, :]
    state = [torch.zeros_like(t) for t in (weight, weight, bias, bias)]
    for step in range(1, steps + 1):
        probs = (x @ weight + bias).view(n, heads, num_classes).softmax(-1)
        grad_logits = ((probs - onehot) / n).view(n, heads * num_classes)
        grads = (x.T @ grad_logits, grad_logits.sum(0))
        weight.mul_(1 - lr * decay)  # decoupled weight decay (AdamW), on weights only
        for param, grad, first, second in ((weight, grads[0], *state[:2]),
                                           (bias, grads[1], *state[2:])):
            first.lerp_(grad, 1 - betas[0])
            second.mul_(betas[1]).addcmul_(grad, grad, value=1 - betas[1])
            corrected = (second / (1 - betas[1] ** step)).sqrt_().add_(eps)
            param.sub_(lr * (first / (1 - betas[0] ** step)) / corrected)
    return weight, bias


def linear_probe(train_x, train_y, val_x, val_y, test_x, test_y, *, num_classes: int,
                 steps: int = 300, lrs=LINEAR_LRS, weight_decays=LINEAR_WEIGHT_DECAYS,
                 seed: int = 0) -> LinearProbeResult:
    """Softmax regression on standardised features; lr x wd picked on val, reported on test.

    Every (lr, wd) pair of the sweep is a head trained full batch for `steps` AdamW steps;
    the head with the best validation accuracy gives the test accuracy.
    """
    train_x, val_x, test_x = _standardise(train_x.float(), val_x.float(), test_x.float())
    grid = list(itertools.product(lrs, weight_decays))
    weight, bias = _fit_heads(train_x, train_y, num_classes, [g[0] for g in grid],
                              [g[1] for g in grid], steps, seed)

    def per_head(x, y):
        logits = (x @ weight + bias).view(len(x), len(grid), num_classes)
        return (logits.argmax(-1) == y[:, None]).float().mean(0)

    val_acc, test_acc = per_head(val_x, val_y), per_head(test_x, test_y)
    best = int(val_acc.argmax())
    return LinearProbeResult(float(test_acc[best]), float(val_acc[best]), *grid[best])


@torch.no_grad()
def knn(train_x, train_y, test_x, test_y, *, num_classes: int, k: int = 20,
        temperature: float = 0.07, chunk: int = 1000) -> float:
    """Weighted kNN top-1 (Wu et al. 2018; DINO's protocol): cosine similarity, k neighbours,
    each voting for its class with weight exp(similarity / temperature)."""
    train_x, test_x = F.normalize(train_x.float(), dim=1), F.normalize(test_x.float(), dim=1)
    k = min(k, len(train_x))
    correct = 0
    for i in range(0, len(test_x), chunk):
        similarity, index = (test_x[i:i + chunk] @ train_x.T).topk(k, dim=1)
        votes = torch.zeros(len(index), num_classes)
        votes.scatter_add_(1, train_y[index], (similarity / temperature).exp())
        correct += int((votes.argmax(1) == test_y[i:i + chunk]).sum())
    return correct / len(test_x)
