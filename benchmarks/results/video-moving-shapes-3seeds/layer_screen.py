"""Layer screen: the quick screen (pooled linear on 10k clips, one attentive setting on 3k)
on the tokens after each block of an encoder (0: the patch embedding with its positions),
each layer's tokens layer-normed without affine as the final norm does the last one.

    python layer_screen.py RUN [--random] [--whiten] [--depths 0,4]

The attentive column reads the raw tokens; --whiten adds the probe on the tokens
PCA-whitened with the training clips' mean and covariance (`probes.whiten`, the probe's
default now): the same information, every direction at unit variance.
"""
import json
import sys

import torch
from quick_screen import attentive, tokens

from jepalab import load
from jepalab.build import backbone_spec, load_data
from jepalab.eval.collapse import rankme
from jepalab.eval.probes import extract_features, linear_probe
from jepalab.nn.vit import VisionTransformer
from jepalab.probe import run_config

torch.set_num_threads(1)


def truncated(encoder, depth):
    """A copy of `encoder` (same weights) with only its first `depth` blocks, read through a
    layer norm without affine where it stops early (the encoder's own final norm after its
    last block): its `features` and `pooled_and_patches` are the encoder's own."""
    layer = VisionTransformer(encoder.spec)
    layer.load_state_dict(encoder.state_dict())
    layer.blocks = layer.blocks[:depth]
    if depth < len(encoder.blocks):
        layer.norm = torch.nn.LayerNorm(encoder.embed_dim, elementwise_affine=False)
    return layer


def screen(name, enc, data, depths, whitened):
    for depth in depths:
        layer = truncated(enc, depth)
        f = [extract_features(layer, x) for x in (data.train.images[:10000], data.val.images,
                                                  data.test.images)]
        lin = linear_probe(f[0], data.train.labels[:10000], f[1], data.val.labels, f[2],
                           data.test.labels, num_classes=10).test_acc
        t = tokens(layer, data)
        out = dict(name=name, depth=depth, linear=round(lin, 3),
                   attentive=round(attentive(t, data, whiten=False), 3),
                   token_rankme=round(rankme(t[2].flatten(0, 1)[:20000]), 1))
        if whitened:
            out["attentive_whitened"] = round(attentive(t, data), 3)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    run = sys.argv[1]
    cfg = run_config(run)
    data = load_data(cfg)
    whitened = "--whiten" in sys.argv
    depths = None
    if "--depths" in sys.argv:
        depths = [int(d) for d in sys.argv[sys.argv.index("--depths") + 1].split(",")]
    if "--random" in sys.argv:
        torch.manual_seed(0)
        enc, run = VisionTransformer(backbone_spec(cfg)), "random"
    else:
        enc = load(run)
    screen(run, enc, data, depths or range(len(enc.blocks) + 1), whitened)
