"""Screen: V-JEPA whose context encoder sees the clip with its colours scrambled (per clip,
every frame alike: a random channel order, a gain in [0.5, 1.5] and an offset ~ N(0, 0.5)
per channel, in normalised units), while the target encoder sees the clip itself: the
clip's colours, most of the targets' variance, can no longer be read from the context.

    python scrambled_context_screen.py train vjepa-moving-shapes train.threads=1 train.run_dir=R
    python quick_screen.py R
"""
import sys

import torch
import torch.nn.functional as F

from jepalab import losses
from jepalab.cli import main
from jepalab.methods import StepOutput, vjepa
from jepalab.nn.vit import gather_tokens


def scramble(x):  # (B, T, 3, H, W)
    b = x.shape[0]
    order = torch.rand(b, 3).argsort(1)
    x = torch.gather(x, 2, order[:, None, :, None, None].expand_as(x))
    gain = torch.empty(b, 1, 3, 1, 1).uniform_(0.5, 1.5)
    return x * gain + 0.5 * torch.randn(b, 1, 3, 1, 1)


def forward(self, batch):
    cfg = self.cfg
    x = self.view(batch["clips"])
    with torch.no_grad():
        tokens = self.target_encoder(x)
        tokens = F.layer_norm(tokens, tokens.shape[-1:])
    seen = scramble(x)
    terms, logs = [], {}
    for name, (context_idx, target_idx) in zip(("short", "long"),
                                               cfg.draw_masks(x.shape[0], self.grid, x.device)):
        context = self.context_encoder(seen, keep=context_idx)
        prediction = self.predictor(context, context_idx, target_idx[:, None])[:, 0]
        terms.append(losses.jepa_latent(prediction, gather_tokens(tokens, target_idx),
                                        kind=cfg.loss))
        logs[f"{name}_loss"] = terms[-1].detach()
    return StepOutput(torch.stack(terms).mean(), logs)


if __name__ == "__main__":
    vjepa.Method.forward = forward  # here, so that other screens can import scramble
    sys.exit(main())
