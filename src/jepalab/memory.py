"""Peak memory of a measured stretch of work: CUDA's allocator peak on a GPU, the process's
resident-memory high-water mark (VmHWM, reset through /proc) on Linux CPUs; and how the
C allocator keeps the memory torch frees on CPUs (`keep_freed_memory`)."""
from __future__ import annotations

import ctypes
import gc
import platform
import resource
import sys
from pathlib import Path

import torch

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(mmap_below: int = 32 << 20, trim_above: int = 128 << 20) -> bool:
    """Let glibc keep what torch frees on CPUs instead of handing it back to the kernel.

    torch's CPU tensors come from malloc. glibc serves blocks above its mmap threshold
    (128 KiB, raised as such blocks are freed) with fresh mappings and gives free memory at
    the top of its heap back once more than twice that threshold is free, so a loop that
    allocates and frees the same few-MiB tensors again and again (a planner's thousands of
    rollouts) faults every page of them in anew each time: the history-3 LeWM plan took
    90,000-135,000 minor page faults and 0.37 s of kernel time a plan on 2 cores, and
    1.28x longer, against none with these settings (benchmarks/planning.py
    --glibc-malloc; README, World models: plan time).

    Blocks under `mmap_below` come from the heap, and up to `trim_above` bytes of free heap
    are kept. The process's peak memory is unchanged; what it holds after a peak falls
    later, if ever. Linux with glibc only (elsewhere nothing is changed); returns whether
    both settings took."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # a glibc system without the usual soname: leave malloc as it is
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_below)) and \
        bool(libc.mallopt(M_TRIM_THRESHOLD, trim_above))


def reset_peak(device: torch.device) -> str:
    """Start a peak-memory measurement; return what it measures (for the table's footer)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "CUDA max_memory_allocated, reset before each method"
    try:  # Linux: "5" resets the process's resident-memory high-water mark, VmHWM
        Path("/proc/self/clear_refs").write_text("5")
        return "peak resident memory of the process (VmHWM), reset before each method"
    except OSError:
        return "peak resident memory of the process since it started (ru_maxrss; not reset)"


def read_peak(device: torch.device, measure: str) -> float:
    """MiB since `reset_peak`."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if "VmHWM" in measure:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB (bytes on macOS)
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
