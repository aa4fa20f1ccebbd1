"""I-JEPA's masked-token predictor: a narrow ViT over context tokens plus mask tokens."""
from __future__ import annotations

import torch
import torch.nn as nn

from jepalab.nn.vit import Block, gather_tokens, init_transformer, sincos_2d


class MaskedPredictor(nn.Module):
    """Predict target-token embeddings from context tokens (I-JEPA, Assran et al. 2023, Sec. 3).

    Context tokens (B, Nc, D) are projected to the predictor width and given their
    positions; each target position gets the one learned mask token plus its position.
    With M target blocks the context is repeated once per block, so every block is
    predicted independently from the same context, as in the reference implementation.
    """

    def __init__(self, embed_dim: int, grid: tuple[int, int], width: int = 96, depth: int = 3,
                 num_heads: int = 4):
        super().__init__()
        self.predictor_embed = nn.Linear(embed_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.register_buffer("predictor_pos_embed", sincos_2d(width, grid)[None])
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
