"""What a `jepalab bench` runs: its options, its rows (methods and variants), the budgets,
and each run's config (the recipe with the bench's shared settings forced).

Method NAME is recipe `NAME-shapes` (on video data: `NAME-moving-shapes`), keeping its own
`method.*` and `optim.*`; the bench forces the shared settings (architecture, patch and
image size, data, steps, batch size, seed, precision) and caps the warmup at WARMUP_FRACTION of the
steps. A variant is method NAME with `method.*`, `optim.*` or `train.*` overrides.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

from jepalab import config
from jepalab.config import Config, ConfigError
from jepalab.data import catalog
from jepalab.data.images import DataError
from jepalab.distributed import pick_device
from jepalab.probe import ceiling_config
from jepalab.train import resolve_precision

# the recipes a bench on data of each kind runs: NAME-shapes for images, NAME-moving-shapes
# for videos (each recipe's own data set must be of that kind)
SUFFIXES = {"images": "-shapes", "videos": "-moving-shapes"}
WARMUP_FRACTION = 0.1
DEFAULT_BUDGETS = "100,800"
# train.precision's names; fp16 (CUDA only, loss-scaled) is left to `jepalab train`
BENCH_PRECISIONS = tuple(p for p in config.PRECISIONS if p != "fp16")
FLAGS = {"model.arch": "--arch", "model.patch_size": "--patch-size", "data.name": "--data",
         "data.image_size": "--image-size", "train.steps": "--budget",
         "train.batch_size": "--batch-size"}
# what a --variant may not override: the settings every row and random init share
SHARED = ("model.", "data.", "train.steps=", "train.batch_size=", "train.seed=",
          "train.run_dir=", "train.checkpoint_every=", "train.precision=")


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
    precision: str = "bf16-native"  # as train.precision: bf16-native, auto, fp32 or bf16
    quiet: bool = False

    def train_precision(self) -> str:
        """The precision every run trains in: --precision resolved here as the trainer would
        (so the command that reproduces the bench names what this machine computed in)."""
        return resolve_precision(pick_device("auto"), self.precision)

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
                f"--patch-size {self.patch_size} --precision {self.train_precision()} "
                f"--out {shlex.quote(self.out)}"
                + " --ceiling" * self.ceiling + " --quiet" * self.quiet)


def data_kind(data: str) -> str:
    """The kind of the bench's data set, one the bench has recipes for."""
    try:
        kind = catalog.kind_of(data)
    except DataError as e:
        raise ConfigError(f"--data: {e}") from None
    if kind not in SUFFIXES:
        raise ConfigError(f"--data {data}: the bench runs image or video data sets, and "
                          f"{data!r} is {kind}")
    return kind


def available_methods(kind: str = "images") -> list[str]:
    """NAME for every recipe NAME + SUFFIXES[kind] on data of that kind whose method is not
    the supervised one."""
    names, suffix = [], SUFFIXES[kind]
    for recipe in config.recipe_names():
        if recipe.endswith(suffix):
            raw = config.read_yaml(config.RECIPES_DIR / f"{recipe}.yaml")
            method, data = raw.get("method") or {}, raw.get("data") or {}
            if (method.get("name", "ijepa") != "supervised"
                    and catalog.kind_of(data.get("name", "shapes")) == kind):
                names.append(recipe[:-len(suffix)])
    return names


def parse_methods(text: str, flag: str = "--methods", kind: str = "images") -> list[str]:
    valid = available_methods(kind)
    chosen = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip())) or valid
    for name in chosen:
        if name not in valid:
            raise ConfigError(f"{flag}: unknown method {name!r}; valid: {', '.join(valid)}"
                              f"{config._near(name, valid)}")
    if not chosen:
        raise ConfigError(f"--methods: there is no *{SUFFIXES[kind]} recipe in "
                          f"{config.RECIPES_DIR}")
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
    kind = data_kind(opts.data)
    entries = ([Entry(name) for name in parse_methods(opts.methods, kind=kind)]
               if opts.methods or not opts.variants else [])
    for text in opts.variants:
        name, *overrides = text.split() or [""]
        if not overrides:
            raise ConfigError(f"--variant {text!r}: no override; {usage}")
        parse_methods(name, f"--variant {text!r}", kind)
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
    if opts.precision not in BENCH_PRECISIONS:
        raise ConfigError(f"--precision {opts.precision!r}: choose {', '.join(BENCH_PRECISIONS)}")
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
                 precision=opts.train_precision(),
                 run_dir=str(run_dir), checkpoint_every=max(1, min(every, steps // 5)))
    try:  # absolute paths, as the run's config.json will hold them
        return config.absolute_paths(config.from_dict(raw, recipe=recipe))
    except ConfigError as e:
        raise ConfigError(f"recipe {recipe}: {e}") from None


def method_config(entry: Entry | str, opts: BenchOptions, steps: int | None = None) -> Config:
    """Method (or variant) `entry` for `steps` (default: the first budget), in
    OUT/runs/SLUG[-STEPS]."""
    entry = Entry(entry) if isinstance(entry, str) else entry
    steps = opts.steps()[0] if steps is None else steps
    raw, recipe = config.load_recipe(entry.name + SUFFIXES[data_kind(opts.data)])
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
