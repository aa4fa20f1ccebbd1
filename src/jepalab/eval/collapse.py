"""Collapse diagnostics of a batch of embeddings."""
from __future__ import annotations

import torch


def rankme(z: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023, Eq. 1): exp of the entropy of normalised singular values.

    z: (N, D) embeddings. With sigma the singular values of z and p_k = sigma_k / sum(sigma) + eps,
    RankMe = exp(-sum_k p_k log p_k); between 1 (collapse to a line) and min(N, D).
    """
    if z.ndim != 2 or min(z.shape) < 1:
        raise ValueError(f"rankme expects embeddings (N, D), got {tuple(z.shape)}")
    sigma = torch.linalg.svdvals(z.double())
    p = sigma / sigma.sum() + eps
    return float(torch.exp(-(p * p.log()).sum()))


def feature_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension std of L2-normalised embeddings (N, D).

    Collapsed embeddings give 0; isotropic ones give about 1/sqrt(D) (SimSiam, Sec. 4.1).
    """
    return float(torch.nn.functional.normalize(z.double(), dim=1).std(dim=0).mean())
