"""QA probe: train/val/test accuracy at 6000 and more training clips (whitened tokens, one
setting): python qa_size_screen.py RUN N_TRAIN [LR EPOCHS] [--random]."""
import json, sys, time, torch
from jepalab import load
from jepalab.probe import run_config
from jepalab.data.video_qa import load_video_qa
from jepalab.eval import probes
from jepalab.eval.attentive import extract_tokens
from jepalab.eval.qa import QAProbe, _fit, predict, per_type_accuracy
from jepalab.eval.baselines import random_init
from jepalab.build import backbone_spec

run = sys.argv[1]
ntrain = int(sys.argv[2])
lr = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-3
epochs = int(sys.argv[4]) if len(sys.argv) > 4 else 20
cfg = run_config(run)
enc = random_init(backbone_spec(cfg), 0) if "--random" in sys.argv else load(run)
data = load_video_qa(image_size=cfg.data.image_size, frames=cfg.data.frames,
                     sizes={"train": ntrain})
t0 = time.perf_counter()
tokens = probes.whiten(*(extract_tokens(enc, s.clips) for s in (data.train, data.val, data.test)))
t1 = time.perf_counter()
torch.manual_seed(0)
probe = QAProbe(len(data.vocab), data.train.questions.shape[1], len(data.answers), tokens[0].shape[-1])
_fit(probe, data.train, tokens[0], num_clips=ntrain, epochs=epochs, clips_per_batch=64, lr=lr,
     weight_decay=0.05, generator=torch.Generator().manual_seed(0))
acc = {}
for name, split, tok in (("train", data.train, tokens[0]), ("val", data.val, tokens[1]), ("test", data.test, tokens[2])):
    hits = predict(probe, split, tok) == split.answers
    acc[name] = round(hits.float().mean().item(), 4)
    if name == "test":
        acc["types"] = [round(x, 3) for x in per_type_accuracy(hits, split.types, len(data.types))]
print(json.dumps(dict(run=run, random="--random" in sys.argv, ntrain=ntrain, lr=lr, epochs=epochs,
                      questions=len(data.train.answers), extract_s=round(t1 - t0),
                      fit_s=round(time.perf_counter() - t1), **acc)), flush=True)
