"""`jepalab probe`: a run's encoder probed beside random init, raw pixels and the supervised
ceiling, the same architecture trained with labels on the same data for the same number of
steps (trained here into RUN_DIR/ceiling when missing; eval/ only evaluates)."""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from jepalab import checkpoint, figures, load
from jepalab.build import backbone_spec, load_data
from jepalab.config import Config, ConfigError, from_dict
from jepalab.eval.baselines import PROBE_TRAIN, probe_encoder, probe_pixels, probe_random_init
from jepalab.eval.per_frame import PerFrame
from jepalab.methods import method_module
from jepalab.progress import Bar
from jepalab.train import ensure_trained

PROBED = ("images", "videos")  # data kinds whose encoders the probes read
CONFUSION_FILE = "confusion.png"  # the run's attentive probe on the test split, per class


def run_config(run_dir: Path) -> Config:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a jepalab run directory (no config.json)")
    raw = json.loads(path.read_text())
    return from_dict(raw, recipe=raw.get("recipe", ""))


def ceiling_config(cfg: Config) -> Config:
    """The supervised model with the run's architecture, data, steps and batch size."""
    module = method_module("supervised")
    return replace(cfg, method=module.Config(), method_name="supervised",
                   recipe=f"{cfg.recipe} (supervised ceiling)")


def train_ceiling(cfg: Config, run_dir: Path, show_progress: bool = True) -> Path:
    """Train (or finish) the run's supervised ceiling in RUN_DIR/ceiling."""
    return ensure_trained(ceiling_config(cfg), Path(run_dir) / "ceiling", show_progress)


def per_frame_encoder(frame_dir: str | Path, cfg: Config) -> tuple[str, object]:
    """The per-frame baseline of a video run: the image encoder of `frame_dir` (trained on
    single frames, e.g. `ijepa-moving-shapes-frames`) and its row name."""
    if not backbone_spec(cfg).video:
        raise ConfigError(f"--per-frame is the baseline of a video run; this run trained on "
                          f"{cfg.data.name!r} ({cfg.data.kind})")
    frame_cfg = run_config(frame_dir)
    if frame_cfg.data.kind != "images" or frame_cfg.data.image_size != cfg.data.image_size:
        raise ConfigError(f"--per-frame {frame_dir}: needs an image run at the video's "
                          f"{cfg.data.image_size} px (e.g. `jepalab train "
                          f"ijepa-moving-shapes-frames`), got a {frame_cfg.data.kind} run at "
                          f"{frame_cfg.data.image_size} px on {frame_cfg.data.name!r}")
    return f"{frame_cfg.method_name} per frame", load(frame_dir)


def probe_run(run_dir: str | Path, *, ceiling_dir: str | Path | None = None, seeds: int = 3,
              train_ceiling_if_missing: bool = True, show_progress: bool = True,
              attentive: bool | None = None, per_frame_dir: str | Path | None = None) -> dict:
    """Probe a run and its baselines; write probe.json into the run; return its content.
    `attentive` adds the attentive probe on every encoder's tokens (default: for video
    runs, where the tokens hold the motion that pooling averages away); `per_frame_dir`
    (video runs) adds an image encoder trained on single frames, read frame by frame."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    if cfg.data.kind not in PROBED:
        raise ConfigError(f"{run_dir} is a {cfg.data.kind} run (method {cfg.method_name!r} on "
                          f"{cfg.data.name!r}); probe needs an image or video encoder's run "
                          "(e.g. `jepalab train lejepa-shapes`); a world model is measured "
                          "with `jepalab plan ENV RUN_DIR`")
    per_frame = per_frame_encoder(per_frame_dir, cfg) if per_frame_dir is not None else None
    data = load_data(cfg)
    if not data.declares:
        raise ConfigError(f"{run_dir} trained on unlabelled data ({cfg.data.name!r}): there is "
                          "nothing to probe; its encoder serves a world model "
                          f"(`jepalab train vjepa-ac-two-room method.encoder={run_dir} ...`)")
    spec = backbone_spec(cfg)
    attentive = spec.video if attentive is None else attentive
    if ceiling_dir is None and train_ceiling_if_missing:  # first: training shows its own bar
        ceiling_dir = train_ceiling(cfg, run_dir, show_progress)
    jobs = [(cfg.method_name, lambda: probe_encoder(cfg.method_name, load(run_dir), data,
                                                    attentive=attentive)),
            ("random init", lambda: probe_random_init(spec, data, seeds, attentive=attentive)),
            ("raw pixels", lambda: probe_pixels(data))]
    if per_frame is not None:  # an image encoder read on every frame, and averaged over time
        name, encoder = per_frame
        for label, average in ((f"{name} (every frame's tokens)", False),
                               (f"{name} (averaged over time)", True)):
            jobs.append((label, lambda label=label, average=average: probe_encoder(
                label, PerFrame(encoder, average), data, attentive=attentive)))
    if ceiling_dir is not None:
        jobs.append(("supervised (ceiling)", lambda: probe_encoder(
            "supervised (ceiling)", load(ceiling_dir), data, attentive=attentive)))
    rows = []
    with Bar("probe", len(jobs), enabled=show_progress, every=0) as bar:
        for label, job in jobs:
            rows.append(job())
            bar.update(status=f"{label} probed")
    if rows[0].attentive_predictions is not None:  # where the run's attentive probe errs
        figures.confusion_png(data.test.labels, rows[0].attentive_predictions, data.classes,
                              run_dir / CONFUSION_FILE, f"{cfg.method_name} on {cfg.data.name}: "
                              f"attentive probe, test split")
    result = {"run": str(run_dir), "data": cfg.data.name, "arch": cfg.model.arch,
              "steps": cfg.train.steps, "probe_train_images": min(PROBE_TRAIN, len(data.train)),
              "attentive_tokens": "pca-whitened" if attentive else None,
              "rows": [asdict(r) for r in rows]}
    checkpoint.atomic_write_text(run_dir / "probe.json", json.dumps(result, indent=1))
    return result
