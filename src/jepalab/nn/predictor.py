"""Predictors: I-JEPA's masked-token predictor; the action-conditioned predictor of world models."""
from __future__ import annotations

import torch
import torch.nn as nn

from jepalab.nn.vit import (
    Attention,
    Block,
    Mlp,
    attention,
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
        """x (B, T*N, W): T frames of N tokens; cond (B, T, C): one condition per frame,
        its modulation computed once and shared by the frame's N tokens."""
        mod = self.modulation(cond)[:, :, None]                         # (B, T, 1, 6W)
        x, _ = frame_layer(self, x.unflatten(1, (cond.shape[1], -1)), mod, mask)
        return x.flatten(1, 2)


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
        cond = self.action_encoder(actions)                            # (B, T, W): per frame
        x = x.reshape(b, t * n, -1)
        mask = frame_causal_mask(t, n, self.history, x.device)
        for block in self.blocks:
            x = block(x, cond, mask)
        return self.output_proj(self.norm(x)).view(b, t, n, -1)

    def rollout(self, context: torch.Tensor, context_actions: torch.Tensor,
                plan: torch.Tensor, post=None) -> torch.Tensor:
        """`cached_rollout` of this predictor (below)."""
        return cached_rollout(self, context, context_actions, plan, post)

    # --- the three pieces of a frame's input, for cached_rollout --------------------------
    def frame_content(self, latents: torch.Tensor) -> torch.Tensor:
        """(·, N, D) -> (·, N, W): what a frame's tokens put in, wherever it sits."""
        return self.input_proj(latents) + self.space_embed[:, 0]

    def action_terms(self, actions: torch.Tensor):
        """(·, M, A) -> (nothing added to the tokens, per layer the AdaLN modulation
        (·, M, 1, 6W) of each frame's action)."""
        embedded = self.action_encoder(actions)
        return None, [blk.modulation(embedded)[:, :, None] for blk in self.blocks]

    def place_embed(self, start: int, stop: int) -> torch.Tensor:
        """(1, stop - start, 1, W): the time embedding of places start .. stop - 1."""
        return self.time_embed[:, start:stop]


def cached_rollout(predictor: nn.Module, context: torch.Tensor, context_actions: torch.Tensor,
                   plan: torch.Tensor, post=None) -> torch.Tensor:
    """What chaining a frame-causal predictor over a plan gives (`jepalab.world.rollout`),
    for B candidate plans that share one context, without the work they share.

    context (1, k, N, D) latents of the last k <= history frames, context_actions
    (1, k - 1, A) the blocks between them, plan (B, H, A); `post` maps each predicted
    latent before it is fed back (V-JEPA 2-AC's layer norm). Returns (B, H, N, D).
    The predictor gives `history`, `blocks` (pre-norm, `norm1 attn norm2 mlp`), `norm`,
    `output_proj` and a frame's input in three parts: `frame_content(latents)`,
    `action_terms(actions)` (tokens added, per-layer AdaLN modulations; either may be None)
    and `place_embed(start, stop)` (its place in the window). Exactly the same computation,
    rearranged: (1) frames whose action is a past one depend on nothing a candidate chose
    (the mask is causal), so they are computed once for all candidates and only their keys
    and values are broadcast; (2) each frame's content and each block's action terms are
    computed once, not once per window they appear in; (3) in the last layer only the
    newest frame's queries, attention output and MLP are computed, since only its
    prediction is read. Frames are still recomputed in every window they appear in: their
    place embedding is their place in the window, which shifts as the window slides.
    """
    b, horizon = plan.shape[:2]
    k, n = context.shape[1], context.shape[2]
    history, blocks = predictor.history, predictor.blocks
    if context.shape[0] != 1 or context_actions.shape[:2] != (1, k - 1):
        raise ValueError(f"rollout: one shared context (1, k, N, D) and its (1, k - 1, A) "
                         f"actions, got {tuple(context.shape)} and "
                         f"{tuple(context_actions.shape)}")
    if k > history:
        raise ValueError(f"rollout: {k} context frames, more than history {history}")
    # frame j < k - 1 took a past block (shared), frame j >= k - 1 the plan's block j - k + 1
    past_add, past_mods = predictor.action_terms(context_actions)      # (1, k - 1, ...)
    plan_add, plan_mods = predictor.action_terms(plan)                 # (B, H, ...)
    inputs = [predictor.frame_content(context[:, j]) for j in range(k)]  # (1 or B, N, W) each
    out = []
    for h in range(horizon):
        first = max(0, k + h - history)                               # the window's frames
        shared = range(first, k - 1)                                   # first .. k + h - 1
        mine = range(max(first, k - 1), k + h)
        places = len(shared) + len(mine)
        prefix = []                           # per layer: keys and values of the shared frames
        if shared:
            past = slice(shared.start, shared.stop)
            x = torch.stack([inputs[j] for j in shared], dim=1) + predictor.place_embed(
                0, len(shared))                                        # (1, S, N, W)
            if past_add is not None:
                x = x + past_add[:, past]
            frame = torch.arange(len(shared)).repeat_interleave(n)
            for layer, blk in enumerate(blocks):
                x, kv = frame_layer(blk, x, past_mods[layer][:, past] if past_mods else None,
                                    frame[:, None] >= frame[None, :])
                prefix.append(kv)
        chosen = slice(mine.start - k + 1, mine.stop - k + 1)
        x = torch.stack([inputs[j].expand(b, -1, -1) for j in mine], dim=1)  # (B, M, N, W)
        x = x + predictor.place_embed(len(shared), places)
        if plan_add is not None:
            x = x + plan_add[:, chosen]
        frame = torch.arange(places).repeat_interleave(n)
        mask = frame[len(shared) * n:, None] >= frame[None, :]
        for layer, blk in enumerate(blocks):
            last = layer == len(blocks) - 1   # only the newest frame is read
            x, _ = frame_layer(blk, x, plan_mods[layer][:, chosen] if plan_mods else None,
                               mask[-n:] if last else mask,
                               prefix[layer] if prefix else None, last)
        nxt = predictor.output_proj(predictor.norm(x[:, -1]))          # (B, N, D)
        if post is not None:
            nxt = post(nxt)
        out.append(nxt)
        inputs.append(predictor.frame_content(nxt))
    return torch.stack(out, dim=1)


def frame_layer(block: nn.Module, x: torch.Tensor, mod: torch.Tensor | None,
                mask: torch.Tensor, prefix: tuple | None = None, last_only: bool = False):
    """One pre-norm block on M frames of N tokens, x (B, M, N, W), its norms modulated per
    frame by mod (B, M, 1, 6W) (an AdaLN block; None: a plain one): AdaLNBlock's forward,
    and cached_rollout's layer, which also lets the frames attend to
    `prefix` keys and values (1, heads, P, d) broadcast over the batch; with `last_only`,
    only the last frame's outputs are computed (`mask` then has its rows only). Returns
    (new x, this layer's keys and values of x)."""
    b, m, n, width = x.shape
    attn = block.attn
    heads = attn.num_heads
    h = block.norm1(x)
    if mod is not None:
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        h = h * (1 + scale1) + shift1
    q, k, v = attn.qkv(h).view(b, m * n, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    own = (k, v)
    if prefix is not None:
        k = torch.cat([prefix[0].expand(b, -1, -1, -1), k], dim=2)
        v = torch.cat([prefix[1].expand(b, -1, -1, -1), v], dim=2)
    if last_only:
        q, x, m = q[:, :, -n:], x[:, -1:], 1
        if mod is not None:
            gate1, shift2, scale2, gate2 = (t[:, -1:] for t in (gate1, shift2, scale2, gate2))
    out = attn.proj(attention(q, k, v, mask).transpose(1, 2).reshape(b, m, n, width))
    if mod is None:
        x = x + out
        return x + block.mlp(block.norm2(x)), own
    x = x + gate1 * out
    x = x + gate2 * block.mlp(block.norm2(x) * (1 + scale2) + shift2)
    return x, own
