"""Quick screen (quick_screen.py's) of a V-JEPA run's context encoder, read from its
model.safetensors, and with --target of its target encoder: python context_screen.py RUN"""
import sys

import torch
from quick_screen import screen
from safetensors.torch import load_file

from jepalab import checkpoint, load
from jepalab.build import backbone_spec, load_data
from jepalab.nn.vit import VisionTransformer
from jepalab.probe import run_config

torch.set_num_threads(1)
run = sys.argv[1]
cfg = run_config(run)
data = load_data(cfg)
state = load_file(checkpoint.latest(run) / "model.safetensors")
context = VisionTransformer(backbone_spec(cfg)).eval()
context.load_state_dict({k[len("context_encoder."):]: v for k, v in state.items()
                         if k.startswith("context_encoder.")})
screen(run + ":context", context, data)
if "--target" in sys.argv:
    screen(run + ":target", load(run), data)
