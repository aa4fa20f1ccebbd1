"""Probes on frozen features: linear (with a small lr x weight-decay sweep) and kNN."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from jepalab.data.views import to_float

LINEAR_LRS = (1e-2, 1e-1)
LINEAR_WEIGHT_DECAYS = (0.0, 1e-4, 1e-3, 1e-2)


@torch.no_grad()
def extract_features(encoder: torch.nn.Module, images: torch.Tensor, batch_size: int = 500,
                     device: str | torch.device = "cpu") -> torch.Tensor:
    """Mean-pooled encoder features (N, D) of uint8 images (N, 3, H, W), no augmentation."""
    encoder.eval()
    parts = [encoder.features(to_float(images[i:i + batch_size].to(device))).float().cpu()
             for i in range(0, len(images), batch_size)]
    return torch.cat(parts)


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """Raw-pixel baseline features: flattened normalised pixels (N, 3*H*W)."""
    return to_float(images).flatten(1)


@dataclass
class LinearProbeResult:
    test_acc: float
    val_acc: float
    lr: float
    weight_decay: float


def _standardise(train, *others):
    mean, std = train.mean(0, keepdim=True), train.std(0, keepdim=True) + 1e-6
    return [(x - mean) / std for x in (train, *others)]


def _fit_linear(x, y, num_classes, lr, weight_decay, steps, seed):
    torch.manual_seed(seed)
    head = torch.nn.Linear(x.shape[1], num_classes)
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):  # full batch: features are small and fixed
        optimiser.zero_grad(set_to_none=True)
        F.cross_entropy(head(x), y).backward()
        optimiser.step()
    return head


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())


def linear_probe(train_x, train_y, val_x, val_y, test_x, test_y, *, num_classes: int,
                 steps: int = 300, lrs=LINEAR_LRS, weight_decays=LINEAR_WEIGHT_DECAYS,
                 seed: int = 0) -> LinearProbeResult:
    """Softmax regression on standardised features; lr x wd picked on val, reported on test."""
    train_x, val_x, test_x = _standardise(train_x.float(), val_x.float(), test_x.float())
    best = None
    with torch.enable_grad():
        for lr, wd in itertools.product(lrs, weight_decays):
            head = _fit_linear(train_x, train_y, num_classes, lr, wd, steps, seed)
            with torch.no_grad():
                val_acc = accuracy(head(val_x), val_y)
                if best is None or val_acc > best.val_acc:
                    best = LinearProbeResult(accuracy(head(test_x), test_y), val_acc, lr, wd)
    return best


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
