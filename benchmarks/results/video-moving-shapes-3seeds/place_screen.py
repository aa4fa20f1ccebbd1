"""Does V-JEPA lose where/when each token is? Attentive probe with and without the tokens'
3D sin-cos positions concatenated; a linear probe of each token's own place (64 classes)."""
import sys, json, torch
torch.set_num_threads(1)
from jepalab import load
from jepalab.probe import run_config
from jepalab.build import backbone_spec, load_data
from jepalab.eval.probes import linear_probe
from jepalab.eval.attentive import extract_tokens, attentive_probe
from jepalab.nn.vit import VisionTransformer, sincos_3d

def screen(name, enc, data, grid, n_att=3000):
    tr, va, te = data.train.images[:n_att], data.val.images, data.test.images
    t = [extract_tokens(enc, x) for x in (tr, va, te)]
    ys = (data.train.labels[:n_att], data.val.labels, data.test.labels)
    out = dict(name=name)
    pos = sincos_3d(64, grid)[None]
    for tag, toks in (("tokens", t), ("tokens+pos", [torch.cat([x, pos.expand(len(x), -1, -1)], -1) for x in t])):
        r = attentive_probe(toks[0], ys[0], toks[1], ys[1], toks[2], ys[2], num_classes=10,
                            epochs=6, lrs=(1e-3,), weight_decays=(0.01,))
        out[f"attentive_{tag}"] = round(r.test_acc, 3)
    # where is each token? linear probe of the place index from the token alone
    n = t[0].shape[1]
    def flat(x, k): return x[:k].flatten(0, 1), torch.arange(n).repeat(k)
    a, b, c = flat(t[0], 500), flat(t[1], 200), flat(t[2], 200)
    out["place_linear"] = round(linear_probe(a[0], a[1], b[0], b[1], c[0], c[1], num_classes=n).test_acc, 3)
    print(json.dumps(out), flush=True)

run = sys.argv[1]
cfg = run_config(run)
data = load_data(cfg)
spec = backbone_spec(cfg)
if len(sys.argv) > 2:
    torch.manual_seed(0)
    screen("random", VisionTransformer(spec), data, spec.grid)
else:
    screen(run, load(run), data, spec.grid)
