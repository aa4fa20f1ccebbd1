"""`jepalab bench`: the self-supervised methods side by side on one data set, backbone,
seed and step budget, each probed (linear, kNN, RankMe) beside a random-init encoder.

Method NAME is recipe `NAME-shapes`, keeping its own `method.*` and `optim.*`; the bench
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
import re
import shlex
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

import jepalab
from jepalab import checkpoint, config, distributed, memory, report
from jepalab.build import backbone_spec, load_data
from jepalab.config import Config, ConfigError
from jepalab.eval.baselines import PROBE_TRAIN, probe_encoder, probe_random_init
from jepalab.eval.collapse import CollapseWarning
from jepalab.flops import train_step_flops
from jepalab.probe import ceiling_config
from jepalab.train import ensure_trained, finished

SUFFIX = "-shapes"
WARMUP_FRACTION = 0.1
FLAG_POINTS = 10.0  # a method less than this many points above random init gets a note
SEEDS = 3           # random-init seeds
# The default: every method at 100 and at 400 steps of 128 images of 16 px (the frontier);
# sized to finish on 2 CPU cores within the hour (README, "Side by side").
DEFAULT_BUDGETS = "100,400"
NOTE = f"below +{FLAG_POINTS:.0f} over random init at this budget"
FLAGS = {"model.arch": "--arch", "model.patch_size": "--patch-size", "data.name": "--data",
         "data.image_size": "--image-size", "train.steps": "--budget",
         "train.batch_size": "--batch-size"}
# what a --variant may not override: the settings every row and random init share
SHARED = ("model.", "data.", "train.steps=", "train.batch_size=", "train.seed=",
          "train.run_dir=", "train.checkpoint_every=")


@dataclass
class BenchOptions:
    methods: str = ""           # comma-separated names; empty: every NAME-shapes recipe
    #                             (none when variants are given)
    variants: list[str] = field(default_factory=list)  # each "NAME section.key=value ..."
    data: str = "shapes"
    budget: int | None = None   # one training budget (steps) for every method, no frontier
    budgets: str = ""           # several, comma-separated (the frontier); "": DEFAULT_BUDGETS
    batch_size: int = 128
    seed: int = 0
    arch: str = "vit_nano"
    image_size: int = 16
    patch_size: int = 4
    out: str = "runs/bench"
    ceiling: bool = False       # add the supervised model trained for the same budget
    quiet: bool = False

    def steps(self) -> list[int]:
        """The step budgets, smallest first: the one of --budget, else those of --budgets
        (default DEFAULT_BUDGETS)."""
        if self.budget is not None and self.budgets:
            raise ConfigError("--budget and --budgets: give one, --budget STEPS for one budget "
                              "or --budgets STEPS,STEPS,... for the frontier over several")
        if self.budget is not None:
            return [self.budget]
        return parse_budgets(self.budgets or DEFAULT_BUDGETS)

    @property
    def frontier(self) -> bool:
        """Budgets from --budgets (or the default): runs in NAME-STEPS, a frontier plot."""
        return self.budget is None

    def run_name(self, name: str, steps: int) -> str:
        """The run directory's name under OUT/runs: NAME-STEPS on a frontier, else NAME."""
        return f"{name}-{steps}" if self.frontier else name

    def command(self) -> str:
        """The command line that reruns, and so resumes, this bench."""
        budget = (f"--budgets {','.join(map(str, self.steps()))}" if self.frontier
                  else f"--budget {self.steps()[0]}")
        entries = parse_entries(self)
        methods = ",".join(e.name for e in entries if not e.overrides)
        return ("jepalab bench" + f" --methods {methods}" * bool(methods)
                + "".join(f" --variant {shlex.quote(e.label)}" for e in entries if e.overrides)
                + f" --data {shlex.quote(self.data)} {budget} --batch-size {self.batch_size} "
                f"--seed {self.seed} --arch {self.arch} --image-size {self.image_size} "
                f"--patch-size {self.patch_size} --out {shlex.quote(self.out)}"
                + " --ceiling" * self.ceiling + " --quiet" * self.quiet)


def available_methods() -> list[str]:
    """NAME for every recipe NAME-shapes whose method is not the supervised one."""
    names = []
    for recipe in config.recipe_names():
        if recipe.endswith(SUFFIX):
            method = config.read_yaml(config.RECIPES_DIR / f"{recipe}.yaml").get("method")
            if (method or {}).get("name", "ijepa") != "supervised":
                names.append(recipe[:-len(SUFFIX)])
    return names


def parse_methods(text: str, flag: str = "--methods") -> list[str]:
    valid = available_methods()
    chosen = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip())) or valid
    for name in chosen:
        if name not in valid:
            raise ConfigError(f"{flag}: unknown method {name!r}; valid: {', '.join(valid)}"
                              f"{config._near(name, valid)}")
    if not chosen:
        raise ConfigError(f"--methods: there is no *{SUFFIX} recipe in {config.RECIPES_DIR}")
    return chosen


@dataclass(frozen=True)
class Entry:
    """One row of the bench: method NAME (recipe NAME-shapes), with a variant's overrides."""
    name: str
    overrides: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return " ".join((self.name, *self.overrides))

    @property
    def slug(self) -> str:
        """The label as a directory name."""
        return re.sub(r"[^\w.=,+\[\]-]+", "_", self.label)


def parse_entries(opts: BenchOptions) -> list[Entry]:
    """The rows to train: each of --methods (default every method, or none with variants),
    then each --variant."""
    usage = "give a method and its overrides, e.g. --variant 'vicreg method.cov_coeff=0'"
    entries = ([Entry(name) for name in parse_methods(opts.methods)]
               if opts.methods or not opts.variants else [])
    for text in opts.variants:
        name, *overrides = text.split() or [""]
        if not overrides:
            raise ConfigError(f"--variant {text!r}: no override; {usage}")
        parse_methods(name, f"--variant {text!r}")
        for item in overrides:
            if item.startswith(SHARED):
                raise ConfigError(f"--variant {text!r}: {item.partition('=')[0]} is shared by "
                                  "every row and random init, so a variant cannot change it "
                                  "(use the bench's own flags); a variant overrides method.*, "
                                  "optim.* and train.* keys")
        entries.append(Entry(name, tuple(overrides)))
    return list(dict.fromkeys(entries))


def parse_budgets(text: str) -> list[int]:
    """`--budgets 150,600,2400` -> [150, 600, 2400]: positive whole numbers of steps, sorted,
    each once."""
    valid = "give positive whole numbers of training steps separated by commas, e.g. " \
            "--budgets 150,600,2400"
    budgets = []
    for item in (part.strip() for part in text.split(",")):
        try:
            steps = int(item)
        except ValueError:
            raise ConfigError(f"--budgets {text}: {item!r} is not a number of steps; "
                              f"{valid}") from None
        if steps <= 0:
            raise ConfigError(f"--budgets {text}: {steps} is not a positive number of steps; "
                              f"{valid}")
        budgets.append(steps)
    return sorted(set(budgets))


def check_options(opts: BenchOptions) -> None:
    """The shared settings, checked as the config would, with the bench's option names."""
    budgets = opts.steps()
    try:
        config.ModelConfig(opts.arch, opts.patch_size).validate()
        config.DataConfig(opts.data, opts.image_size).validate()
        for steps in budgets:
            config.TrainConfig(steps, opts.batch_size).validate()
        if opts.image_size % opts.patch_size:
            raise ConfigError(f"data.image_size {opts.image_size} must be a multiple of "
                              f"model.patch_size {opts.patch_size}")
    except ConfigError as e:
        message = str(e)
        flags = {**FLAGS, "train.steps": "--budgets"} if opts.frontier else FLAGS
        for key, flag in flags.items():
            message = message.replace(key, flag)
        raise ConfigError(message) from None


def bench_config(raw: dict, recipe: str, opts: BenchOptions, steps: int,
                 run_dir: Path) -> Config:
    """The recipe with the bench's shared settings forced and its warmup capped."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    model, data, optim, train = (raw.setdefault(s, {}) for s in ("model", "data", "optim",
                                                                  "train"))
    model.update(arch=opts.arch, patch_size=opts.patch_size)
    data.update(name=opts.data, image_size=opts.image_size, seed=0, num_train=0)
    warmup = optim.get("warmup_steps", config.OptimConfig.warmup_steps)
    if isinstance(warmup, int):
        optim["warmup_steps"] = min(warmup, int(WARMUP_FRACTION * steps))
    every = train.get("checkpoint_every", config.TrainConfig.checkpoint_every)
    train.update(steps=steps, batch_size=opts.batch_size, seed=opts.seed,
                 run_dir=str(run_dir), checkpoint_every=max(1, min(every, steps // 5)))
    try:
        return config.from_dict(raw, recipe=recipe)
    except ConfigError as e:
        raise ConfigError(f"recipe {recipe}: {e}") from None


def method_config(entry: Entry | str, opts: BenchOptions, steps: int | None = None) -> Config:
    """Method (or variant) `entry` for `steps` (default: the first budget), in
    OUT/runs/SLUG[-STEPS]."""
    entry = Entry(entry) if isinstance(entry, str) else entry
    steps = opts.steps()[0] if steps is None else steps
    raw, recipe = config.load_recipe(entry.name + SUFFIX)
    run_dir = Path(opts.out) / "runs" / opts.run_name(entry.slug, steps)
    try:
        return bench_config(config.apply_overrides(raw, list(entry.overrides)), recipe, opts,
                            steps, run_dir)
    except ConfigError as e:
        raise ConfigError(f"--variant {entry.label!r}: {e}" if entry.overrides else e) from None


def supervised_config(first: Config, opts: BenchOptions) -> Config:
    """The ceiling: the supervised method with the first method's shared settings and
    optimiser (as `jepalab probe` trains it), in OUT/runs/supervised[-STEPS]."""
    ceiling = ceiling_config(first)
    run_dir = Path(opts.out) / "runs" / opts.run_name("supervised", first.train.steps)
    ceiling.train = replace(first.train, run_dir=str(run_dir))
    return ceiling


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
            ensure_trained(cfg, run_dir, progress)
        collapses = [w.message for w in caught if issubclass(w.category, CollapseWarning)]
        for warning in collapses:
            log(f"[yellow]{warning}")
        cache.update(peak_memory_mib=memory.read_peak(device, measure), memory_measure=measure,
                     collapse=f"collapse warning at step {collapses[0].step} "
                              f"({collapses[0].metric} {collapses[0].value:.2f})"
                              if collapses else "")
        checkpoint.atomic_write_text(path, json.dumps(cache, indent=1))
    log("probing ...")
    began = time.perf_counter()
    probe = probe_encoder(label, jepalab.load(run_dir).to(device), data, device)
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
    probe = probe_random_init(spec, data, SEEDS, device)
    row = {**asdict(probe), "name": f"random init ({SEEDS} seed{'s' * (SEEDS > 1)})",
           "wall_s": time.perf_counter() - began}
    checkpoint.atomic_write_text(out / "random_init.json",
                                 json.dumps({"settings": settings, "row": row}, indent=1))
    return row


def bench_configs(opts: BenchOptions, entries: list[Entry]) -> dict[tuple[str, int], Config]:
    """(label, steps) -> config of every run, budget by budget, smallest first."""
    configs = {}
    for steps in opts.steps():
        for entry in entries:
            configs[entry.label, steps] = method_config(entry, opts, steps)
        if opts.ceiling:
            first = configs[entries[0].label, steps]
            configs["supervised (ceiling)", steps] = supervised_config(first, opts)
    return configs


def run_bench(opts: BenchOptions) -> list[dict]:
    """Train and probe every chosen method at every budget; write bench.md, bench.csv and
    bench.png (and with several budgets frontier.png and frontier.csv)."""
    from rich.console import Console

    console = Console(highlight=False)
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
             f"{steps_text} steps x {opts.batch_size} · seed {opts.seed}")
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
