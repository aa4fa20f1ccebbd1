"""Collapse diagnostics of a batch of embeddings."""
from __future__ import annotations

import torch


class CollapseWarning(UserWarning):
    """A method's embeddings collapsed during training: `metric` ("rankme" or "spread")
    fell to `value` at `step`, under its threshold and under its value at step 0."""

    def __init__(self, step: int, metric: str, value: float, initial: float | None,
                 threshold: float):
        self.step, self.metric, self.value = step, metric, value
        start = "" if initial is None else f" (it was {initial:.2f} at step 0)"
        meaning = {"rankme": f"the embeddings span about {value:.1f} directions",
                   "spread": "the embeddings of different images are nearly identical"}[metric]
        super().__init__(
            f"representation collapse at step {step}: {metric} {value:.3f}{start} is under "
            f"train.collapse_{metric}={threshold}: {meaning}; check the method's anti-collapse "
            "terms")


class CollapseRecovered(UserWarning):
    """The metric of an earlier CollapseWarning climbed back above its limit at `step`: the
    warning no longer describes the run (an early dip that training undoes)."""

    def __init__(self, step: int, warning: CollapseWarning, value: float, limit: float):
        self.step, self.metric, self.value, self.warning = step, warning.metric, value, warning
        super().__init__(
            f"recovered from the collapse warned at step {warning.step}: {warning.metric} "
            f"{value:.3f} at step {step} is back above {limit:.3f} "
            f"(it fell to {warning.value:.3f})")


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


def spread(z: torch.Tensor) -> float:
    """feature_std scaled by sqrt(D): about 1 for isotropic embeddings, 0 when every image
    gets the same embedding (complete collapse, which RankMe can miss when the little
    variation left is spread over many dimensions)."""
    return feature_std(z) * z.shape[1] ** 0.5


def sigreg_statistic(z: torch.Tensor, num_slices: int = 256, seed: int = 0) -> float:
    """LeJEPA's SIGReg statistic of embeddings (N, D) on fixed directions: how far they are
    from an isotropic standard Gaussian (about 1 for one; large for collapsed or badly
    scaled embeddings). Measured on this process's embeddings alone, with no collective, so
    one rank may call it while the others do not."""
    from jepalab.losses import sigreg, sigreg_directions

    directions = sigreg_directions(z.shape[1], num_slices, broadcast=False,
                                   generator=torch.Generator().manual_seed(seed))
    return float(sigreg(z.float(), directions=directions, reduce=False))


def health(z: torch.Tensor) -> dict[str, float]:
    """The collapse diagnostics the trainer logs: RankMe, feature std, spread, SIGReg."""
    return {"rankme": rankme(z), "feature_std": feature_std(z), "spread": spread(z),
            "sigreg": sigreg_statistic(z)}
