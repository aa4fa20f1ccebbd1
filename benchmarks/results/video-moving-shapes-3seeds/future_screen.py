"""Screen: V-JEPA with a predict-the-future mask (context = the first half of the time
slots at every place, targets = the rest), alone (FUTURE=F1: both of the step's terms) or
in place of the long-range tubes (FUTURE=F2: short-range tubes + the future mask).

    FUTURE=F2 python future_screen.py train vjepa-moving-shapes train.threads=1 train.run_dir=R
    python quick_screen.py R
"""
import os
import sys

import torch

from jepalab import masks
from jepalab.cli import main
from jepalab.methods import vjepa

VARIANT = os.environ["FUTURE"]
TUBES = vjepa.TubeMaskConfig.draw_masks


def future(batch, grid, device):
    frames, height, width = grid
    tokens = torch.arange(frames * height * width)
    half = (frames // 2) * height * width
    context, target = (t.expand(batch, -1).contiguous() for t in (tokens[:half], tokens[half:]))
    return masks.to_device(context, device), masks.to_device(target, device)


def draw(self, batch, grid, device):
    tubes = TUBES(self, batch, grid, device)
    if VARIANT == "F1":
        return [future(batch, grid, device)] * 2
    return [tubes[0], future(batch, grid, device)]


vjepa.TubeMaskConfig.draw_masks = draw
if __name__ == "__main__":
    sys.exit(main())
