"""Screen: LeJEPA's multi-view objective on clips, in place of V-JEPA's tube prediction.

Each clip gives 2 global views (crop scale 0.3-1, 32 px) and L local views (crop scale
0.1-0.4, 16 px); crop and colours drawn once per clip and view, every frame alike (colours:
a random channel order, a gain in [0.5, 1.5] and an offset ~ N(0, 0.5) per channel, in
normalised units; no flip, which would swap the classes). Every view's projected, pooled
embedding predicts the mean of the global views' and SIGReg keeps them an isotropic
Gaussian (losses.lejepa, lambda 0.05). What two views of a clip share is its shape and its
motion, not its colours or its place. The context encoder is what the probes read.

    python multiview_screen.py train vjepa-moving-shapes train.threads=1 train.run_dir=R
    python quick_screen.py R
"""
import os
import sys

import torch
from scrambled_context_screen import scramble

from jepalab import losses
from jepalab.cli import main
from jepalab.data.views import crop_flip
from jepalab.methods import StepOutput, vjepa
from jepalab.nn.heads import mlp

LOCALS = int(os.environ.get("LOCALS", "2"))
LAM = float(os.environ.get("LAM", "0.05"))


original_init = vjepa.Method.__init__


def __init__(self, cfg, spec, num_classes):
    original_init(self, cfg, spec, num_classes)
    self.global_view = crop_flip(32, (0.3, 1.0))
    self.local_view = crop_flip(16, (0.1, 0.4))
    self.projector = mlp(self.context_encoder.embed_dim, 512, 64, layers=3)
    self.target_encoder.requires_grad_(False)


def forward(self, batch):
    clips, n = batch["clips"], len(batch["clips"])
    encoder = self.context_encoder
    pooled = [encoder.features(torch.cat([scramble(self.global_view(clips)) for _ in range(2)]))]
    if LOCALS:
        pooled.append(encoder.features(torch.cat([scramble(self.local_view(clips))
                                                  for _ in range(LOCALS)])))
    z = self.projector(torch.cat(pooled)).view(-1, n, 64)
    loss, logs = losses.lejepa(z, num_global=2, lam=LAM)
    return StepOutput(loss, logs)


vjepa.Method.__init__ = __init__
vjepa.Method.forward = forward
vjepa.Method.on_step_end = lambda self, progress: None
vjepa.Method.eval_encoder = lambda self: self.context_encoder
if __name__ == "__main__":
    sys.exit(main())
