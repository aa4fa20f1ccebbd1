"""Video question answering on frozen tokens: a question-conditioned attentive probe.

The question's words (learned embeddings plus learned positions) pass one pre-norm
self-attention block, so each word knows the others ("red" next to "touch"). Then the
words become the queries of `depth` cross-attention blocks whose keys and values are the
frozen video tokens, each block with its MLP; the words are averaged (padding left out) and a
linear layer picks the answer. The **question-only** model is the same network without
the cross-attention: what a model gets from the question alone, the answer prior that
the video has to beat. As for the attentive probe, several learning-rate x weight-decay
settings are trained with AdamW and a cosine schedule; the best on val is reported on
test, overall and per question type. The tokens are PCA-whitened on the training clips'
tokens first, as the attentive probe's are (`probes.whiten`; attentive.py says why).

A split here is anything with `clip` (Q,) (which clip of `tokens` a question is about),
`questions` (Q, L) word indices with 0 as padding, `answers` (Q,) and `types` (Q,), like
`data.video_qa.QASplit`; tokens are (N_clips, N_tokens, D), extracted once.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from jepalab.eval import probes
from jepalab.nn.vit import Attention, Mlp, attention

QA_LRS = (1e-3, 3e-3)
QA_WEIGHT_DECAYS = (0.05,)  # 0.01 to 0.1 made no difference here; a grid point costs a fit


class CrossBlock(nn.Module):
    """Queries (B, L, W) attend over frozen tokens (C, N, D) of C clips: pre-norm,
    residual, then an MLP."""

    def __init__(self, width: int, token_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm_q, self.norm_kv = nn.LayerNorm(width), nn.LayerNorm(token_dim)
        self.q, self.kv = nn.Linear(width, width), nn.Linear(token_dim, 2 * width)
        self.proj = nn.Linear(width, width)
        self.norm_mlp, self.mlp = nn.LayerNorm(width), Mlp(width, 2 * width)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, clip: torch.Tensor | None = None
                ) -> torch.Tensor:
        """x (B, L, W); tokens (C, N, D) of the clips, `clip` (B,) the row of each query's
        clip (None: row b for query b). Keys and values are computed once per clip."""
        (b, length, width), (c, n, _), h = x.shape, tokens.shape, self.num_heads
        q = self.q(self.norm_q(x)).view(b, length, h, width // h).transpose(1, 2)
        kv = self.kv(self.norm_kv(tokens)).view(c, n, 2, h, width // h)
        k, v = (kv if clip is None else kv[clip]).transpose(1, 3).unbind(2)  # (B, H, N, d)
        out = attention(q, k, v)
        x = x + self.proj(out.transpose(1, 2).reshape(b, length, width))
        return x + self.mlp(self.norm_mlp(x))


class QAProbe(nn.Module):
    """questions (B, L) [+ tokens (B, N, D)] -> answer logits (B, A). Without `token_dim`
    it reads the question alone (the question-only model)."""

    def __init__(self, vocab_size: int, length: int, num_answers: int,
                 token_dim: int | None = None, width: int = 64, depth: int = 1,
                 num_heads: int = 4):
        super().__init__()
        self.words = nn.Embedding(vocab_size, width, padding_idx=0)
        self.positions = nn.Parameter(torch.randn(1, length, width) * 0.02)
        self.norm_self, self.self_attention = nn.LayerNorm(width), Attention(width, num_heads)
        self.norm_mlp, self.mlp = nn.LayerNorm(width), Mlp(width, 2 * width)
        self.looks = nn.ModuleList(CrossBlock(width, token_dim, num_heads)
                                   for _ in range(depth if token_dim else 0))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, num_answers)

    def read(self, questions: torch.Tensor) -> torch.Tensor:
        """(Q, L) word indices -> (Q, L, W): each word in the context of its question."""
        words = questions != 0
        x = self.words(questions) + self.positions[:, :questions.shape[1]]
        x = x + self.self_attention(self.norm_self(x), words[:, None, None, :])
        return x + self.mlp(self.norm_mlp(x))

    def forward(self, questions: torch.Tensor, tokens: torch.Tensor | None = None,
                clip: torch.Tensor | None = None) -> torch.Tensor:
        """`tokens` (C, N, D) and `clip` (B,) as in `CrossBlock`."""
        words = questions != 0
        distinct, which = torch.unique(questions, dim=0, return_inverse=True)
        x = self.read(distinct)[which]  # a batch asks few distinct questions: read each once
        for look in self.looks:
            x = look(x, tokens, clip)
        pooled = (x * words[..., None]).sum(1) / words.sum(1, keepdim=True)
        return self.head(self.norm(pooled))


@dataclass
class QAResult:
    test_acc: float
    val_acc: float
    per_type: list[float]   # test accuracy of each question type (its index), nan if absent
    lr: float
    weight_decay: float


def _batch(split, tokens, index):
    """The inputs of the questions at `index`: (questions, tokens, clip)."""
    return (split.questions[index],
            None if tokens is None else tokens[split.clip[index]], None)


def _clip_batches(split, num_clips: int, clips_per_batch: int, generator: torch.Generator):
    """Question indices in batches of whole clips (every question of a clip together), each
    with its clips and the row of each question's clip among them, in a random order."""
    row = torch.empty(num_clips, dtype=torch.long)
    for clips in torch.randperm(num_clips, generator=generator).split(clips_per_batch):
        index = torch.isin(split.clip, clips).nonzero()[:, 0]
        row[clips] = torch.arange(len(clips))
        if len(index):
            yield index, clips, row[split.clip[index]]


@torch.no_grad()
def predict(probe: QAProbe, split, tokens: torch.Tensor | None, batch: int = 500):
    """Answer indices (Q,) for every question of `split`."""
    probe.eval()
    return torch.cat([probe(*_batch(split, tokens, index)).argmax(-1)
                      for index in torch.arange(len(split.answers)).split(batch)])


def per_type_accuracy(hits: torch.Tensor, types: torch.Tensor, num_types: int) -> list[float]:
    return [hits[types == t].float().mean().item() if (types == t).any() else float("nan")
            for t in range(num_types)]


def _fit(probe: QAProbe, split, tokens, *, num_clips: int, epochs: int, clips_per_batch: int,
         lr: float, weight_decay: float, generator: torch.Generator) -> None:
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * -(-num_clips // clips_per_batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(epochs):
        probe.train()
        for index, clips, row in _clip_batches(split, num_clips, clips_per_batch, generator):
            logits = probe(split.questions[index], None if tokens is None else tokens[clips], row)
            loss = F.cross_entropy(logits, split.answers[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()


def qa_probe(train, val, test, tokens: tuple | None, *, vocab_size: int, num_answers: int,
             num_types: int, epochs: int = 20, clips_per_batch: int = 64, width: int = 64,
             depth: int = 1, lrs=QA_LRS, weight_decays=QA_WEIGHT_DECAYS,
             seed: int = 0, whiten: bool = True) -> QAResult:
    """Train one probe per (lr, wd) on the train questions; the best on val gives the test
    accuracy. `tokens` is (train, val, test) frozen tokens per clip, or None for the
    question-only model; with `whiten` (the default) they are PCA-whitened on the train
    tokens first."""
    if tokens is not None and whiten:
        tokens = probes.whiten(*tokens)
    train_tokens, val_tokens, test_tokens = tokens or (None, None, None)
    token_dim = None if tokens is None else train_tokens.shape[-1]
    best = None
    for lr, weight_decay in itertools.product(lrs, weight_decays):
        torch.manual_seed(seed)
        probe = QAProbe(vocab_size, train.questions.shape[1], num_answers, token_dim, width,
                        depth)
        _fit(probe, train, train_tokens, num_clips=int(train.clip.max()) + 1, epochs=epochs,
             clips_per_batch=clips_per_batch, lr=lr, weight_decay=weight_decay,
             generator=torch.Generator().manual_seed(seed))
        val_acc = (predict(probe, val, val_tokens) == val.answers).float().mean().item()
        if best is None or val_acc > best.val_acc:
            hits = predict(probe, test, test_tokens) == test.answers
            best = QAResult(hits.float().mean().item(), val_acc,
                            per_type_accuracy(hits, test.types, num_types), lr, weight_decay)
    return best
