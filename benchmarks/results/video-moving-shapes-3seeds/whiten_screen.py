"""Screen: is V-JEPA's attentive probe below random init's because its tokens are
ill-conditioned for the probe? quick_screen.py's attentive probe, on the raw tokens and on
tokens standardised per dimension with the training clips' mean and std, for a random-init
encoder and the runs given.

    python whiten_screen.py RUN...
"""
import json
import sys

import torch

from jepalab import load
from jepalab.build import backbone_spec, load_data
from jepalab.eval.attentive import attentive_probe, extract_tokens
from jepalab.nn.vit import VisionTransformer
from jepalab.probe import run_config

torch.set_num_threads(1)


def screen(name, enc, data, n_att=3000):
    t = [extract_tokens(enc, x) for x in (data.train.images[:n_att], data.val.images,
                                          data.test.images)]
    mean = t[0].mean(dim=(0, 1))
    std = t[0].std(dim=(0, 1))
    out = {"name": name}
    for tag, toks in (("raw", t), ("standardised", [(x - mean) / (std + 1e-6) for x in t])):
        out[tag] = round(attentive_probe(toks[0], data.train.labels[:n_att], toks[1],
                                         data.val.labels, toks[2], data.test.labels,
                                         num_classes=10, epochs=6, lrs=(1e-3,),
                                         weight_decays=(0.01,)).test_acc, 3)
    out["std_spread"] = round((std.max() / std.min()).item(), 1)
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
