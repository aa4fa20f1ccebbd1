"""The one training loop. It knows methods only through their interface (see methods/).

With several processes (torchrun) the method is wrapped by train.parallel's engine
(parallel.py: DDP or FSDP2); checkpoints hold whole tensors whatever the engine, so a run
resumes with any number of processes.

Per step: set lr and weight decay from their schedules; reseed the RNG from
(seed, step, rank) so that views and masks are a function of the step (exact resume);
take the step's slice of the epoch permutation; forward under autocast; backward,
clip, optimiser step; the method's `on_step_end` (EMA teachers). Every `log_every`
steps a JSON line goes to metrics.jsonl; every `monitor_every` steps the evaluation
embeddings' RankMe, feature std and spread on a fixed validation batch (a collapse warns,
and a recovery from it is said; with train.collapse_fatal the warning stops the run);
every `checkpoint_every` steps (and at the end, and on Ctrl-C) an atomic checkpoint. A
fresh run of a method that draws what it trains on (build.Previews) first writes that
picture of its first batch as clips.gif.
"""
from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from jepalab import checkpoint, distributed, figures, parallel, schedules
from jepalab.build import Previews, build_method, embeds, load_data, monitored
from jepalab.config import Config, ConfigError, absolute_paths
from jepalab.eval.collapse import CollapseRecovered, CollapseWarning, health
from jepalab.eval.probes import extract_features
from jepalab.nonfinite import FiniteCheck
from jepalab.progress import Bar
from jepalab.report import read_metrics
from jepalab.runlog import MetricsLog

MONITOR_IMAGES = 512
PREVIEW_FILE = "clips.gif"  # a method's picture of its first batch (build.Previews)


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The RNG seed of a step on a rank: views and masks are a function of (seed, step, rank)."""
    return seed * 1_000_003 + step * 1009 + rank


def batch_indices(step: int, num_samples: int, batch_size: int, seed: int) -> torch.Tensor:
    """The global batch of `step`: positions [step*B, (step+1)*B) of a stream of epochs,
    each epoch a permutation drawn from (seed, epoch)."""
    start, parts = step * batch_size, []
    while batch_size > 0:
        epoch, offset = divmod(start, num_samples)
        order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(
            seed * 1_000_003 + epoch))
        take = order[offset:offset + batch_size]
        parts.append(take)
        start, batch_size = start + len(take), batch_size - len(take)
    return torch.cat(parts)


def parameter_groups(method: torch.nn.Module) -> list[dict]:
    """Weight decay on matrices only; biases, norms, tokens and gains are exempt."""
    decay, exempt = [], []
    for param in method.parameters():
        if param.requires_grad:
            (decay if param.ndim > 1 else exempt).append(param)
    return [{"params": decay, "apply_decay": True},
            {"params": exempt, "weight_decay": 0.0, "apply_decay": False}]


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 matrices in hardware: a GPU that supports bf16, or a
    CPU with AVX512-BF16 or AMX (where bf16 autocast ran ViT steps 1.4-2x faster than fp32
    on 2 cores); elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(device: torch.device, precision: str) -> str:
    """train.precision as the run computes on `device`: fp32, bf16 or fp16. auto: bf16 on
    GPUs that have it, else fp32; bf16-native: bf16 also on CPUs that compute it natively."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "bf16-native":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    precision = resolve_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


class StopRequest(contextlib.AbstractContextManager):
    """SIGINT / SIGTERM set a flag that the loop checks between steps, so a stop never
    lands in the middle of an optimiser step; a second signal interrupts at once."""

    def __init__(self):
        self.requested, self.previous = False, {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


class CollapseWatch:
    """Warns when the method's embeddings collapse: RankMe (dimensional collapse) or spread
    (complete collapse; checked on an `embedder()`'s embeddings only: a projector's output,
    or I-JEPA's target tokens; mean-pooled ViT features sit low and fall early in supervised
    training too) under its threshold and under 0.9 x its value at initialisation (step 0).
    A random-init encoder can sit under a threshold on easy data; only a fall from there is
    a collapse. A threshold of 0 turns its check off. Once warned, it watches the fallen
    metric and says when it is back above RECOVERY x its limit (JEPAs on easy data can dip
    early and recover); only after that can it warn again."""

    RECOVERY = 1.1  # above the limit by this factor, so a metric at the limit does not flap

    def __init__(self, thresholds: dict[str, float], initial: dict, enabled: bool):
        self.enabled = enabled
        self.limits = {metric: threshold if initial.get(metric) is None
                       else min(threshold, 0.9 * initial[metric])
                       for metric, threshold in thresholds.items() if threshold > 0}
        self.initial, self.thresholds, self.fallen = initial, thresholds, None

    def check(self, step: int, values: dict) -> CollapseWarning | CollapseRecovered | None:
        """The warning when a metric falls under its limit, the recovery when the fallen one
        is back above it (each also issued with `warnings.warn`), else None."""
        if not self.enabled:
            return None
        if self.fallen is not None:
            limit = self.RECOVERY * self.limits[self.fallen.metric]
            if values[self.fallen.metric] < limit:
                return None
            event, self.fallen = CollapseRecovered(step, self.fallen,
                                                   values[self.fallen.metric], limit), None
        else:
            fallen = [m for m, limit in self.limits.items() if values[m] < limit]
            if not fallen:
                return None
            metric = fallen[0]
            event = self.fallen = CollapseWarning(step, metric, values[metric],
                                                  self.initial.get(metric),
                                                  self.thresholds[metric])
        warnings.warn(event, stacklevel=2)
        return event


def monitor(encoder: torch.nn.Module | None, images: torch.Tensor, device: torch.device) -> dict:
    """RankMe, feature std, spread and SIGReg statistic of `encoder`'s embeddings (the method's
    `monitored` part, on the main process; {} elsewhere: None)."""
    if encoder is None:
        return {}
    return health(extract_features(encoder, images, device=device))


class Prefetch:
    """Reads the next step's batch on a background thread while this step computes, so
    decoding files (data.stream) overlaps training. A batch is a function of its step alone
    (no random draws), so reading ahead changes nothing; an error reading it is raised when
    the loop asks for that step. Batches for a GPU come in pinned memory."""

    def __init__(self, read, end: int, pin: bool):
        self.read, self.end, self.pin, self.ahead = read, end, pin, {}
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="jepalab-prefetch")

    def _read(self, step: int) -> dict[str, torch.Tensor]:
        batch = self.read(step)
        return {key: value.pin_memory() for key, value in batch.items()} if self.pin else batch

    def get(self, step: int) -> dict[str, torch.Tensor]:
        future = self.ahead.pop(step, None)
        batch = future.result() if future is not None else self._read(step)
        # a step asked for twice (a fresh video run's preview, then the loop, both ask for
        # step 0) reads the next one ahead once
        if step + 1 < self.end and step + 1 not in self.ahead:
            self.ahead[step + 1] = self.pool.submit(self._read, step + 1)
        return batch

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class Interrupted(Exception):
    """Training stopped on request after a checkpoint; resume continues it."""


class Collapsed(Exception):
    """Training stopped at a collapse warning (train.collapse_fatal=true), after a checkpoint."""


def train(cfg: Config, run_dir: str | Path, *, resume: bool = False, show_progress: bool = True,
          stop_at: int | None = None) -> torch.nn.Module:
    """Train `cfg` into `run_dir` and return the method (under FSDP2, holding this process's
    shards); with `resume`, continue from the run's latest checkpoint, written by any number
    of processes.

    `stop_at` ends the run after that step (with a checkpoint), as a stop would; a later
    call with resume=True continues it exactly.
    """
    cfg = absolute_paths(cfg)  # config.json names its files so they are found from anywhere
    device = distributed.pick_device(cfg.train.device)
    world = distributed.init(device)
    run_dir = Path(distributed.broadcast_object(str(run_dir), world))  # rank 0's choice
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.batch_size % world.size:
        raise ConfigError(f"train.batch_size {cfg.train.batch_size} must divide evenly across "
                          f"{world.size} processes")
    if cfg.train.precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.precision=fp16 runs on CUDA GPUs only (with a gradient "
                          f"scaler); on {device.type} use bf16 or fp32")
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
    data = load_data(cfg)  # before the run folder exists: bad data leaves nothing behind
    method = build_method(cfg, data.declares).to(device)
    if world.is_main:  # what the run is and what it trained on (planning reads data.json)
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.remove_partial(run_dir)
        checkpoint.atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=1))
        checkpoint.atomic_write_text(run_dir / "data.json", json.dumps(data.describe(), indent=1))
    unsharded = parallel.Unsharded(monitored(method), cfg.train.parallel, world)
    model = parallel.wrap(method, cfg.train.parallel, world, device)  # before the optimiser
    optimizer = torch.optim.AdamW(parameter_groups(method), lr=cfg.optim.lr,
                                  betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.precision == "fp16")
    start, elapsed_before, skipped = 0, 0.0, 0
    if resume:  # the newest checkpoint whose checksums hold (a damaged one is named)
        state, _ = checkpoint.restore_latest(run_dir, method, optimizer)
        start, elapsed_before = state["step"], state.get("elapsed_s", 0.0)
        skipped = state.get("nonfinite_skipped", 0)
        if "grad_scaler" in state:
            scaler.load_state_dict(state["grad_scaler"])
    if cfg.train.compile:
        parallel.compile_blocks(method)

    total, per_rank = cfg.train.steps, cfg.train.batch_size // world.size
    end = min(total, stop_at) if stop_at is not None else total
    log = MetricsLog(run_dir, start if resume else -1, cfg, world.is_main)
    monitor_images = data.monitor_inputs(MONITOR_IMAGES)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    bar = Bar("train", total, enabled=show_progress and world.is_main, completed=start,
              eta=True)
    step, window_start, window_samples, collapse = start, time.perf_counter(), 0, None
    began = time.perf_counter()
    initial = {}
    if cfg.train.monitor_every:  # the embeddings at initialisation: step 0 of metrics.jsonl
        if start == 0:
            initial = monitor(unsharded.get(monitored(method)), monitor_images, device)
            log.write(0, {"elapsed_s": 0.0, **initial})
        else:
            initial = next((r for r in read_metrics(run_dir) if r["step"] == 0), {})
    thresholds = {"rankme": cfg.train.collapse_rankme}
    if embeds(method):  # spread means something for what a loss compares;
        thresholds["spread"] = cfg.train.collapse_spread  # pooled ViT tokens sit low anyway
    watch = CollapseWatch(thresholds, initial, world.is_main)

    def read(step: int) -> dict[str, torch.Tensor]:  # this rank's share of the step's batch
        index = batch_indices(step, len(data.train), cfg.train.batch_size, cfg.train.seed)
        return data.train.batch(index[world.rank * per_rank:(world.rank + 1) * per_rank])

    ahead = Prefetch(read, end, pin=device.type == "cuda")
    finite = FiniteCheck(cfg.train.on_nonfinite, device)

    def fetch(step: int) -> dict[str, torch.Tensor]:
        return {key: value.to(device, non_blocking=True) for key, value in ahead.get(step).items()}

    if isinstance(method, Previews) and world.is_main and not resume:
        # step 0's batch, seeded as step 0 draws it; the loop reseeds every step after this
        torch.manual_seed(step_seed(cfg.train.seed, 0, world.rank))
        figures.write_gif(method.preview(fetch(0)), run_dir / PREVIEW_FILE)

    def elapsed() -> float:  # training wall time, summed over resumed sessions
        return elapsed_before + time.perf_counter() - began

    def save():  # every process: FSDP2 gathers the shards; the main process writes
        finite.raise_if_bad(cfg.method_name, run_dir)  # a bad update is never saved
        checkpoint.save(run_dir, step, method, optimizer,
                        {"config": cfg.to_dict(), "world_size": world.size,
                         "elapsed_s": elapsed(), "nonfinite_skipped": skipped,
                         **({"grad_scaler": scaler.state_dict()} if scaler.is_enabled()
                            else {})}, write=world.is_main)
        distributed.barrier(world)

    try:
        with bar, StopRequest() as stop:
            while step < end and not stop.requested:
                lr, weight_decay = schedules.apply(optimizer, step, total, cfg.optim)
                torch.manual_seed(step_seed(cfg.train.seed, step, world.rank))
                batch = fetch(step)
                method.train()
                with autocast(device, cfg.train.precision):
                    out = model(batch)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(out.loss).backward()
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    params, cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf"))
                grad_norm = distributed.full_tensor(grad_norm)  # FSDP2: a replicated DTensor
                # on the device, read at log steps (the scaler skips fp16 overflows itself)
                if finite.check(step + 1, out.loss, grad_norm, not scaler.is_enabled()):
                    scaler.step(optimizer)
                    scaler.update()
                    method.on_step_end((step + 1) / total)
                else:  # train.on_nonfinite=skip
                    skipped += 1  # no update, no teacher / queue update: as if never drawn
                    optimizer.zero_grad(set_to_none=True)
                step += 1
                window_samples += cfg.train.batch_size

                if step % cfg.train.log_every == 0 or step == end:
                    finite.raise_if_bad(cfg.method_name, run_dir)  # the step's first host read
                    window = time.perf_counter() - window_start
                    values = {"loss": out.loss.item(), "lr": lr, "weight_decay": weight_decay,
                              "grad_norm": float(grad_norm), "nonfinite_skipped": skipped,
                              "samples_per_s": window_samples / max(window, 1e-9),
                              "elapsed_s": elapsed(),
                              **{key: float(value) for key, value in out.logs.items()}}
                    if cfg.train.monitor_every and (step % cfg.train.monitor_every == 0
                                                    or step == total):
                        values.update(monitor(unsharded.get(monitored(method)),
                                              monitor_images, device))
                        event = watch.check(step, values)  # rank 0's; every rank stops
                        warning = event if isinstance(event, CollapseWarning) else None
                        if event is not None:  # the run report marks both on the curves
                            values["collapse_warning" if warning else
                                   "collapse_recovered"] = str(event)
                        if cfg.train.collapse_fatal:  # with it (one collective, if asked)
                            collapse = distributed.broadcast_object(
                                warning and str(warning), world)
                    log.write(step, values)
                    bar.update(step, status=f"loss {values['loss']:.4f} "
                               f"lr {lr:.2e} {values['samples_per_s']:.0f} samples/s")
                    window_start, window_samples = time.perf_counter(), 0
                if collapse is not None:  # set only with train.collapse_fatal
                    break
                if step % cfg.train.checkpoint_every == 0 and step < end:
                    save()
        save()
        if collapse is not None:
            raise Collapsed(f"{collapse}; stopped (train.collapse_fatal=true) with a checkpoint "
                            f"at step {step} in {run_dir}")
        if stop.requested:
            raise Interrupted(f"stopped at step {step}; checkpoint saved in {run_dir}")
    finally:
        ahead.close()
        log.close()
        distributed.cleanup(world)
    return method


def ensure_trained(cfg: Config, run_dir: str | Path, show_progress: bool = True) -> Path:
    """Make sure `run_dir` holds `cfg` trained to its last step: train it if it has no
    checkpoint, resume it if it stopped early, leave it alone if it is finished."""
    run_dir = Path(run_dir)
    if not finished(run_dir, cfg.train.steps):
        resume = checkpoint.latest(run_dir) is not None
        train(cfg, run_dir, resume=resume, show_progress=show_progress)
    return run_dir


def finished(run_dir: str | Path, steps: int) -> bool:
    """Whether `run_dir` holds a complete checkpoint at step `steps` or later."""
    found = checkpoint.latest(Path(run_dir))
    return found is not None and checkpoint.step_of(found) >= steps
