"""The QA probe as `jepalab vqa` fits it (both lrs, best on val) on more V-JEPA seeds, their
rows alone (no baselines): python qa_seeds.py RUN [RUN ...]; output: qa-seeds-*.jsonl."""
import json, sys
from jepalab import load
from jepalab.probe import run_config
from jepalab.data.video_qa import load_video_qa
from jepalab.vqa import answer_questions, whitened_tokens
for run in sys.argv[1:]:
    cfg = run_config(run)
    data = load_video_qa(image_size=cfg.data.image_size, frames=cfg.data.frames)
    r = answer_questions(data, whitened_tokens(load(run), data))
    print(json.dumps(dict(run=run, test=r.test_acc, val=r.val_acc, lr=r.lr,
                          per_type=dict(zip(data.types, r.per_type)))), flush=True)
