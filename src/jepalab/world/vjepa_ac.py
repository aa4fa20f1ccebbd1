"""V-JEPA 2-AC-style world model (Assran et al. 2025): an action-conditioned predictor
trained on the patch tokens of a frozen, pretrained encoder.

Per window of T frames (`data.window`, `data.frameskip` apart) and the T - 1 block actions
between them:
  z_t = LayerNorm(ViT(frame_t) patch tokens)          (N, D); frozen ViT, parameter-free norm
  ẑ_{t+1} = LayerNorm(predictor(z_<=t, a_<=t))        over all N tokens of each frame, block-
                                                      causal over `history` frames
  teacher forcing: ẑ_2..ẑ_T from the true z_1..z_{T-1}
  rollout: ẑ_2..ẑ_{1+k} from z_1 alone, each step fed the previous predictions (k =
           `rollout_steps`, the paper's auto_steps = 2)
  loss = mean |ẑ - z| (teacher forcing)  +  mean |ẑ - z| (rollout)      both L1, weight 1
The encoder is any trained jepalab ViT (`method.encoder`: a run directory or an
encoder.safetensors); it gets no gradient and stays in eval mode, and it is kept inside the
module, so a checkpoint of this method holds it. V-JEPA 2-AC's encoder is a V-JEPA 2 ViT-g
at 256 px; its predictor is 24 layers of width 1024 with 3D RoPE and takes the action and
the robot state as two extra tokens per frame. Here the one shared predictor
(nn.predictor.ActionPredictor) conditions on the action by AdaLN-zero instead, with 2D
sin-cos positions, and no state token; the defaults are scaled for a CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import jepalab
from jepalab.data.images import resize_uint8
from jepalab.data.views import to_float
from jepalab.distributed import world_mean
from jepalab.methods import StepOutput
from jepalab.nn.predictor import ActionPredictor
from jepalab.nn.vit import VisionTransformer, ViTSpec
from jepalab.world import check_sizes, rollout

DATA_KIND = "trajectories"
RANDOM_ENCODER = "random"
VALID_ENCODERS = ("a jepalab run directory (e.g. runs/lewm-two-room, from `jepalab train "
                  "lewm-two-room train.run_dir=runs/lewm-two-room`), one of its checkpoint-*/ "
                  "folders, an encoder.safetensors file, or `random` (a ViT of model.arch at "
                  "random init, drawn from train.seed: the random-features baseline)")


class FrozenEncoder(nn.Module):
    """A trained jepalab ViT (`jepalab.load(path)`), frozen: no parameter takes a gradient,
    and `train()` leaves it in eval mode. `forward(pixels uint8 (M, 3, H, W))` resizes the
    pixels to the encoder's own image size and returns its patch tokens (M, N, D).

    With `standardize`, each token's channels are standardised by their mean and standard
    deviation over frames at that place (N, D), measured once, on the first batch of frames
    the encoder sees (in training, the first training batch, over every process's share:
    `token_statistics`), and kept as buffers, so a checkpoint plans with the statistics it
    was trained with. A frozen encoder's tokens can be mostly what every frame shares (its
    positions, the static scene): on a LeWM encoder of Two-Room, 14x more variance within a
    frame than across frames, where the agent is. A predictor then learns the shared part
    and a latent cost sees nothing move; standardised, what changes between frames is what
    the loss and the planner's cost measure.

    With `pool` k > 1, each k x k square of tokens is averaged into one (before the
    standardisation): k^2 fewer tokens for the predictor and the planner, whose cost grows
    with the tokens a frame (V-JEPA 2-AC plans on a GPU; on 2 CPU cores 36 tokens a frame cost
    28 s a plan at its settings).

    A video encoder (V-JEPA's) sees each frame as a still clip: the frame repeated over one
    tubelet, as V-JEPA 2-AC encodes its frames."""

    def __init__(self, path: str, spec: ViTSpec, standardize: bool = False, pool: int = 1):
        super().__init__()
        where = Path(path)
        if path == RANDOM_ENCODER:
            self.vit = VisionTransformer(spec)
        elif not where.exists():
            raise FileNotFoundError(f"method.encoder: {path} does not exist; give "
                                    f"{VALID_ENCODERS}")
        else:
            self.vit = jepalab.load(where)
        own = self.vit.spec
        if (own.arch, own.patch_size) != (spec.arch, spec.patch_size):
            raise ValueError(f"method.encoder {path} is a {own.arch} with patches of "
                             f"{own.patch_size} px, but the config says model.arch={spec.arch} "
                             f"model.patch_size={spec.patch_size}; set model.arch={own.arch} "
                             f"model.patch_size={own.patch_size}")
        rows, cols = own.grid[-2:]
        if pool < 1 or rows % pool or cols % pool:
            divisors = [k for k in range(1, min(rows, cols) + 1) if rows % k == 0 == cols % k]
            raise ValueError(f"method.pool={pool} must divide the encoder's {rows} x {cols} "
                             f"token grid ({path}); valid: {divisors}")
        self.pool = pool
        self.vit.requires_grad_(False)
        self.train(False)
        self.standardize = standardize
        if standardize:
            tokens = self.grid[0] * self.grid[1]
            self.register_buffer("token_mean", torch.zeros(tokens, self.vit.embed_dim))
            self.register_buffer("token_std", torch.ones(tokens, self.vit.embed_dim))
            self.register_buffer("measured", torch.zeros((), dtype=torch.bool))
            self.pending = True  # the buffers' state on the host: no read of it per call
            self.register_load_state_dict_post_hook(FrozenEncoder._loaded)

    @staticmethod
    def _loaded(module: FrozenEncoder, keys) -> None:
        module.pending = not bool(module.measured)  # one host read, when a checkpoint loads

    def train(self, mode: bool = True) -> FrozenEncoder:
        return super().train(False)

    @property
    def grid(self) -> tuple[int, int]:
        """A frame's token grid (rows, columns), after pooling."""
        rows, cols = self.vit.spec.grid[-2:]
        return rows // self.pool, cols // self.pool

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        images = to_float(resize_uint8(pixels, self.vit.spec.image_size))
        spec = self.vit.spec
        if spec.video:  # a still clip: the frame repeated over one tubelet
            images = images[:, None].expand(-1, spec.tubelet, -1, -1, -1)
        tokens = self.vit.patch_tokens(images)
        if self.pool > 1:
            rows, cols = self.vit.spec.grid[-2:]
            square = tokens.transpose(1, 2).unflatten(2, (rows, cols))        # (M, D, rows, cols)
            tokens = F.avg_pool2d(square, self.pool).flatten(2).transpose(1, 2)
        if not self.standardize:
            return tokens
        if self.pending and len(tokens) > 1:  # the first batch of frames measures
            mean, std = token_statistics(tokens)
            self.token_mean.copy_(mean)
            self.token_std.copy_(std)
            self.measured.fill_(True)
            self.pending = False
        return (tokens - self.token_mean) / self.token_std


def token_statistics(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std (N, D) of frames' tokens (M, N, D) over the frames of every
    process (each holding M), so all ranks standardise alike; a std under a tenth of the
    mean std is raised to it (places that almost never change are not blown up)."""
    mean = world_mean(tokens.mean(0))
    std = world_mean((tokens - mean).square().mean(0)).sqrt()
    return mean, std.clamp_min(0.1 * std.mean() + 1e-6)


def check_encoder(encoder: str) -> None:
    """Config-time check of `method.encoder`: given. Whether it exists is checked when the
    method is built (as the data file is when it is read), so recipes validate anywhere."""
    if not encoder:
        raise ValueError(f"method.encoder is required: {VALID_ENCODERS}")


@dataclass
class Config:
    PATHS = ("encoder",)            # stored absolute in a run's config (config.absolute_paths)
    PATH_WORDS = (RANDOM_ENCODER,)  # ... unless it is this word
    encoder: str = ""               # the frozen encoder: a jepalab run dir, encoder file, random
    history: int = 3                # frames of context the predictor sees
    rollout_steps: int = 2          # frames predicted autoregressively in the rollout loss
    predictor_width: int = 128
    predictor_depth: int = 3
    predictor_heads: int = 4
    standardize: bool = False       # tokens standardised per place and channel (FrozenEncoder)
    pool: int = 1                   # k x k tokens averaged into one (FrozenEncoder)

    def validate(self) -> None:
        check_encoder(self.encoder)
        check_sizes(self, ("history", "predictor_width", "predictor_depth", "predictor_heads",
                           "pool"))
        if self.rollout_steps < 0:
            raise ValueError(f"method.rollout_steps must be >= 0 (0: no rollout loss), got "
                             f"{self.rollout_steps}")


class Method(nn.Module):
    def __init__(self, cfg: Config, spec: ViTSpec, action_dim: int):
        super().__init__()
        self.cfg, self.history = cfg, cfg.history
        self.encoder = FrozenEncoder(cfg.encoder, spec, cfg.standardize, cfg.pool)
        self.predictor = ActionPredictor(self.encoder.vit.embed_dim, action_dim,
                                         width=cfg.predictor_width, depth=cfg.predictor_depth,
                                         num_heads=cfg.predictor_heads, history=cfg.history,
                                         grid=self.encoder.grid)

    def forward(self, batch: dict) -> StepOutput:
        frames, actions = batch["frames"], batch["actions"]
        b, t = frames.shape[:2]
        if self.cfg.rollout_steps > t - 1:
            raise ValueError(f"method.rollout_steps {self.cfg.rollout_steps} needs windows of at "
                             f"least {self.cfg.rollout_steps + 1} frames, but data.window is "
                             f"{t}; raise data.window or lower method.rollout_steps")
        z = self.encode(frames.flatten(0, 1)).unflatten(0, (b, t))      # (B, T, N, D)
        teacher = (self.predict(z[:, :-1], actions) - z[:, 1:]).abs().mean()
        loss, logs = teacher, {"teacher_forcing": teacher.detach()}
        k = self.cfg.rollout_steps
        if k:
            rolled = rollout(self, z[:, :1], actions[:, :0], actions[:, :k])
            free = (rolled - z[:, 1:k + 1]).abs().mean()
            loss, logs["rollout"] = loss + free, free.detach()
        return StepOutput(loss, logs)

    def on_step_end(self, progress: float) -> None:
        pass

    def eval_encoder(self) -> nn.Module:
        return self.encoder.vit

    # --- world-model interface (see jepalab.world) ----------------------------------------
    def encode(self, pixels: torch.Tensor, proprio: torch.Tensor | None = None) -> torch.Tensor:
        """(proprio is not read: this model sees pixels only)"""
        return _normed(self.encoder(pixels))

    def predict(self, latents: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return _normed(self.predictor(latents, actions))

    def cached_rollout(self, context, context_actions, plan) -> torch.Tensor:
        return self.predictor.rollout(context, context_actions, plan, post=_normed)


def _normed(tokens: torch.Tensor) -> torch.Tensor:
    """V-JEPA 2's layer norm (no affine) over each token's features."""
    return F.layer_norm(tokens, tokens.shape[-1:])
