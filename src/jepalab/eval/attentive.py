"""The attentive probe (V-JEPA's evaluation): cross-attention pooling of frozen tokens.

A learned query attends over an encoder's frozen tokens (one cross-attention block with
its MLP, pre-norm, residual), then a linear classifier reads the pooled vector. Unlike
mean pooling, the probe can pick out the tokens that matter (where and when something
moves), so it is the fair read-out of a video encoder whose tokens hold the motion.
Several learning-rate x weight-decay settings are trained on the same frozen tokens; the
best on validation is reported on test (as V-JEPA 2 does).

The tokens are PCA-whitened first (`probes.whiten`, fitted on the training tokens): the
probe's LayerNorm scales each token, not each direction, and a trained encoder's tokens can
put nearly all their variance in a few directions (V-JEPA's on moving_shapes: what stays
constant over a clip, its colours) and what the probe needs in small ones, which the
probe's optimiser then never finds (on the video quick screen: V-JEPA 8.8% raw, 72.7%
whitened; random init 37.7 and 68.9). Whitening is an invertible linear map, so it adds no
information; MAE puts a BatchNorm without affine before its linear probe for the same
reason (features of very different magnitudes), per dimension where this is per direction.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from jepalab.data.views import to_float
from jepalab.eval import probes
from jepalab.nn.vit import Mlp, attention

ATTENTIVE_LRS = (1e-3, 3e-3)
ATTENTIVE_WEIGHT_DECAYS = (0.01, 0.1)


class AttentivePooler(nn.Module):
    """tokens (B, N, D) -> logits (B, C): query cross-attention block, norm, linear."""

    def __init__(self, dim: int, num_classes: int, num_heads: int = 4, mlp_ratio: float = 2.0):
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.norm_kv, self.norm_q = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim,
                                                                                            dim)
        self.norm_mlp, self.mlp = nn.LayerNorm(dim), Mlp(dim, int(dim * mlp_ratio))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, D)."""
        b, n, d = tokens.shape
        h = self.num_heads
        k, v = self.kv(self.norm_kv(tokens)).view(b, n, 2, h, d // h).unbind(2)
        q = self.q(self.norm_q(self.query)).view(1, 1, h, d // h).expand(b, -1, -1, -1)
        out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        x = self.query + self.proj(out.transpose(1, 2).reshape(b, 1, d))
        x = x + self.mlp(self.norm_mlp(x))
        return x[:, 0]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.pool(tokens)))


@dataclass
class AttentiveProbeResult:
    test_acc: float
    val_acc: float
    lr: float
    weight_decay: float
    test_predictions: torch.Tensor = field(repr=False)  # (N_test,) classes, for a confusion


def extract_tokens(encoder: nn.Module, inputs: torch.Tensor, batch_size: int = 250,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """Frozen patch tokens (N, T, D) of uint8 images or clips, no augmentation."""
    return extract_pooled_and_tokens(encoder, inputs, batch_size, device)[1]


@torch.no_grad()
def extract_pooled_and_tokens(encoder: nn.Module, inputs: torch.Tensor, batch_size: int = 250,
                              device: str | torch.device = "cpu"
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen pooled features (N, D) and patch tokens (N, T, D) of uint8 images or clips
    from one forward pass (the encoder's `pooled_and_patches`), no augmentation."""
    if not len(inputs):
        raise ValueError("no images or clips to extract features from (an empty split)")
    encoder.eval()
    pooled = tokens = None
    for i in range(0, len(inputs), batch_size):  # into tensors allocated once: no second copy
        part_pooled, part_tokens = encoder.pooled_and_patches(
            to_float(inputs[i:i + batch_size].to(device)))
        if tokens is None:
            pooled = torch.empty(len(inputs), *part_pooled.shape[1:])
            tokens = torch.empty(len(inputs), *part_tokens.shape[1:])
        pooled[i:i + batch_size] = part_pooled.float().cpu()
        tokens[i:i + batch_size] = part_tokens.float().cpu()
    return pooled, tokens


def _predict(probe: nn.Module, tokens: torch.Tensor, batch: int) -> torch.Tensor:
    """The probe's class for each of tokens (N, T, D), in batches: (N,) long."""
    probe.eval()
    with torch.no_grad():
        return torch.cat([probe(tokens[i:i + batch]).argmax(-1)
                          for i in range(0, len(tokens), batch)])


def _accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return int((predictions == labels).sum()) / len(labels)


def attentive_probe(train_x, train_y, val_x, val_y, test_x, test_y, *, num_classes: int,
                    epochs: int = 10, batch_size: int = 128, lrs=ATTENTIVE_LRS,
                    weight_decays=ATTENTIVE_WEIGHT_DECAYS, seed: int = 0, whiten: bool = True
                    ) -> AttentiveProbeResult:
    """Train one attentive pooler per (lr, wd) on frozen tokens (N, T, D) with AdamW and a
    cosine schedule; the best on val gives the test accuracy and test predictions. With
    `whiten` (the default) the tokens are PCA-whitened on the training tokens first."""
    if whiten:
        train_x, val_x, test_x = probes.whiten(train_x, val_x, test_x)
    best = None
    steps = epochs * -(-len(train_x) // batch_size)
    for lr, weight_decay in itertools.product(lrs, weight_decays):
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        probe = AttentivePooler(train_x.shape[-1], num_classes)
        optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        for _ in range(epochs):
            probe.train()
            for index in torch.randperm(len(train_x), generator=generator).split(batch_size):
                loss = F.cross_entropy(probe(train_x[index]), train_y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
        test_predictions = _predict(probe, test_x, 500)
        result = AttentiveProbeResult(_accuracy(test_predictions, test_y),
                                      _accuracy(_predict(probe, val_x, 500), val_y), lr,
                                      weight_decay, test_predictions)
        if best is None or result.val_acc > best.val_acc:
            best = result
    return best
