"""DINO-WM-style world model (Zhou et al. 2024): a predictor over the patch tokens of a frozen
pretrained encoder, its action concatenated to every token. The frozen-encoder baseline.

Per window of T frames (`data.window`, `data.frameskip` apart) and the T - 1 block actions
between them:
  z_t = ViT(frame_t) patch tokens                     (N, D); frozen, no norm beyond the ViT's
  e_t = Linear(a_t)                                   a 10-number action embedding
  ẑ_{t+1} = predictor([z_<=t ; e_<=t])               e_t concatenated to each token of frame
                                                      t; causal over `history` frames
  loss = mean_t ||ẑ_{t+1} - z_{t+1}||² / (N D)        teacher forcing only
With `proprio_dim` P > 0 the agent's proprioception (the data's proprio, e.g. PushT's agent
position and velocity) joins every token as P more channels, as DINO-WM's proprio embedding
does: z_t = [tokens ; proprio_scale * standardised p_t], predicted and scored like the rest,
so the planner's cost holds the agent's state beside the image's (DINO-WM's objective adds
the proprio error to the visual one). The channels are the standardised numbers themselves,
not a learned embedding: nothing for the loss to shrink.
DINO-WM's encoder is DINOv2 ViT-S/14 (384 wide, 196 patches per frame); no weights can be
downloaded here, so the encoder is a trained jepalab run's (`method.encoder`: e.g. a LeWM or
an I-JEPA encoder) or a ViT at random init (`random`), frozen and kept as V-JEPA 2-AC's is
(world.vjepa_ac). DINO-WM's
predictor (6 layers, 16 heads, dropout 0.1, learned positions over its frames) runs at the
width of the concatenated token, 384 + 10 (+ 10 for proprioception); here the concatenated
token is projected to `predictor_width`, there is no dropout, and the defaults are scaled
for a CPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from jepalab.methods import StepOutput
from jepalab.nn.predictor import cached_rollout, frame_causal_mask
from jepalab.nn.vit import Block, ViTSpec, init_transformer
from jepalab.world import check_sizes
from jepalab.world.vjepa_ac import RANDOM_ENCODER, FrozenEncoder, check_encoder, token_statistics

DATA_KIND = "trajectories"


class ConcatPredictor(nn.Module):
    """From the tokens of frames 1..T and the action after each, predict the tokens of frames
    2..T+1. Each frame's action embedding is concatenated to each of its N tokens; the result
    is projected to `width`, given a learned position per (frame, token), and passed through
    `depth` pre-norm blocks under a block-causal mask (frame t sees t - history + 1 ... t)."""

    def __init__(self, embed_dim: int, action_dim: int, tokens: int, *, action_embed_dim: int = 10,
                 width: int = 128, depth: int = 3, num_heads: int = 4, history: int = 3,
                 max_frames: int = 16):
        super().__init__()
        self.history, self.max_frames, self.tokens = history, max_frames, tokens
        self.action_encoder = nn.Linear(action_dim, action_embed_dim)
        self.input_proj = nn.Linear(embed_dim + action_embed_dim, width)
        self.pos_embed = nn.Parameter(torch.zeros(1, max_frames, tokens, width))
        self.blocks = nn.ModuleList(Block(width, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.output_proj = nn.Linear(width, embed_dim)
        init_transformer(self, self.blocks)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, latents: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """latents (B, T, N, D), actions (B, T, A) -> predicted next latents (B, T, N, D)."""
        b, t, n, _ = latents.shape
        if t > self.max_frames or n != self.tokens:
            raise ValueError(f"ConcatPredictor: {t} frames of {n} tokens; it takes at most "
                             f"{self.max_frames} frames of {self.tokens} tokens")
        action = self.action_encoder(actions)[:, :, None].expand(-1, -1, n, -1)
        x = self.input_proj(torch.cat([latents, action], dim=-1)) + self.pos_embed[:, :t]
        x = x.reshape(b, t * n, -1)
        mask = frame_causal_mask(t, n, self.history, x.device)
        for block in self.blocks:
            x = block(x, mask)
        return self.output_proj(self.norm(x)).view(b, t, n, -1)

    def rollout(self, context: torch.Tensor, context_actions: torch.Tensor,
                plan: torch.Tensor, post=None) -> torch.Tensor:
        """`nn.predictor.cached_rollout` of this predictor: B plans from one context."""
        return cached_rollout(self, context, context_actions, plan, post)

    # --- the three pieces of a frame's input, for cached_rollout: input_proj of [z ; e]
    # split into its latent and its action columns (the same sum)
    def frame_content(self, latents: torch.Tensor) -> torch.Tensor:
        """(·, N, D) -> (·, N, W): the latent's share of input_proj."""
        return F.linear(latents, self.input_proj.weight[:, :latents.shape[-1]])

    def action_terms(self, actions: torch.Tensor):
        """(·, M, A) -> (the action's share of input_proj (·, M, 1, W), no modulation)."""
        embedded = self.action_encoder(actions)
        width = embedded.shape[-1]
        return F.linear(embedded, self.input_proj.weight[:, -width:],
                        self.input_proj.bias)[:, :, None], None

    def place_embed(self, start: int, stop: int) -> torch.Tensor:
        """(1, stop - start, N, W): the learned position of places start .. stop - 1."""
        return self.pos_embed[:, start:stop]


class ProprioChannels(nn.Module):
    """Proprio (M, P) as P channels joined to each of a frame's tokens (M, N, D) -> (M, N,
    D + P): standardised per number (mean and std of the first batch of frames it meets, as
    FrozenEncoder's token statistics, kept in the checkpoint) and multiplied by `scale`."""

    def __init__(self, dim: int, scale: float):
        super().__init__()
        self.dim, self.scale = dim, scale
        self.register_buffer("mean", torch.zeros(1, dim))
        self.register_buffer("std", torch.ones(1, dim))
        self.register_buffer("measured", torch.zeros((), dtype=torch.bool))
        self.pending = True
        self.register_load_state_dict_post_hook(ProprioChannels._loaded)

    @staticmethod
    def _loaded(module: ProprioChannels, keys) -> None:
        module.pending = not bool(module.measured)

    def forward(self, proprio: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        if proprio is None or proprio.shape != (len(tokens), self.dim):
            got = None if proprio is None else tuple(proprio.shape)
            raise ValueError(f"this DINO-WM-style model was trained with method.proprio_dim="
                             f"{self.dim}: it needs the agent's proprio ({len(tokens)}, "
                             f"{self.dim}) beside the frames, got {got}")
        proprio = proprio.to(tokens.dtype)
        if self.pending and len(proprio) > 1:
            mean, std = token_statistics(proprio[:, None])
            self.mean.copy_(mean)
            self.std.copy_(std)
            self.measured.fill_(True)
            self.pending = False
        channels = self.scale * (proprio - self.mean) / self.std
        return torch.cat([tokens, channels[:, None].expand(-1, tokens.shape[1], -1)], dim=-1)


@dataclass
class Config:
    PATHS = ("encoder",)            # stored absolute in a run's config (config.absolute_paths)
    PATH_WORDS = (RANDOM_ENCODER,)  # ... unless it is this word
    encoder: str = ""               # the frozen encoder: a jepalab run dir, encoder file, random
    history: int = 3                # frames of context the predictor sees (num_hist)
    action_embed_dim: int = 10      # what is concatenated to each token
    predictor_width: int = 128
    predictor_depth: int = 3
    predictor_heads: int = 4
    standardize: bool = False       # tokens standardised per place and channel (FrozenEncoder)
    pool: int = 1                   # k x k tokens averaged into one (FrozenEncoder)
    proprio_dim: int = 0            # > 0: the data's proprio joins every token (ProprioChannels)
    proprio_scale: float = 1.0      # its standardised channels times this

    def validate(self) -> None:
        check_encoder(self.encoder)
        check_sizes(self, ("history", "action_embed_dim", "predictor_width",
                           "predictor_depth", "predictor_heads", "pool"))
        if self.proprio_dim < 0:
            raise ValueError(f"method.proprio_dim must be >= 0 (0: no proprio), got "
                             f"{self.proprio_dim}")
        if not self.proprio_scale > 0:
            raise ValueError(f"method.proprio_scale must be > 0, got {self.proprio_scale}")


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, action_dim: int):
        super().__init__()
        self.cfg, self.history = cfg, cfg.history
        self.encoder = FrozenEncoder(cfg.encoder, spec, cfg.standardize, cfg.pool)
        grid = self.encoder.grid
        self.proprio = (ProprioChannels(cfg.proprio_dim, cfg.proprio_scale)
                        if cfg.proprio_dim else None)
        self.predictor = ConcatPredictor(self.encoder.vit.embed_dim + cfg.proprio_dim, action_dim,
                                         grid[0] * grid[1],
                                         action_embed_dim=cfg.action_embed_dim,
                                         width=cfg.predictor_width, depth=cfg.predictor_depth,
                                         num_heads=cfg.predictor_heads, history=cfg.history)

    def forward(self, batch: dict) -> StepOutput:
        frames = batch["frames"]
        b, t = frames.shape[:2]
        proprio = batch["proprio"].flatten(0, 1) if self.proprio is not None else None
        if proprio is not None and proprio.shape[-1] != self.cfg.proprio_dim:
            raise ValueError(f"method.proprio_dim is {self.cfg.proprio_dim} but the data's "
                             f"proprio has {proprio.shape[-1]} numbers; set "
                             f"method.proprio_dim={proprio.shape[-1]}")
        z = self.encode(frames.flatten(0, 1), proprio).unflatten(0, (b, t))  # (B, T, N, D)
        prediction = F.mse_loss(self.predict(z[:, :-1], batch["actions"]), z[:, 1:])
        return StepOutput(prediction, {"prediction": prediction.detach()})

    def on_step_end(self, progress: float) -> None:
        pass

    def eval_encoder(self) -> nn.Module:
        return self.encoder.vit

    # --- world-model interface (see jepalab.world) ----------------------------------------
    def encode(self, pixels: torch.Tensor, proprio: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.encoder(pixels)
        return tokens if self.proprio is None else self.proprio(proprio, tokens)

    def predict(self, latents: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.predictor(latents, actions)

    def cached_rollout(self, context, context_actions, plan) -> torch.Tensor:
        return self.predictor.rollout(context, context_actions, plan)
