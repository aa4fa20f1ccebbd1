"""Training objectives as pure functions: tensors in, scalar out.

Each function documents the shapes it takes and the equation it implements, validates
its inputs, and takes its hyperparameters keyword-only with the paper's defaults.
Losses know nothing of models: methods compute the tensors, losses compare them.
Every loss computes in fp32 whatever the autocast around it: bf16 / fp16 inputs are cast
up and autocast is off inside (softmax at temperature 0.04, covariances and cos / sin of
large arguments lose too much in 8 bits of mantissa).

Under torch.distributed (every process must call the loss) the losses that need the whole
batch (batch variances and covariances, in-batch negatives, SIGReg's ECF) see the global
batch, with gradient, and every process returns the global batch's loss; the gradient a
process gets for its own rows is then world-size times the one-process gradient, so DDP's
average over processes is the one-process parameter gradient. Losses that are means over
samples (byol, dino, jepa_latent, mae_pixel, info_nce with a queue) return this process's
mean: DDP's average of their gradients is again the global batch's.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from jepalab.distributed import gather_batch, world_mean, world_rank, world_size

LATENT_LOSSES = ("smooth_l1", "l2", "l1")


def _fp32(loss):
    """Run `loss` in fp32: half-precision tensor arguments cast up, autocast off."""
    def up(value):
        return value.float() if isinstance(value, torch.Tensor) and value.dtype in (
            torch.bfloat16, torch.float16) else value

    @functools.wraps(loss)
    def wrapped(*args, **kwargs):
        args, kwargs = [up(a) for a in args], {k: up(v) for k, v in kwargs.items()}
        device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device, enabled=False):
            return loss(*args, **kwargs)
    return wrapped


def _same_shape(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name}: prediction and target shapes differ: "
                         f"{tuple(a.shape)} vs {tuple(b.shape)}")


@_fp32
def jepa_latent(prediction: torch.Tensor, target: torch.Tensor, *,
                kind: str = "smooth_l1") -> torch.Tensor:
    """I-JEPA's latent regression (Assran et al. 2023, Eq. 1), averaged over all elements.

    prediction, target: (..., D), the predicted and the target encoder's embeddings of the
    same target tokens (the target already layer-normalised and detached by the caller).
    kind="smooth_l1": Huber with beta 1, as the reference code;
    kind="l2": mean squared error, the paper's written form (1/M sum ||s_hat - s||^2 up to
    the per-element mean); kind="l1": mean absolute error, V-JEPA's (Bardes et al. 2024,
    Eq. 1).
    """
    _same_shape("jepa_latent", prediction, target)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(prediction, target, beta=1.0)
    if kind == "l1":
        return (prediction - target).abs().mean()
    if kind == "l2":
        return F.mse_loss(prediction, target)
    raise ValueError(f"jepa_latent: kind must be one of {LATENT_LOSSES}, got {kind!r}")


@_fp32
def imax(a: torch.Tensor, b: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """IMAX (Becker & Hinton 1992, Eq. 2), returned negated so that minimising maximises it.

    a, b: (N,) or (N, K), the outputs of two modules that see neighbouring inputs (K pairs
    of modules at once). Assuming a and b are noisy versions of one common signal,
    I = 0.5 * log(var(a + b) / var(a - b)); the result is -I, averaged over the K pairs.
    Variances are over the batch (biased), `eps` keeps them positive; under torch.distributed
    over the global batch, and every process returns the global loss.
    """
    _same_shape("imax", a, b)
    a, b = gather_batch(a), gather_batch(b)
    if a.shape[0] < 2:
        raise ValueError(f"imax needs at least 2 samples to estimate variances, got {a.shape[0]}")
    summed = (a + b).var(dim=0, unbiased=False) + eps
    differ = (a - b).var(dim=0, unbiased=False) + eps
    return -(0.5 * torch.log(summed / differ)).mean()


@_fp32
def info_nce(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor | None = None,
             *, temperature: float = 1.0, offset: int = 0) -> torch.Tensor:
    """InfoNCE (van den Oord et al. 2018, Eq. 4): cross-entropy of picking the positive.

    query, positive: (N, D); the score of a pair is their dot product / temperature (CPC's
    log-bilinear score: pass W c as the query; for cosine scores normalise both first).
    negatives None: every other row of `positive` is a negative for a query (in-batch, as
    CPC and MoCo v3); `positive` may then be (M, D), M >= N, with query i's positive at row
    offset + i. Under torch.distributed the rows of `positive` of every process are the
    candidates (gathered, with gradient) and every process returns the global loss, the
    mean over all processes' queries. negatives (K, D): a shared bank (MoCo v2's queue),
    the positive sits at index 0 of K+1 candidates; each process returns the mean over its
    own queries.
    L = -mean_i log( exp(q_i.k_i / t) / sum_j exp(q_i.k_j / t) ).
    """
    if query.ndim != 2 or positive.ndim != 2 or query.shape[1] != positive.shape[1]:
        raise ValueError(f"info_nce expects (N, D) tensors, got {tuple(query.shape)} and "
                         f"{tuple(positive.shape)}")
    if negatives is None:
        if not 0 <= offset <= len(positive) - len(query):
            raise ValueError(f"info_nce: {len(query)} queries at offset {offset} do not fit "
                             f"{len(positive)} keys")
        offset += world_rank() * len(positive)      # this process's rows among everyone's
        logits = query @ gather_batch(positive).T / temperature
        labels = torch.arange(len(query), device=query.device) + offset
        return world_mean(F.cross_entropy(logits, labels))
    _same_shape("info_nce", query, positive)
    if negatives.ndim != 2 or negatives.shape[1] != query.shape[1]:
        raise ValueError(f"info_nce: negatives must be (K, {query.shape[1]}), "
                         f"got {tuple(negatives.shape)}")
    logits = torch.cat([(query * positive).sum(1, keepdim=True), query @ negatives.T], 1)
    labels = torch.zeros(len(query), dtype=torch.long, device=query.device)
    return F.cross_entropy(logits / temperature, labels)


@_fp32
def ntxent(z1: torch.Tensor, z2: torch.Tensor, *, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent (Chen et al. 2020, SimCLR Eq. 1), averaged over all 2N anchors.

    z1, z2: (N, D) projections of two views of the same N images. With z the 2N
    L2-normalised rows, sim = z z^T / temperature, each anchor's positive is its other
    view and its 2N - 2 negatives are all other rows (itself excluded):
    l(i, j) = -log( exp(sim_ij) / sum_{k != i} exp(sim_ik) ).
    Under torch.distributed the anchors are this process's 2N rows, the candidates every
    process's (gathered, with gradient: 2 W N - 2 negatives), and every process returns the
    global loss, the mean over all 2 W N anchors.
    """
    _same_shape("ntxent", z1, z2)
    n, total = len(z1), len(z1) * world_size()
    z = F.normalize(torch.cat([gather_batch(z1), gather_batch(z2)]), dim=1)  # (2 W N, D)
    first = torch.arange(n, device=z.device) + world_rank() * n   # this process's rows of z1
    anchors = torch.cat([first, first + total])                   # ... then of z2
    positives = torch.cat([first + total, first])
    sim = z[anchors] @ z.T / temperature                          # (2N, 2 W N)
    itself = anchors[:, None] == torch.arange(2 * total, device=z.device)  # (one_hot syncs)
    sim = sim.masked_fill(itself, float("-inf"))
    return world_mean(F.cross_entropy(sim, positives))


def _standardise_batch(z: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-dimension (z - mean) / std over the batch, biased std: BatchNorm without affine."""
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


@_fp32
def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, *, lambd: float = 5e-3,
                 eps: float = 1e-5) -> torch.Tensor:
    """Barlow Twins (Zbontar et al. 2021, Eq. 1-2).

    z1, z2: (N, D). Each is standardised over the batch (BatchNorm without affine), the
    cross-correlation is C = z1^T z2 / N (D, D), and
    L = sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2.
    Under torch.distributed N is the global batch (gathered, with gradient) and every
    process returns the global loss.
    """
    _same_shape("barlow_twins", z1, z2)
    z1, z2 = gather_batch(z1), gather_batch(z2)
    c = _standardise_batch(z1, eps).T @ _standardise_batch(z2, eps) / len(z1)
    on_diagonal = (torch.diagonal(c) - 1).pow(2).sum()
    off_diagonal = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diagonal + lambd * off_diagonal


@_fp32
def vicreg(z1: torch.Tensor, z2: torch.Tensor, *, sim_coeff: float = 25.0,
           std_coeff: float = 25.0, cov_coeff: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg (Bardes et al. 2022, Eq. 1-6) with lambda=25, mu=25, nu=1, gamma=1.

    z1, z2: (N, D) expander outputs.
      invariance s = mean squared error between z1 and z2;
      variance   v(Z) = mean_j max(0, 1 - sqrt(Var(Z_j) + eps)), averaged over the branches;
      covariance c(Z) = sum_{i != j} Cov(Z)_ij^2 / D (unbiased covariance), summed over them.
    L = sim_coeff * s + std_coeff * (v(z1) + v(z2)) / 2 + cov_coeff * (c(z1) + c(z2)).
    Under torch.distributed N is the global batch (gathered, with gradient) for all three
    terms and every process returns the global loss.
    """
    _same_shape("vicreg", z1, z2)
    z1, z2 = gather_batch(z1), gather_batch(z2)
    n, d = z1.shape
    if n < 2:
        raise ValueError(f"vicreg needs at least 2 samples for variances, got {n}")
    invariance = F.mse_loss(z1, z2)
    variance = covariance = 0.0
    for z in (z1, z2):
        variance = variance + F.relu(1 - torch.sqrt(z.var(0) + eps)).mean() / 2
        centred = z - z.mean(0)
        cov = centred.T @ centred / (n - 1)
        covariance = covariance + (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d
    return sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance


@_fp32
def byol(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL (Grill et al. 2020, Eq. 2): ||q/||q|| - z/||z|| ||^2 = 2 - 2 cos(q, z), batch mean.

    prediction: (N, D) online predictor outputs; target: (N, D) target projections (the
    caller detaches them: the stop-gradient). Symmetrise by calling it for both views.
    """
    _same_shape("byol", prediction, target)
    return (2 - 2 * F.cosine_similarity(prediction, target, dim=-1)).mean()


@_fp32
def dino(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, *,
         student_temp: float = 0.1, teacher_temp: float = 0.04) -> torch.Tensor:
    """DINO (Caron et al. 2021, Eq. 1-3): cross-entropy from the centred, sharpened teacher.

    student: (Vs, N, K) head logits of all crops; teacher: (Vt, N, K) logits of the global
    crops, which are the first Vt of the student's crops; center: (K,).
    P_t = softmax((teacher - center) / teacher_temp) (no gradient),
    P_s = softmax(student / student_temp),
    L = mean over pairs (t, s) with s != t of mean_n  -sum_k P_t log P_s.
    """
    if student.ndim != 3 or teacher.ndim != 3 or student.shape[1:] != teacher.shape[1:]:
        raise ValueError(f"dino expects student (Vs, N, K) and teacher (Vt, N, K), got "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    if teacher.shape[0] > student.shape[0]:
        raise ValueError("dino: the teacher's views must be among the student's")
    targets = F.softmax((teacher - center) / teacher_temp, dim=-1).detach()
    log_probs = F.log_softmax(student / student_temp, dim=-1)
    total, terms = 0.0, 0
    for t in range(len(targets)):
        for s in range(len(log_probs)):
            if s != t:
                total = total - (targets[t] * log_probs[s]).sum(-1).mean()
                terms += 1
    return total / terms


@_fp32
def mae_pixel(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *,
              norm_pix: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """MAE's reconstruction loss (He et al. 2022, Sec. 3): MSE on the masked patches only.

    prediction, target: (B, N, P) per-patch pixels (P = patch^2 * channels); mask: (B, N),
    1 where the patch was removed. With norm_pix each target patch is normalised by its own
    mean and (unbiased) variance: (t - mean) / sqrt(var + eps).
    L = sum_{b,n} mask * mean_p (pred - t)^2 / sum mask.
    """
    _same_shape("mae_pixel", prediction, target)
    if mask.shape != prediction.shape[:2]:
        raise ValueError(f"mae_pixel: mask must be {tuple(prediction.shape[:2])}, "
                         f"got {tuple(mask.shape)}")
    if norm_pix:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / torch.sqrt(var + eps)
    per_patch = (prediction - target).pow(2).mean(-1)
    mask = mask.to(per_patch.dtype)
    return (per_patch * mask).sum() / mask.sum().clamp(min=1)


def _world_mean(x: torch.Tensor, reduce: bool = True) -> tuple[torch.Tensor, int]:
    """Mean of `x` over processes (differentiable all-reduce), and the world size."""
    return (world_mean(x), world_size()) if reduce else (x, 1)


class _EmpiricalCF(torch.autograd.Function):
    """x (..., N, M), t (K,) -> (2, ..., M, K): mean over N of cos(t x) and of sin(t x).

    The same numbers as `stack([(x[..., None] * t).cos().mean(-3), ....sin().mean(-3)])`,
    computed one knot at a time so no (..., N, M, K) tensor is kept for backward; backward
    recomputes each knot's cos and sin: d/dx mean cos(t x) = -t sin(t x) / N, and
    d/dx mean sin(t x) = t cos(t x) / N. About 3x faster than autograd through the stacked
    tensor on CPU (benchmarks/sigreg.py)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = x.new_empty(2, *x.shape[:-2], x.shape[-1], t.numel())
        for k, t_k in enumerate(t.tolist()):
            angle = x * t_k
            out[0, ..., k] = angle.cos().mean(-2)
            out[1, ..., k] = angle.sin().mean(-2)
        ctx.save_for_backward(x, t)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, t = ctx.saved_tensors
        scale = t / x.shape[-2]
        grad_cos, grad_sin = grad[0] * scale, grad[1] * scale       # (..., M, K)
        grad_x = torch.zeros_like(x)
        for k, t_k in enumerate(t.tolist()):
            if t_k == 0:
                continue
            angle = x * t_k
            grad_x += angle.cos() * grad_sin[..., k].unsqueeze(-2)
            grad_x -= angle.sin() * grad_cos[..., k].unsqueeze(-2)
        return grad_x, None


def sigreg_directions(dim: int, num_slices: int = 1024, *, generator: torch.Generator | None = None,
                      device: str | torch.device = "cpu", broadcast: bool = True) -> torch.Tensor:
    """Unit directions (dim, num_slices), the same on every process (rank 0's under DDP;
    `broadcast=False` runs no collective: for one process's diagnostics, with a seeded
    `generator` that draws the same directions everywhere)."""
    import torch.distributed as dist

    directions = torch.randn(dim, num_slices, generator=generator)
    directions = (directions / directions.norm(dim=0, keepdim=True)).to(device)
    if broadcast and dist.is_available() and dist.is_initialized() and \
            dist.get_world_size() > 1:
        dist.broadcast(directions, src=0)
    return directions


@_fp32
def sigreg(z: torch.Tensor, *, num_slices: int = 1024, knots: int = 17, t_max: float = 3.0,
           directions: torch.Tensor | None = None, generator: torch.Generator | None = None,
           reduce: bool = True) -> torch.Tensor:
    """SIGReg (Balestriero & LeCun 2025, LeJEPA Sec. 4): sliced Epps-Pulley test that the
    embeddings are distributed as an isotropic standard Gaussian.

    z: (..., N, D), N samples (leading dims are averaged). Each of M unit directions a
    (D, M) gives 1D projections x = z a; with the empirical characteristic function
    phi_N(t) = mean_n exp(i t x_n) and the target phi(t) = exp(-t^2 / 2),
      EP = N * integral_{-t_max}^{t_max} |phi_N(t) - phi(t)|^2 exp(-t^2 / 2) dt,
    by the trapezoid rule on `knots` points of [0, t_max] (the integrand is even: weights
    2 dt inside, dt at the ends). SIGReg = mean of EP over the slices.
    Under DDP the directions are rank 0's and the ECF means are all-reduced, so N processes
    on N shards give the value one process gives on all the data (N is then the global count);
    `reduce=False` measures this process's samples alone (pass `directions` then too).
    """
    if z.ndim < 2:
        raise ValueError(f"sigreg expects embeddings (..., N, D), got {tuple(z.shape)}")
    if directions is None:
        directions = sigreg_directions(z.shape[-1], num_slices, generator=generator,
                                       device=z.device)
    if directions.shape[0] != z.shape[-1]:
        raise ValueError(f"sigreg: directions must be ({z.shape[-1]}, M), "
                         f"got {tuple(directions.shape)}")
    t = torch.linspace(0, t_max, knots, device=z.device, dtype=torch.float32)
    dt = t_max / (knots - 1)
    weights = torch.full((knots,), 2 * dt, device=z.device)
    weights[[0, -1]] = dt
    target = torch.exp(-t.square() / 2)
    x = z.float() @ directions.float()                               # (..., N, M)
    ecf = _EmpiricalCF.apply(x, t)                                   # (2, ..., M, knots)
    (cos_mean, sin_mean), world = _world_mean(ecf, reduce)
    error = (cos_mean - target).square() + sin_mean.square()        # (..., M, knots)
    statistic = (error * weights * target).sum(-1) * z.shape[-2] * world
    return statistic.mean()


@_fp32
def lejepa(embeddings: torch.Tensor, *, num_global: int = 2, lam: float = 0.05,
           num_slices: int = 1024, knots: int = 17,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """LeJEPA's objective (Balestriero & LeCun 2025, Eq. 12 and the paper's pseudo-code).

    embeddings: (V, N, D) projections of V views, the first `num_global` the global views.
    prediction = mean over views, samples, dims of (mean of the global views - view)^2;
    sigreg = mean over views of SIGReg(view) (one set of directions for all views);
    L = (1 - lam) * prediction + lam * sigreg. No stop-gradient anywhere.
    Returns (L, {"prediction": ..., "sigreg": ...}).
    """
    if embeddings.ndim != 3 or not 1 <= num_global <= embeddings.shape[0]:
        raise ValueError(f"lejepa expects (V, N, D) with 1 <= num_global <= V, got "
                         f"{tuple(embeddings.shape)} and num_global={num_global}")
    center = embeddings[:num_global].mean(0)
    prediction = (center - embeddings).square().mean()
    directions = sigreg_directions(embeddings.shape[-1], num_slices, generator=generator,
                                   device=embeddings.device)
    regulariser = sigreg(embeddings, knots=knots, directions=directions)
    loss = (1 - lam) * prediction + lam * regulariser
    return loss, {"prediction": prediction.detach(), "sigreg": regulariser.detach()}
