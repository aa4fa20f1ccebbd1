"""Heads on top of a backbone's pooled features: MLP projectors / predictors, DINO's head."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from jepalab.distributed import world_mean, world_size


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2, *, batch_norm: bool = True,
        last_norm: bool = False, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """`layers` linear layers: (Linear [BN] act) x (layers - 1), then Linear.

    The projectors of SimCLR, MoCo, BYOL, Barlow Twins and VICReg are all this shape with
    their own widths; `last_norm` appends a BatchNorm without affine (MoCo v3's projector).
    """
    if layers < 1:
        raise ValueError(f"an MLP needs at least one layer, got {layers}")
    modules, width = [], in_dim
    for _ in range(layers - 1):
        modules += [nn.Linear(width, hidden, bias=not batch_norm)]
        modules += [nn.BatchNorm1d(hidden)] if batch_norm else []
        modules += [activation()]
        width = hidden
    modules.append(nn.Linear(width, out_dim, bias=not last_norm))
    if last_norm:
        modules.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*modules)


class WorldBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are the global batch's, on any device: the
    per-channel mean and biased variance are averaged over processes with a differentiable
    all-reduce (every process must pass the same batch size). torch's SyncBatchNorm does
    this on GPUs only: on CPU it raises "SyncBatchNorm expected input tensor to be on GPU".
    In eval mode, and outside torch.distributed, it is BatchNorm1d (no collective).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        world = world_size()
        if world == 1 or not self.training:
            return super().forward(x)
        dims = [d for d in range(x.ndim) if d != 1]             # all but the channels
        shape = [1, -1] + [1] * (x.ndim - 2)
        xf = x.float()
        mean = world_mean(xf.mean(dims))
        var = world_mean((xf - mean.view(shape)).square().mean(dims))
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else \
                    1 / float(self.num_batches_tracked)
                count = x.numel() // x.shape[1] * world
                unbiased = var * count / max(count - 1, 1)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        y = (xf - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def world_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every BatchNorm1d made a WorldBatchNorm1d, in place: what
    SyncBatchNorm.convert_sync_batchnorm does, for CPU (gloo) runs. The subclass adds no
    state, so switching the class keeps parameters, buffers, device and mode."""
    for child in module.modules():
        if type(child) is nn.BatchNorm1d:
            child.__class__ = WorldBatchNorm1d
    return module


class DINOHead(nn.Module):
    """DINO's head (Caron et al. 2021, Sec. 3.1): a 3-layer GELU MLP to a bottleneck,
    L2 normalisation, then a weight-normalised linear layer (norm fixed to 1) to K logits."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 2048, bottleneck: int = 256):
        super().__init__()
        self.mlp = mlp(in_dim, hidden, bottleneck, layers=3, batch_norm=False,
                       activation=nn.GELU)
        self.last_layer = nn.Parameter(torch.empty(out_dim, bottleneck))
        nn.init.trunc_normal_(self.last_layer, std=0.02)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        return x @ F.normalize(self.last_layer, dim=-1).T


class Projected(nn.Module):
    """A backbone followed by a head; `features(x)` is the head's output: the embedding a
    method's loss acts on, which the trainer's collapse monitor reads."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.features(x))
