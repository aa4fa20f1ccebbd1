"""`jepalab vqa`: video question answering on a video run's frozen tokens.

The clips of `data.video_qa` are rendered at the run's image size and frame count, every
encoder's tokens are extracted once, and the question-conditioned probe (`eval/qa.py`)
answers from them. Beside the run's encoder: a random-init ViT of the same spec (mean over
seeds), the question-only model (what the questions alone give), optionally an image run
read frame by frame (`frame_dir`, as `jepalab probe --per-frame`), and the answer prior.
Results go to RUN_DIR/vqa.json.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from jepalab import checkpoint, load
from jepalab.build import backbone_spec
from jepalab.data.video_qa import VideoQAData, load_video_qa
from jepalab.errors import RunKindError
from jepalab.eval import probes
from jepalab.eval.attentive import extract_tokens
from jepalab.eval.baselines import random_init
from jepalab.eval.per_frame import PerFrame
from jepalab.eval.qa import QAResult, qa_probe
from jepalab.probe import per_frame_encoder, run_config


@dataclass
class VQARow:
    name: str
    overall: float                # test accuracy over every question
    per_type: dict[str, float]    # test accuracy per question type
    seeds: int = 1
    overall_std: float = 0.0      # spread over seeds, where a row averages several
    per_type_std: dict[str, float] = field(default_factory=dict)


def _row(name: str, results: list[QAResult], types: list[str]) -> VQARow:
    def spread(values):
        return statistics.stdev(values) if len(values) > 1 else 0.0
    overall = [r.test_acc for r in results]
    by_type = {kind: [r.per_type[i] for r in results] for i, kind in enumerate(types)}
    return VQARow(name, statistics.mean(overall),
                  {k: statistics.mean(v) for k, v in by_type.items()}, len(results),
                  spread(overall), {k: spread(v) for k, v in by_type.items()})


def answer_questions(data: VideoQAData, tokens: tuple | None, **probe) -> QAResult:
    """The QA probe on tokens already whitened by `whitened_tokens` (None: the question only)."""
    return qa_probe(data.train, data.val, data.test, tokens, vocab_size=len(data.vocab),
                    num_answers=len(data.answers), num_types=len(data.types), whiten=False,
                    **probe)


def whitened_tokens(encoder: torch.nn.Module, data: VideoQAData) -> tuple:
    """Each split's frozen tokens, PCA-whitened on the training clips' (as `qa_probe` would):
    the raw tokens are dropped once whitened, so one copy lives through the probe's fit."""
    return tuple(probes.whiten(*(extract_tokens(encoder, split.clips)
                                 for split in (data.train, data.val, data.test))))


def vqa_run(run_dir: str | Path, *, seeds: int = 2, frame_dir: str | Path | None = None,
            show_progress: bool = True, **probe) -> dict:
    """QA accuracy of a video run's encoder and its baselines; writes RUN_DIR/vqa.json and
    returns its content. `probe` overrides `qa_probe`'s settings (epochs, width, ...)."""
    run_dir, began = Path(run_dir), time.perf_counter()
    cfg = run_config(run_dir)
    spec = backbone_spec(cfg)
    if not spec.video:
        raise RunKindError(f"{run_dir} is a {cfg.data.kind} run (method {cfg.method_name!r} on "
                           f"{cfg.data.name!r}); vqa needs a video encoder's run (e.g. "
                           "`jepalab train vjepa-moving-shapes`)")
    encoders = [(cfg.method_name, lambda: load(run_dir))]
    encoders += [("random init", lambda seed=seed: random_init(spec, seed))
                 for seed in range(seeds)]
    if frame_dir is not None:
        name, image_encoder = per_frame_encoder(frame_dir, cfg)
        encoders += [(f"{name} (every frame's tokens)", lambda: PerFrame(image_encoder, False)),
                     (f"{name} (averaged over time)", lambda: PerFrame(image_encoder, True))]
    data = load_video_qa(image_size=cfg.data.image_size, frames=cfg.data.frames)
    results: dict[str, list[QAResult]] = {}
    for name, build in encoders:
        _say(show_progress, f"vqa: {name}: extracting tokens, fitting the QA probe")
        tokens = whitened_tokens(build(), data)
        results.setdefault(name, []).append(answer_questions(data, tokens, **probe))
    _say(show_progress, "vqa: question-only model")
    results["question only"] = [answer_questions(data, None, **probe)]
    test_types = data.test.types.tolist()
    result = {"run": str(run_dir), "data": data.name, "arch": cfg.model.arch,
              "steps": cfg.train.steps, "image_size": cfg.data.image_size,
              "frames": cfg.data.frames, "train_questions": len(data.train),
              "test_questions": len(data.test), "tokens": "pca-whitened",
              "types": data.types, "prior": data.prior,
              "prior_overall": sum(data.prior[data.types[t]] for t in test_types)
              / len(test_types),
              "rows": [asdict(_row(name, rows, data.types)) for name, rows in results.items()],
              "seconds": round(time.perf_counter() - began, 1)}
    checkpoint.atomic_write_text(run_dir / "vqa.json", json.dumps(result, indent=1))
    return result


def _say(show: bool, line: str) -> None:
    if show:
        print(line, flush=True)


def vqa_table(result: dict):
    """A rich Table: test accuracy (%) overall and per question type, one row per model,
    the answer prior last."""
    from rich.table import Table

    table = Table(title=f"video QA · {result['arch']} · {result['steps']} steps · "
                        f"{result['frames']} frames of {result['image_size']} px · "
                        f"{result['train_questions']} training questions, "
                        f"{result['test_questions']} test")
    for column in ("model", "overall", *result["types"]):
        table.add_column(column, justify="left" if column == "model" else "right")

    def pct(value, std, seeds):
        return f"{100 * value:.1f}" + (f" ± {100 * std:.1f}" if seeds > 1 else "")

    for row in result["rows"]:
        name = row["name"] + (f" ({row['seeds']} seeds)" if row["seeds"] > 1 else "")
        table.add_row(name, pct(row["overall"], row["overall_std"], row["seeds"]),
                      *(pct(row["per_type"][k], row["per_type_std"][k], row["seeds"])
                        for k in result["types"]))
    table.add_row("answer prior (balanced)", pct(result["prior_overall"], 0, 1),
                  *(pct(result["prior"][k], 0, 1) for k in result["types"]), style="dim")
    return table
