"""Collapse diagnostics of a batch of embeddings."""
from __future__ import annotations

import torch


class CollapseWarning(UserWarning):
    """The evaluation encoder's embeddings have collapsed (RankMe under the threshold)."""


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


def sigreg_statistic(z: torch.Tensor, num_slices: int = 256, seed: int = 0) -> float:
    """LeJEPA's SIGReg statistic of embeddings (N, D) on fixed directions: how far they are
    from an isotropic standard Gaussian (about 1 for one; large for collapsed or badly
    scaled embeddings). Measured on this process's embeddings alone."""
    from jepalab.losses import sigreg, sigreg_directions

    directions = sigreg_directions(z.shape[1], num_slices,
                                   generator=torch.Generator().manual_seed(seed))
    return float(sigreg(z.float(), directions=directions, reduce=False))


def health(z: torch.Tensor) -> dict[str, float]:
    """The collapse diagnostics the trainer logs: RankMe, feature std, SIGReg statistic."""
    return {"rankme": rankme(z), "feature_std": feature_std(z), "sigreg": sigreg_statistic(z)}
