"""Probe a run beside its baselines: random init (several seeds), raw pixels, supervised ceiling.

Every number a report prints has these beside it, measured with the same probes on the
same splits: a random-init encoder of the same architecture (mean and spread over seeds),
a linear / kNN read-out of raw pixels, and a supervised model of the same architecture
trained on the same data for the same number of steps (the ceiling).
"""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from jepalab import checkpoint, load
from jepalab.config import Config, from_dict
from jepalab.data.images import ImageData
from jepalab.eval.collapse import rankme
from jepalab.eval.probes import extract_features, knn, linear_probe, pixel_features
from jepalab.methods import method_module
from jepalab.nn.vit import VisionTransformer, ViTSpec

PROBE_TRAIN = 10000  # training images the probes fit on (the split's first ones)


@dataclass
class ProbeRow:
    name: str
    linear: float
    knn: float
    rankme: float
    linear_std: float = 0.0   # spread over seeds, where a row averages several
    knn_std: float = 0.0
    seeds: int = 1


def probe_features(name: str, train_x, val_x, test_x, data: ImageData, n: int) -> ProbeRow:
    train_y = data.train.labels[:n]
    num_classes = len(data.classes)
    linear = linear_probe(train_x, train_y, val_x, data.val.labels, test_x, data.test.labels,
                          num_classes=num_classes)
    top1 = knn(train_x, train_y, test_x, data.test.labels, num_classes=num_classes)
    return ProbeRow(name, linear.test_acc, top1, rankme(test_x))


def probe_encoder(name: str, encoder: torch.nn.Module, data: ImageData,
                  device: str | torch.device = "cpu", n: int = PROBE_TRAIN) -> ProbeRow:
    features = [extract_features(encoder, images, device=device) for images in
                (data.train.images[:n], data.val.images, data.test.images)]
    return probe_features(name, *features, data, n)


def probe_pixels(data: ImageData, n: int = PROBE_TRAIN) -> ProbeRow:
    features = [pixel_features(images) for images in
                (data.train.images[:n], data.val.images, data.test.images)]
    return probe_features("raw pixels", *features, data, n)


def probe_random_init(spec: ViTSpec, data: ImageData, seeds: int,
                      device: str | torch.device = "cpu") -> ProbeRow:
    rows = []
    for seed in range(seeds):
        torch.manual_seed(10_000 + seed)
        rows.append(probe_encoder("random init", VisionTransformer(spec).to(device), data, device))
    return average(rows, "random init")


def average(rows: list[ProbeRow], name: str) -> ProbeRow:
    def spread(values):
        return statistics.stdev(values) if len(values) > 1 else 0.0
    linear, top1 = [r.linear for r in rows], [r.knn for r in rows]
    return ProbeRow(name, statistics.mean(linear), statistics.mean(top1),
                    statistics.mean(r.rankme for r in rows), spread(linear), spread(top1),
                    len(rows))


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
    from jepalab.train import ensure_trained

    return ensure_trained(ceiling_config(cfg), Path(run_dir) / "ceiling", show_progress)


def probe_run(run_dir: str | Path, *, ceiling_dir: str | Path | None = None, seeds: int = 3,
              train_ceiling_if_missing: bool = True, show_progress: bool = True) -> dict:
    """Probe a run and its baselines; write probe.json into the run; return its content."""
    from jepalab.train import load_data

    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    data = load_data(cfg)
    spec = ViTSpec(cfg.model.arch, cfg.data.image_size, cfg.model.patch_size)
    rows = [probe_encoder(cfg.method_name, load(run_dir), data),
            probe_random_init(spec, data, seeds),
            probe_pixels(data)]
    if ceiling_dir is None and train_ceiling_if_missing:
        ceiling_dir = train_ceiling(cfg, run_dir, show_progress)
    if ceiling_dir is not None:
        rows.append(probe_encoder("supervised (ceiling)", load(ceiling_dir), data))
    result = {"run": str(run_dir), "data": cfg.data.name, "arch": cfg.model.arch,
              "steps": cfg.train.steps, "probe_train_images": min(PROBE_TRAIN, len(data.train)),
              "rows": [asdict(r) for r in rows]}
    checkpoint.atomic_write_text(run_dir / "probe.json", json.dumps(result, indent=1))
    return result
