"""Quick screen: pooled linear (10k) + attentive (3k train, 1 setting, 6 epochs) on test."""
import sys, json, torch
torch.set_num_threads(1)
from jepalab import load
from jepalab.probe import run_config
from jepalab.build import backbone_spec, load_data
from jepalab.eval.probes import extract_features, linear_probe
from jepalab.eval.attentive import extract_tokens, attentive_probe
from jepalab.eval.collapse import rankme
from jepalab.nn.vit import VisionTransformer

def tokens(enc, data, n_att=3000):
    """The frozen tokens of the screen's splits: n_att training clips, val, test."""
    return [extract_tokens(enc, x) for x in (data.train.images[:n_att], data.val.images,
                                             data.test.images)]

def attentive(t, data, whiten=True):
    """Test accuracy of the screen's one attentive setting on tokens(...) t (whitened first
    as the probe does by default since 2026-12-06; the screens before then read raw tokens:
    pass whiten=False to repeat them)."""
    return attentive_probe(t[0], data.train.labels[:len(t[0])], t[1], data.val.labels, t[2],
                           data.test.labels, num_classes=10, epochs=6, lrs=(1e-3,),
                           weight_decays=(0.01,), whiten=whiten).test_acc

def screen(name, enc, data, n_att=3000):
    tr, va, te = data.train.images[:10000], data.val.images, data.test.images
    f = [extract_features(enc, x) for x in (tr, va, te)]
    lin = linear_probe(f[0], data.train.labels[:10000], f[1], data.val.labels, f[2], data.test.labels, num_classes=10).test_acc
    t = tokens(enc, data, n_att)
    att = attentive(t, data)
    tok_rank = rankme(t[2].flatten(0, 1)[:20000])
    print(json.dumps(dict(name=name, linear=round(lin, 3), attentive=round(att, 3),
                          rankme=round(rankme(f[2]), 1), token_rankme=round(tok_rank, 1))), flush=True)

def screen_run(run, with_random=False):
    """The screen of a run's encoder, and first of a random-init one of its size."""
    cfg = run_config(run)
    data = load_data(cfg)
    if with_random:
        torch.manual_seed(0)
        screen("random", VisionTransformer(backbone_spec(cfg)), data)
    screen(run, load(run), data)

if __name__ == "__main__":
    screen_run(sys.argv[1], with_random=len(sys.argv) > 2)
