"""`jepalab bench`: the self-supervised methods side by side on one data set, backbone,
seed and step budget, each probed (linear, kNN, RankMe) beside a random-init encoder.
What a bench runs (its options, rows, budgets and each run's config) is lineup.py.

Method NAME is recipe `NAME-shapes` (on video data: `NAME-moving-shapes`, probed with the
attentive probe too), keeping its own `method.*` and `optim.*`; the bench
forces the shared settings (architecture, patch and image size, data, steps, batch size,
seed) and caps the warmup at WARMUP_FRACTION of the steps. Each method trains into
OUT/runs/NAME through `ensure_trained`, so a stopped bench resumes the half-trained method;
its result row is cached in OUT/runs/NAME/bench_row.json (random init: OUT/random_init.json),
so running the bench again redoes nothing that is finished. Writes OUT/bench.md, bench.csv
and bench.png. Each row has its training FLOPs: one step counted (see flops.py) times steps.

A variant (`--variant "vicreg method.cov_coeff=0"`, repeatable) is method NAME with
`method.*`, `optim.*` or `train.*` overrides, a row of its own under its whole text as the
label (run dir: the label with spaces as underscores): the ablations of the principle
tables. The model and data are the bench's, the same for every row and for random init.

With several budgets (`--budgets 150,600,2400`, the accuracy-vs-compute frontier) every
method trains once per budget, into OUT/runs/NAME-STEPS, each with its own cached row; the
bench adds OUT/frontier.png, frontier.csv and a table of linear top-1 per budget in bench.md.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import torch

import jepalab
from jepalab import checkpoint, distributed, memory, report
from jepalab.build import backbone_spec, load_data
from jepalab.config import Config, ConfigError
from jepalab.eval.baselines import PROBE_TRAIN, probe_encoder, probe_random_init
from jepalab.eval.collapse import CollapseRecovered, CollapseWarning
from jepalab.flops import train_step_flops
from jepalab.lineup import (
    WARMUP_FRACTION,
    BenchOptions,
    bench_configs,
    check_options,
    parse_entries,
)
from jepalab.train import ensure_trained, finished

FLAG_POINTS = 10.0  # a method less than this many points above random init gets a note
SEEDS = 3           # random-init seeds
# The default: every method at 100 and at 800 steps of 128 images of 16 px (the frontier),
# bf16 where the CPU or GPU computes it natively; sized to finish on 2 CPU cores within the
# hour (README, "Side by side").
NOTE = f"below +{FLAG_POINTS:.0f} over random init at this budget"
def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict)
                   else {prefix + key: value})
    return out


def check_run_dir(cfg: Config) -> None:
    """Refuse to resume or reuse a run that was trained with other settings."""
    run_dir = Path(cfg.train.run_dir)
    if checkpoint.latest(run_dir) is None or not (run_dir / "config.json").exists():
        return
    old, new = _flat(json.loads((run_dir / "config.json").read_text())), _flat(cfg.to_dict())
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(old.keys() | new.keys())
               if old.get(k) != new.get(k)]
    if changed:
        raise ConfigError(f"{run_dir} holds a run with other settings ({'; '.join(changed[:4])})"
                          "; choose another --out or delete that directory")


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def bench_method(label: str, cfg: Config, data, log, progress: bool) -> dict:
    """Train (or resume, or skip) and probe one method; cache its row in its run dir."""
    run_dir, device = Path(cfg.train.run_dir), distributed.pick_device(cfg.train.device)
    path = run_dir / "bench_row.json"
    cache, done = _read(path), finished(run_dir, cfg.train.steps)
    if cache.get("config") != cfg.to_dict() or not done:
        cache = {"config": cfg.to_dict()}
    if "row" in cache:
        log(f"done in an earlier bench; row read from {path}")
        if "train_flops" not in cache["row"]:  # cached by a bench that did not count FLOPs
            row = cache["row"]
            row.update(compute(cfg, data, device, cfg.train.steps * cfg.train.batch_size
                               / max(row["samples_per_s"], 1e-9)))
            checkpoint.atomic_write_text(path, json.dumps(cache, indent=1))
        return cache["row"]
    if "memory_measure" not in cache and done:  # trained, but not by this bench
        log("already trained; its peak memory was not measured")
        cache.update(peak_memory_mib=None, memory_measure=None)
    if "memory_measure" not in cache:
        found = checkpoint.latest(run_dir)
        log(f"training {cfg.train.steps} steps of {cfg.train.batch_size}, warmup "
            f"{cfg.optim.warmup_steps}" + (f", resuming after step {checkpoint.step_of(found)}"
                                           if found else "") + " ...")
        measure = memory.reset_peak(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CollapseWarning)
            warnings.simplefilter("always", CollapseRecovered)
            ensure_trained(cfg, run_dir, progress)
        events = [w.message for w in caught
                  if issubclass(w.category, (CollapseWarning, CollapseRecovered))]
        for event in events:
            log(f"[yellow]{event}" if isinstance(event, CollapseWarning) else str(event))
        cache.update(peak_memory_mib=memory.read_peak(device, measure), memory_measure=measure,
                     collapse="; ".join(
                         f"{'collapse warning' if isinstance(e, CollapseWarning) else 'recovered'}"
                         f" at step {e.step} ({e.metric} {e.value:.2f})" for e in events))
        checkpoint.atomic_write_text(path, json.dumps(cache, indent=1))
    log("probing ...")
    began = time.perf_counter()
    probe = probe_encoder(label, jepalab.load(run_dir).to(device), data, device,
                          attentive=backbone_spec(cfg).video)
    train_s = json.loads((checkpoint.latest(run_dir) / "state.json").read_text())["elapsed_s"]
    samples_per_s = cfg.train.steps * cfg.train.batch_size / max(train_s, 1e-9)
    cache["row"] = {**asdict(probe), "peak_memory_mib": cache["peak_memory_mib"],
                    "collapse": cache.get("collapse", ""),
                    "memory_measure": cache["memory_measure"], "samples_per_s": samples_per_s,
                    "wall_s": train_s + time.perf_counter() - began,
                    **compute(cfg, data, device, train_s)}
    checkpoint.atomic_write_text(path, json.dumps(cache, indent=1))
    return cache["row"]


def compute(cfg: Config, data, device: torch.device, train_s: float) -> dict:
    """What a run cost: its steps, training-loop seconds and training FLOPs (one step's,
    counted once, times the steps)."""
    return {"steps": cfg.train.steps, "train_s": train_s,
            "train_flops": cfg.train.steps * train_step_flops(cfg, data, device)}


def random_init_row(cfg: Config, data, out: Path, log) -> dict:
    settings = {"model": asdict(cfg.model), "data": asdict(cfg.data), "seeds": SEEDS}
    cached = _read(out / "random_init.json")
    if cached.get("settings") == settings:
        log(f"random init: probed in an earlier bench; row read from {out / 'random_init.json'}")
        return cached["row"]
    log(f"random init: probing {SEEDS} encoders ...")
    began, device = time.perf_counter(), distributed.pick_device(cfg.train.device)
    spec = backbone_spec(cfg)
    probe = probe_random_init(spec, data, SEEDS, device, attentive=spec.video)
    row = {**asdict(probe), "name": f"random init ({SEEDS} seed{'s' * (SEEDS > 1)})",
           "wall_s": time.perf_counter() - began}
    checkpoint.atomic_write_text(out / "random_init.json",
                                 json.dumps({"settings": settings, "row": row}, indent=1))
    return row


def run_bench(opts: BenchOptions) -> list[dict]:
    """Train and probe every chosen method at every budget; write bench.md, bench.csv and
    bench.png (and with several budgets frontier.png and frontier.csv)."""
    from jepalab.progress import console as make_console

    console = make_console(highlight=False)
    check_options(opts)
    entries, budgets = parse_entries(opts), opts.steps()
    configs = bench_configs(opts, entries)
    for cfg in configs.values():  # every refusal comes before any work starts
        check_run_dir(cfg)
    out, first = Path(opts.out), configs[entries[0].label, budgets[0]]
    out.mkdir(parents=True, exist_ok=True)
    device = distributed.pick_device(first.train.device)
    labels = list(dict.fromkeys(label for label, _ in configs))
    steps_text = "/".join(map(str, budgets))
    console.print(f"bench: {', '.join(labels)} · {opts.data} · {opts.arch} · {steps_text} "
                  f"steps of {opts.batch_size} · seed {opts.seed} · {device} → {out}")
    data = load_data(first)
    random, rows, total = random_init_row(first, data, out, console.print), [], len(configs)
    for i, ((label, steps), cfg) in enumerate(configs.items(), 1):
        at = f" @ {steps}" if len(budgets) > 1 else ""

        def log(text, prefix=f"[{i}/{total}] {label}{at}: "):
            console.print(prefix + text)

        try:
            row = {**bench_method(label, cfg, data, log, not opts.quiet)}
        except FloatingPointError as e:  # a diverged method is a result, not a crash
            log(f"training failed: {e}")
            rows.append({"name": label, "steps": steps, "note": f"training failed: {e}"})
            continue
        row["linear_margin"] = 100 * (row["linear"] - random["linear"])
        below = NOTE if row["linear_margin"] < FLAG_POINTS else ""
        row["note"] = "; ".join(filter(None, [below, row.get("collapse", "")]))
        rows.append(row)
        log(f"linear {100 * row['linear']:.1f}% ({row['linear_margin']:+.1f} points over random"
            f" init), kNN {100 * row['knn']:.1f}%, {row['samples_per_s']:.0f} samples/s, "
            f"{row['train_flops'] / 1e12:.3g} TFLOP")
    rows.sort(key=lambda row: labels.index(row["name"]))  # by method, then budget (stable)
    rows.append({**random, "note": ""})
    title = (f"{opts.data} · {opts.arch} (patch {opts.patch_size}, {opts.image_size}px) · "
             f"{steps_text} steps x {opts.batch_size} · {opts.train_precision()} · "
             f"seed {opts.seed}")
    warmups: dict[str, list[str]] = {}
    for (label, _), cfg in configs.items():
        warmups.setdefault(label, []).append(str(cfg.optim.warmup_steps))
    notes = report.bench_notes(rows, warmups, WARMUP_FRACTION, min(PROBE_TRAIN, len(data.train)))
    report.write_bench(out, rows, title, notes, device, opts.command(),
                       frontier=opts.frontier)
    console.print(report.bench_table(rows, title, notes))
    written = ["bench.md", "bench.csv", "bench.png"]
    written += ["frontier.png", "frontier.csv"] * opts.frontier
    console.print(f"wrote {', '.join(str(out / name) for name in written)}")
    return rows
