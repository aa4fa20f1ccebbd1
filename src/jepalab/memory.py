"""Peak memory of a measured stretch of work: CUDA's allocator peak on a GPU, the process's
resident-memory high-water mark (VmHWM, reset through /proc) on Linux CPUs."""
from __future__ import annotations

import gc
import resource
import sys
from pathlib import Path

import torch


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
