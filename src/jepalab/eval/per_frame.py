"""An image encoder read frame by frame on clips: the per-frame baseline of the video table.

A video encoder that learned motion should beat an image encoder that saw the same frames
one at a time. `PerFrame` gives such an image encoder the interface the probes read
(`features`, `patch_tokens`) on clips (B, T, 3, H, W):

  tokens of every frame  each frame's patch tokens, tagged with their frame (a one-hot of
                         the frame index appended to every token, so the attentive probe can
                         tell first from last; padded to a multiple of 4 for its heads);
                         pooled features are the frames' pooled features side by side (T*D)
  time-averaged          tokens and pooled features averaged over the frames (what an image
                         model gives when motion is averaged away)
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

HEADS = 4  # the attentive probe's heads: the token width must divide by them


class PerFrame(nn.Module):
    def __init__(self, encoder: nn.Module, average_time: bool):
        super().__init__()
        self.encoder, self.average_time = encoder, average_time

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, D) time-averaged, else (B, T*D): each frame's pooled features in order."""
        return self.pooled_and_patches(clips)[0]

    def patch_tokens(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, N, D) time-averaged, else (B, T*N, D + T'): every frame's tokens with its
        one-hot frame index (T' = T rounded up to a multiple of HEADS)."""
        return self.pooled_and_patches(clips)[1]

    def pooled_and_patches(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`features` and `patch_tokens` from one pass of the image encoder over the frames."""
        if clips.ndim != 5:
            raise ValueError(f"PerFrame reads clips (B, T, C, H, W), got {tuple(clips.shape)}")
        b, t = clips.shape[:2]
        pooled, tokens = self.encoder.pooled_and_patches(clips.flatten(0, 1))
        pooled, tokens = pooled.view(b, t, -1), tokens.view(b, t, *tokens.shape[1:])
        if self.average_time:
            return pooled.mean(1), tokens.mean(1)
        n = tokens.shape[2]
        when = F.one_hot(torch.arange(t, device=tokens.device), -(-t // HEADS) * HEADS)
        when = when.to(tokens.dtype)[None, :, None].expand(b, t, n, -1)
        return pooled.flatten(1), torch.cat([tokens, when], -1).flatten(1, 2)
