"""Screen: is V-JEPA's attentive probe below random init's because its tokens are
ill-conditioned for the probe? quick_screen.py's attentive probe, on the raw tokens and on
tokens standardised per dimension with the training clips' mean and std, and on tokens
PCA-whitened (the probe's default since this screen), for a random-init encoder and the runs
given.

    python whiten_screen.py RUN...
"""
import json
import sys

import torch
from quick_screen import attentive, tokens

from jepalab import load
from jepalab.build import backbone_spec, load_data
from jepalab.nn.vit import VisionTransformer
from jepalab.probe import run_config


def screen(name, enc, data):
    t = tokens(enc, data)
    mean, std = t[0].mean(dim=(0, 1)), t[0].std(dim=(0, 1))
    standardised = [(x - mean) / (std + 1e-6) for x in t]
    out = {"name": name, "raw": round(attentive(t, data, whiten=False), 3),
           "standardised": round(attentive(standardised, data, whiten=False), 3),
           "whitened": round(attentive(t, data), 3),
           "std_spread": round((std.max() / std.min()).item(), 1)}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    cfg = run_config(sys.argv[1])
    data = load_data(cfg)
    if sys.argv[2:3] == ["random"]:
        torch.manual_seed(0)
        screen("random", VisionTransformer(backbone_spec(cfg)), data)
    for run in sys.argv[1:]:
        if run != "random":
            screen(run, load(run), data)
