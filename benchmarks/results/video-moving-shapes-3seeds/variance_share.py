"""Share of layer-normed token variance that varies across clips at a place (vs the whole),
for a random-init video ViT and the runs given: python variance_share.py RUN..."""
import sys, torch, torch.nn.functional as F
torch.set_num_threads(1)
from jepalab import load
from jepalab.probe import run_config
from jepalab.build import backbone_spec, load_data
from jepalab.nn.vit import VisionTransformer
from jepalab.data.views import to_float
if len(sys.argv) < 2: sys.exit("usage: python variance_share.py RUN... (the first run's data)")
cfg = run_config(sys.argv[1]); data = load_data(cfg)
x = to_float(data.val.images[:256])
torch.manual_seed(0)
encs = {"random": VisionTransformer(backbone_spec(cfg))}
for r in sys.argv[1:]: encs[r] = load(r)
for name, enc in encs.items():
    enc.eval()
    with torch.no_grad(): t = enc.patch_tokens(x) if hasattr(enc, "patch_tokens") else enc(x)
    t = F.layer_norm(t, t.shape[-1:])           # (B, N, D)
    total = t.var(dim=(0, 1), correction=0).sum()
    across = t.var(0, correction=0).mean(0).sum()  # variance across clips at a place
    print(name, tuple(t.shape), f"total {total:.2f}  across clips at a place {across:.3f}  share {across/total:.3f}")
