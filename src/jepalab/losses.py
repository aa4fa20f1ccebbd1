"""Training objectives as pure functions: tensors in, scalar out.

Each function documents the shapes it takes and the equation it implements, validates
its inputs, and takes its hyperparameters keyword-only with the paper's defaults.
Losses know nothing of models: methods compute the tensors, losses compare them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LATENT_LOSSES = ("smooth_l1", "l2")


def _same_shape(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name}: prediction and target shapes differ: "
                         f"{tuple(a.shape)} vs {tuple(b.shape)}")


def jepa_latent(prediction: torch.Tensor, target: torch.Tensor, *,
                kind: str = "smooth_l1") -> torch.Tensor:
    """I-JEPA's latent regression (Assran et al. 2023, Eq. 1), averaged over all elements.

    prediction, target: (..., D), the predicted and the target encoder's embeddings of the
    same target tokens (the target already layer-normalised and detached by the caller).
    kind="smooth_l1": Huber with beta 1, as the reference code;
    kind="l2": mean squared error, the paper's written form (1/M sum ||s_hat - s||^2 up to
    the per-element mean).
    """
    _same_shape("jepa_latent", prediction, target)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(prediction, target, beta=1.0)
    if kind == "l2":
        return F.mse_loss(prediction, target)
    raise ValueError(f"jepa_latent: kind must be one of {LATENT_LOSSES}, got {kind!r}")


def imax(a: torch.Tensor, b: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """IMAX (Becker & Hinton 1992, Eq. 2), returned negated so that minimising maximises it.

    a, b: (N,) or (N, K), the outputs of two modules that see neighbouring inputs (K pairs
    of modules at once). Assuming a and b are noisy versions of one common signal,
    I = 0.5 * log(var(a + b) / var(a - b)); the result is -I, averaged over the K pairs.
    Variances are over the batch (biased), `eps` keeps them positive.
    """
    _same_shape("imax", a, b)
    if a.shape[0] < 2:
        raise ValueError(f"imax needs at least 2 samples to estimate variances, got {a.shape[0]}")
    summed = (a + b).var(dim=0, unbiased=False) + eps
    differ = (a - b).var(dim=0, unbiased=False) + eps
    return -(0.5 * torch.log(summed / differ)).mean()
