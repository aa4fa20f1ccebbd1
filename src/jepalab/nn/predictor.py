"""Predictors: I-JEPA's masked-token predictor; the action-conditioned predictor of world models."""
from __future__ import annotations

import torch
import torch.nn as nn

from jepalab.nn.vit import (
    Attention,
    Block,
    Mlp,
    gather_tokens,
    init_transformer,
    sincos_2d,
    sincos_3d,
)


class MaskedPredictor(nn.Module):
    """Predict target-token embeddings from context tokens (I-JEPA, Assran et al. 2023, Sec. 3).

    Context tokens (B, Nc, D) are projected to the predictor width and given their
    positions; each target position gets the one learned mask token plus its position.
    With M target blocks the context is repeated once per block, so every block is
    predicted independently from the same context, as in the reference implementation.
    A (T, H, W) grid is a clip's (V-JEPA): 3D positions.
    """

    def __init__(self, embed_dim: int, grid: tuple[int, ...], width: int = 96, depth: int = 3,
                 num_heads: int = 4):
        super().__init__()
        self.predictor_embed = nn.Linear(embed_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        positions = sincos_3d(width, grid) if len(grid) == 3 else sincos_2d(width, grid)
        self.register_buffer("predictor_pos_embed", positions[None])
        self.predictor_blocks = nn.ModuleList(Block(width, num_heads) for _ in range(depth))
        self.predictor_norm = nn.LayerNorm(width, eps=1e-6)
        self.predictor_proj = nn.Linear(width, embed_dim)
        init_transformer(self, self.predictor_blocks)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, context: torch.Tensor, context_idx: torch.Tensor,
                target_idx: torch.Tensor) -> torch.Tensor:
        """context (B, Nc, D), context_idx (B, Nc), target_idx (B, M, Nt) -> (B, M, Nt, D)."""
        b, m, nt = target_idx.shape
        pos = self.predictor_pos_embed.expand(b, -1, -1)
        x = self.predictor_embed(context) + gather_tokens(pos, context_idx)
        x = x.repeat_interleave(m, dim=0)                                   # (B*M, Nc, W)
        flat_targets = target_idx.reshape(b * m, nt)
        queries = self.mask_token + gather_tokens(pos.repeat_interleave(m, 0), flat_targets)
        x = torch.cat([x, queries], dim=1)
        for block in self.predictor_blocks:
            x = block(x)
        out = self.predictor_proj(self.predictor_norm(x[:, -nt:]))
        return out.view(b, m, nt, -1)


def frame_causal_mask(frames: int, tokens: int, history: int,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """(T*N, T*N) bool attention mask over T frames of N tokens each: a token of frame t
    sees every token of frames t - history + 1 ... t (block-causal, a sliding window)."""
    t = torch.arange(frames, device=device).repeat_interleave(tokens)
    gap = t[:, None] - t[None, :]
    return (gap >= 0) & (gap < history)


class AdaLNBlock(nn.Module):
    """Pre-norm transformer block whose norms are shifted, scaled and whose branches are
    gated by a per-token condition, all three regressed from it and zero at initialisation
    (DiT's adaLN-Zero, Peebles & Xie 2023): every block starts as the identity."""

    def __init__(self, dim: int, num_heads: int, cond_dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * dim))

    def zero_init(self) -> None:
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond).chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1, mask)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class ActionPredictor(nn.Module):
    """Action-conditioned predictor: from the latents of frames 1..T and the action taken
    after each, predict the latents of frames 2..T+1 (LeWM's predictor; V-JEPA 2-AC's and
    DINO-WM's when each frame is N patch tokens).

    Each frame is N tokens of width `embed_dim` (N = 1 for a CLS embedding). Tokens are
    projected to `width`, get a learned per-frame time embedding (plus fixed 2D sin-cos
    positions when `grid` is given), then `depth` AdaLN-zero blocks conditioned on the
    frame's action embedding (an MLP of the block action), under a block-causal mask that
    lets frame t see frames t - history + 1 ... t.
    """

    def __init__(self, embed_dim: int, action_dim: int, *, width: int = 128, depth: int = 4,
                 num_heads: int = 4, history: int = 3, max_frames: int = 16,
                 grid: tuple[int, int] | None = None):
        super().__init__()
        self.history, self.max_frames = history, max_frames
        self.action_encoder = nn.Sequential(nn.Linear(action_dim, width), nn.SiLU(),
                                            nn.Linear(width, width))
        self.input_proj = nn.Linear(embed_dim, width)
        self.time_embed = nn.Parameter(torch.zeros(1, max_frames, 1, width))
        space = sincos_2d(width, grid)[None, None] if grid else torch.zeros(1, 1, 1, width)
        self.register_buffer("space_embed", space, persistent=False)
        self.blocks = nn.ModuleList(AdaLNBlock(width, num_heads, width) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.output_proj = nn.Linear(width, embed_dim)
        init_transformer(self, self.blocks)
        nn.init.trunc_normal_(self.time_embed, std=0.02)
        for block in self.blocks:
            block.zero_init()

    def forward(self, latents: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """latents (B, T, N, D), actions (B, T, A) -> predicted next latents (B, T, N, D)."""
        b, t, n, _ = latents.shape
        if t > self.max_frames:
            raise ValueError(f"ActionPredictor: {t} frames, more than max_frames "
                             f"{self.max_frames}")
        x = self.input_proj(latents) + self.time_embed[:, :t] + self.space_embed
        cond = self.action_encoder(actions)[:, :, None].expand(-1, -1, n, -1)
        x, cond = x.reshape(b, t * n, -1), cond.reshape(b, t * n, -1)
        mask = frame_causal_mask(t, n, self.history, x.device)
        for block in self.blocks:
            x = block(x, cond, mask)
        return self.output_proj(self.norm(x)).view(b, t, n, -1)
