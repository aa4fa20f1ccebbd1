"""Vision Transformer backbone for images and clips, fixed sin-cos positions, token subsets.

One class: an image (B, 3, H, W) is cut into p x p patches (2D positions); a clip
(B, T, 3, H, W), when the spec has frames > 1, into tubelets of `tubelet` frames x p x p
(a `Conv3d`, 3D positions, tokens in (time, row, column) raster order), as V-JEPA does.

Parameter names follow timm's `VisionTransformer` (patch_embed.proj, pos_embed,
blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}, norm), so a state dict
exported from here loads into timm with `global_pool="avg", class_token=False` (with a
class token: `global_pool="token", class_token=True, no_embed_class=True`).
Attention is `F.scaled_dot_product_attention` on GPUs (flash / memory-efficient kernels)
and plain matmuls on CPUs (see `attention`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# name -> (embed_dim, depth, num_heads). "nano" and "micro" are sized for CPUs.
ARCHS = {
    "vit_nano": (128, 4, 4),
    "vit_micro": (192, 6, 3),
    "vit_tiny": (192, 12, 3),
    "vit_small": (384, 12, 6),
    "vit_base": (768, 12, 12),
}


def sincos_2d(embed_dim: int, grid: tuple[int, int],
              base_grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Fixed 2D sin-cos position embedding, (H*W, embed_dim), rows in raster order.

    Half the channels encode the row, half the column; each half is [sin(p w_k), cos(p w_k)]
    with w_k = 10000^(-k / (D/4)) as in MAE / I-JEPA. With `base_grid`, a grid of another
    size is spread over the base grid's extent (cell centres aligned, as interpolating a
    learned table does), so a small multi-crop view covers the same range of positions.
    """
    if embed_dim % 4:
        raise ValueError(f"sin-cos positions need embed_dim divisible by 4, got {embed_dim}")
    quarter = embed_dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    base = base_grid or grid
    axes = [(torch.arange(n, dtype=torch.float64) + 0.5) * (b / n) - 0.5
            for n, b in zip(grid, base)]
    rows, cols = torch.meshgrid(*axes, indexing="ij")
    parts = []
    for position in (rows.flatten(), cols.flatten()):
        angle = position[:, None] * omega[None]
        parts += [angle.sin(), angle.cos()]
    return torch.cat(parts, dim=1).float()


def sincos_3d(embed_dim: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """Fixed 3D sin-cos position embedding, (T*H*W, embed_dim), in (time, row, column)
    raster order: half the channels encode time, a quarter each the row and the column
    (V-JEPA's split), each part [sin(p w_k), cos(p w_k)] with w_k = 10000^(-k / (n/2))."""
    if embed_dim % 8:
        raise ValueError(f"3D sin-cos positions need embed_dim divisible by 8, got {embed_dim}")
    parts, axes = [], torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in grid),
                                     indexing="ij")
    for position, width in zip(axes, (embed_dim // 2, embed_dim // 4, embed_dim // 4)):
        half = width // 2
        omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64) / half)
        angle = position.flatten()[:, None] * omega[None]
        parts += [angle.sin(), angle.cos()]
    return torch.cat(parts, dim=1).float()


def gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """tokens (B, N, D), index (B, K) -> (B, K, D)."""
    return torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v for (B, H, N, d) inputs; `mask` True where allowed.

    On GPUs: `F.scaled_dot_product_attention` (flash / memory-efficient kernels). On CPUs,
    for the sequences these models see, plain matmuls are faster than its fused kernel
    (benchmarks/attention.py, I-JEPA steps on 2 cores: 1.02-1.18x in fp32 at 16-196 tokens,
    1.2-1.8x in bf16 on AVX512-BF16), so they are used there.
    """
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, D); `mask` (N, N) bool, True where a query may attend to a key."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).unbind(2)
        out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)); `mask` (N, N)
    bool, True where a query may attend to a key (None: everywhere)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, num_heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


def init_transformer(module: nn.Module, blocks: nn.ModuleList) -> None:
    """Truncated-normal(0.02) linears, unit LayerNorms, residual projections scaled by depth."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for layer, block in enumerate(blocks, start=1):
        block.attn.proj.weight.data.div_(math.sqrt(2.0 * layer))
        block.mlp.fc2.weight.data.div_(math.sqrt(2.0 * layer))


@dataclass(frozen=True)
class ViTSpec:
    arch: str = "vit_nano"
    image_size: int = 32
    patch_size: int = 4
    in_chans: int = 3
    class_token: bool = False  # a learned [CLS] token first; features() is its output
    frames: int = 1            # > 1: the input is a clip (B, frames, C, H, W)
    tubelet: int = 2           # frames per token of a clip (V-JEPA: 2)

    @property
    def video(self) -> bool:
        return self.frames > 1

    @property
    def grid(self) -> tuple[int, ...]:
        """Tokens along each axis: (rows, columns), or (time, rows, columns) for a clip."""
        space = (self.image_size // self.patch_size,) * 2
        return (self.frames // self.tubelet, *space) if self.video else space

    @property
    def dims(self) -> tuple[int, int, int]:
        return ARCHS[self.arch]


class VisionTransformer(nn.Module):
    """Patch embedding + fixed positions + pre-norm blocks + final norm; a class token only
    when the spec asks for one (LeWM's encoder), without a position (timm's no_embed_class).

    `forward(images, keep=None)` returns tokens (B, N, D), the class token first when there
    is one (`num_prefix` = 1); with `keep` (B, K) indices into the raster-ordered patch grid,
    only those patches are embedded and encoded. Images of another size than the spec's
    (multiples of the patch) are accepted. `features(images)` is the representation probes
    read: the class token's output, else the mean of the patch tokens.
    """

    def __init__(self, spec: ViTSpec):
        super().__init__()
        if spec.arch not in ARCHS:
            raise ValueError(f"unknown arch {spec.arch!r}; valid: {', '.join(ARCHS)}")
        if spec.image_size % spec.patch_size:
            raise ValueError(f"image_size {spec.image_size} is not a multiple of patch_size "
                             f"{spec.patch_size}")
        if spec.video and spec.frames % spec.tubelet:
            raise ValueError(f"frames {spec.frames} is not a multiple of tubelet {spec.tubelet}")
        self.spec = spec
        dim, depth, heads = spec.dims
        self.embed_dim = dim
        self.patch_embed = nn.Module()
        p = spec.patch_size
        self.patch_embed.proj = (nn.Conv3d(spec.in_chans, dim, (spec.tubelet, p, p),
                                           (spec.tubelet, p, p)) if spec.video
                                 else nn.Conv2d(spec.in_chans, dim, p, p))
        self.register_buffer("pos_embed", self.positions(spec.grid), persistent=True)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.num_prefix = int(spec.class_token)
        if spec.class_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        init_transformer(self, self.blocks)
        if spec.class_token:
            nn.init.normal_(self.cls_token, std=1e-6)

    @property
    def num_patches(self) -> int:
        return math.prod(self.spec.grid)

    def positions(self, grid: tuple[int, ...]) -> torch.Tensor:
        """(1, N, D) positions of a grid; an image grid of another size than the spec's (a
        multi-crop view) is spread over the spec's extent."""
        if grid == self.spec.grid and hasattr(self, "pos_embed"):
            return self.pos_embed
        if len(grid) == 3:
            table = sincos_3d(self.embed_dim, grid)
        else:
            table = sincos_2d(self.embed_dim, grid, self.spec.grid)
        return table[None].to(self.pos_embed if hasattr(self, "pos_embed") else table)

    def forward(self, images: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """images (B, C, H, W), or clips (B, T, C, H, W) for a video spec -> tokens."""
        if self.spec.video:
            if images.ndim != 5:
                raise ValueError(f"a video ViT takes clips (B, T, C, H, W), got "
                                 f"{tuple(images.shape)}")
            images = images.transpose(1, 2)  # Conv3d reads (B, C, T, H, W)
        x = self.patch_embed.proj(images)
        x = x.flatten(2).transpose(1, 2) + self.positions(tuple(x.shape[2:]))
        if keep is not None:
            x = gather_tokens(x, keep)
        if self.num_prefix:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.pooled_and_patches(images)[0]

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N, D) outputs of the patches alone (the class token dropped)."""
        return self.pooled_and_patches(images)[1]

    def pooled_and_patches(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`features` and `patch_tokens` from one forward pass (the attentive probe reads
        both)."""
        tokens = self.forward(images)
        pooled = tokens[:, 0] if self.num_prefix else tokens.mean(dim=1)
        return pooled, tokens[:, self.num_prefix:]
