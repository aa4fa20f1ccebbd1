"""Training throughput and MFU of the methods' steps against the matmul peak of the machine.

For each method x backbone x input size x precision: one training step's samples/s (forward
under autocast, backward, gradient clipping, AdamW: what the trainer does), its peak memory
(process RSS high-water mark on CPU, `max_memory_allocated` on GPU) and its MFU: the step's
model FLOPs (`jepalab.flops.count_step_flops`: matmuls, convolutions and attention, forward
and backward) per second over the peak of a large GEMM of the same dtype, measured in the
same run on the same threads or GPU (just before and just after each row, the better of the
two, since a shared machine's speed drifts).

    python benchmarks/throughput.py [--methods ijepa lejepa] [--archs vit_nano vit_tiny vit_small]
        [--sizes 32 224] [--precisions fp32 bf16] [--batch 0] [--steps 5] [--device cpu]
        [--compile] [--breakdown] [--json out.json]
    python benchmarks/throughput.py --contended [--policies NAME ...]

Input size 32 uses patch 4 (64 tokens), 224 uses patch 16 (196 tokens), as the recipes and
ViT-S/16 do. Batch 0 picks 128 at 32 px and 16 at 224 px.

--breakdown (CPU) profiles one more step of each row and says where its time goes: the
share of the operators' time spent in matrix products (matmuls, convolutions, batched
matmuls of attention), the rate those reach on the step's counted FLOPs (all of which are
theirs), and the largest of the other operators. MFU is about the product of the two: a
row falls short either because its matrices are small (a low rate) or because of the work
around them (copies into attention's head layout, GELU, softmax, norms, concatenations).

--contended measures what happens when another process takes a core: the vit_nano I-JEPA
step at the first of --sizes, idle and beside one busy single-threaded process, in fresh
child processes (OpenMP reads its settings when torch loads), once per thread policy:
jepalab's defaults (jepalab/__init__.py) against the alternatives named by --policies.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
import jepalab  # noqa: E402, F401  (its OpenMP defaults, before torch loads)

POLICIES = {  # environment of a child process, on top of the parent's (without OpenMP's)
    "jepalab default": {},
    "all cores, spinning waits (OpenMP's default)": {"OMP_WAIT_POLICY": "ACTIVE"},
    "all cores, GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}


def gemm_peak(dtype, device, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an n x n x n matmul in `dtype`, the best of `repeats` (a peak)."""
    import torch

    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    times = []
    for _ in range(repeats + 1):
        _sync(device)
        began = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - began)
    return 2 * n ** 3 / min(times[1:])


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# Every step, counted or timed, draws its masks from this seed, so each timed step does the
# counted step's work: I-JEPA's token counts change with the draw (vit_nano 69-86 GFLOP a
# step over five draws), and one draw's FLOPs over other draws' times misstated MFU.
STEP_SEED = 1
MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul",
           "aten::mkldnn_convolution", "aten::convolution_backward"}


def breakdown(step, flops: float) -> dict:
    """Profile one call of `step` (CPU operators' self time): the share in matrix products,
    their FLOP rate on `flops`, and the four largest other operators with their shares."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMULS)
    others = sorted((e for e in events if e.key not in MATMULS),
                    key=lambda e: -e.self_cpu_time_total)[:4]
    return {"matmul_share": matmul / total, "matmul_gflops": flops / (matmul * 1e-6) / 1e9,
            "largest_others": ", ".join(f"{e.key.removeprefix('aten::')} "
                                        f"{100 * e.self_cpu_time_total / total:.0f}%"
                                        for e in others)}


def measure(method_name: str, arch: str, size: int, precision: str, batch: int, steps: int,
            device, compiled: bool = False, profiled: bool = False) -> dict:
    """One configuration: FLOPs per step, median step time over `steps` (after 2 warm-up
    steps), samples/s, peak memory; `compiled`: with train.compile's compiled blocks, and
    the time the first steps took over the eager median (the compile time)."""
    import torch

    from jepalab.build import build_method
    from jepalab.config import load_config
    from jepalab.flops import count_step_flops
    from jepalab.parallel import compile_blocks
    from jepalab.train import autocast, parameter_groups

    patch = 4 if size <= 64 else 16
    cfg = load_config(f"{method_name}-shapes", [f"model.arch={arch}", f"model.patch_size={patch}",
                                                f"data.image_size={size}"])
    torch.manual_seed(0)
    method = build_method(cfg, 10).to(device)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    step_batch = {"images": images, "labels": torch.zeros(batch, dtype=torch.long, device=device)}
    torch.manual_seed(STEP_SEED)
    flops = count_step_flops(method, step_batch)
    if compiled:
        compile_blocks(method)
    optimizer = torch.optim.AdamW(parameter_groups(method), lr=1e-4)
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def one_step():
        torch.manual_seed(STEP_SEED)
        with autocast(device, precision):
            loss = method(step_batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        method.on_step_end(0.5)
        _sync(device)

    times = []
    for _ in range(steps + 2):
        _sync(device)
        began = time.perf_counter()
        one_step()
        times.append(time.perf_counter() - began)
    step = statistics.median(times[2:])
    where_time_goes = breakdown(one_step, flops) if profiled and device.type == "cpu" else {}
    return {**where_time_goes, "method": method_name, "arch": arch, "size": size, "patch": patch,
            "precision": precision + (" compiled" if compiled else ""), "batch": batch,
            "step_ms": 1e3 * step, "warmup_s": sum(times[:2]) - 2 * step,
            "samples_per_s": batch / step, "gflop_per_step": flops / 1e9,
            "achieved_gflops": flops / step / 1e9, "peak_memory_mb": _peak_memory_mb(device)}


def table(rows: list[dict]) -> str:
    profiled = any("matmul_share" in r for r in rows)
    extra = " time in matmuls | their GFLOP/s (of the peak) | largest other operators |" \
        if profiled else ""
    lines = ["| method | arch | px / patch | precision | batch | step ms | samples/s | "
             "GFLOP/step | GFLOP/s | GEMM peak GFLOP/s | MFU | peak MB so far |" + extra,
             "|" + "---|" * (15 if profiled else 12)]
    for r in rows:
        peak = r["gemm_peak_gflops"]
        line = (f"| {r['method']} | {r['arch']} | {r['size']} / {r['patch']} | "
                f"{r['precision']} | {r['batch']} | {r['step_ms']:.0f} | "
                f"{r['samples_per_s']:.1f} | {r['gflop_per_step']:.1f} | "
                f"{r['achieved_gflops']:.1f} | {peak:.0f} | {100 * r['mfu']:.0f}% | "
                f"{r['peak_memory_mb']:.0f} |")
        if profiled:
            line += (f" {100 * r['matmul_share']:.0f}% | {r['matmul_gflops']:.0f} "
                     f"({100 * r['matmul_gflops'] / peak:.0f}%) | {r['largest_others']} |"
                     if "matmul_share" in r else " | | |")
        lines.append(line)
    return "\n".join(lines)


def run_throughput(args) -> None:
    import torch

    from jepalab.train import native_bf16

    device = torch.device(args.device)
    native = native_bf16(device)  # emulated bf16 ran a 1024 GEMM at 0.6 GFLOP/s on 2 cores

    def peak(precision: str) -> float:
        """GFLOP/s of the precision's GEMM now (a shared machine's speed drifts, so each
        row is set against GEMMs timed just before and just after it, the better one)."""
        if precision == "fp32":
            return gemm_peak(torch.float32, device) / 1e9
        return gemm_peak(torch.bfloat16, device, n=2048 if native else 512) / 1e9

    precisions = args.precisions if native else [p for p in args.precisions if p != "bf16"]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads, OMP_WAIT_POLICY " \
        f"{os.environ.get('OMP_WAIT_POLICY', '(unset)')}"
    fp32, bf16 = peak("fp32"), peak("bf16")
    print(f"{where}; torch {torch.__version__}; GEMM 2048^3 peak: fp32 {fp32:.0f} GFLOP/s, "
          f"bf16 {bf16:.0f} GFLOP/s ({bf16 / fp32:.2f}x)", flush=True)
    if precisions != args.precisions:
        print("no bf16 rows: this device has no native bf16 matmuls (AVX512-BF16 or AMX on "
              "CPUs), so bf16 is emulated, far slower than fp32", flush=True)
    rows = []
    for method in args.methods:
        for arch in args.archs:
            for size in args.sizes:
                for precision in precisions:
                    batch = args.batch or (128 if size <= 64 else 16)
                    for compiled in (False, True) if args.compile else (False,):
                        before = peak(precision)
                        row = measure(method, arch, size, precision, batch, args.steps,
                                      device, compiled, args.breakdown)
                        row["gemm_peak_gflops"] = max(before, peak(precision))
                        row["mfu"] = row["achieved_gflops"] / row["gemm_peak_gflops"]
                        rows.append(row)
                        print(f"  {method} {arch} {size}px {row['precision']}: "
                              f"{row['samples_per_s']:.1f} samples/s, first two steps "
                              f"{row['warmup_s']:.1f} s over the median", flush=True)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"device": where, "rows": rows}, indent=1))


def child(args) -> None:
    """One contended-measurement child: the vit_nano I-JEPA step at the first --sizes."""
    import torch

    row = measure("ijepa", "vit_nano", args.sizes[0], "fp32", 128, args.steps,
                  torch.device("cpu"))
    print(json.dumps({"samples_per_s": row["samples_per_s"], "threads": torch.get_num_threads(),
                      # libgomp lets an explicit GOMP_SPINCOUNT override the policy's
                      "wait_policy": ", ".join(
                          f"{key}={os.environ[key]}" for key in ("OMP_WAIT_POLICY",
                                                                 "GOMP_SPINCOUNT")
                          if os.environ.get(key))}))


def run_child(policy_env: dict, steps: int, size: int) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(policy_env)
    out = subprocess.run([sys.executable, __file__, "--child", "--steps", str(steps), "--sizes",
                          str(size)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_contended(args) -> None:
    rows = []
    for name in args.policies:
        idle = run_child(POLICIES[name], args.steps, args.sizes[0])
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(1)
            busy = run_child(POLICIES[name], args.steps, args.sizes[0])
        finally:
            hog.kill()
            hog.wait()
        rows.append((name, idle, busy))
        print(f"  {name}: idle {idle['samples_per_s']:.0f}, beside a busy process "
              f"{busy['samples_per_s']:.0f} samples/s", flush=True)
    print(f"vit_nano I-JEPA step, {args.sizes[0]} px, batch 128, fp32, {os.cpu_count()} cores")
    print("| threads policy | threads | wait settings | idle samples/s | beside one busy "
          "process | ratio |\n|---|---|---|---|---|---|")
    for name, idle, busy in rows:
        print(f"| {name} | {idle['threads']} | {idle['wait_policy'] or '(unset)'} | "
              f"{idle['samples_per_s']:.0f} | {busy['samples_per_s']:.0f} | "
              f"{busy['samples_per_s'] / idle['samples_per_s']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["ijepa", "lejepa"])
    parser.add_argument("--archs", nargs="+", default=["vit_nano", "vit_tiny", "vit_small"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[32, 224])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"],
                        choices=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default="")
    parser.add_argument("--compile", action="store_true",
                        help="each row also with train.compile's compiled blocks")
    parser.add_argument("--breakdown", action="store_true",
                        help="profile one more step of each row (CPU): time in matmuls, "
                             "their FLOP rate, the largest other operators")
    parser.add_argument("--contended", action="store_true")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
    elif args.contended:
        run_contended(args)
    else:
        run_throughput(args)


if __name__ == "__main__":
    main()
