"""torch.distributed set-up for runs launched with torchrun (gloo on CPU, nccl on GPU)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from jepalab.errors import DeviceError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device: torch.device) -> World:
    """Join the process group when launched by torchrun (WORLD_SIZE set); else one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str) -> torch.device:
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("train.device=cuda but this torch has no CUDA; install a CUDA "
                              "build of torch (README: GPUs) or use train.device=cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def broadcast_object(value, world: World):
    if world.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def cleanup(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def world_rank() -> int:
    """This process's rank in the default group (0 outside torch.distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes in the default group (1 outside torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _summed(x: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of `x` summed over processes (`x` itself is left as it is: autograd
    may hand the same gradient tensor to other consumers)."""
    total = x.clone(memory_format=torch.contiguous_format)
    dist.all_reduce(total)
    return total


class _GatherRows(torch.autograd.Function):
    """Every process's rows in rank order; backward: the gradients of every process's loss
    for this process's rows, summed. Our own instead of torch.distributed.nn.functional's:
    importing that package imports RPC's RemoteModule, after which a gloo process aborted at
    exit ("terminate called without an active exception") in 6 of 80 two-process runs."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rows = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        start = dist.get_rank() * ctx.rows
        return _summed(grad)[start:start + ctx.rows]


class _SumOverProcesses(torch.autograd.Function):
    """The sum of `x` over processes; its gradient is the sum of every process's gradient."""

    @staticmethod
    def forward(ctx, x):
        return _summed(x)

    @staticmethod
    def backward(ctx, grad):
        return _summed(grad)


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` (N, ...) from every process in rank order, with gradient: a process's
    `x` receives the sum of every process's gradient for its rows. `x` itself outside
    torch.distributed. Every process must call it with the same shape."""
    if world_size() == 1:
        return x
    return _GatherRows.apply(x.contiguous())


def world_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of `x` over processes, with gradient (the backward all-reduces the gradients);
    `x` itself outside torch.distributed."""
    if world_size() == 1:
        return x
    return _SumOverProcesses.apply(x) / world_size()


@torch.no_grad()
def all_gather_tensor(x: torch.Tensor) -> torch.Tensor:
    """`gather_batch` without gradient: queues and centres built from the global batch."""
    return gather_batch(x)


def is_shard(x: torch.Tensor) -> bool:
    """Whether `x` is a DTensor: this process's shard of an FSDP2 tensor. No DTensor exists
    before torch.distributed.tensor is imported, so runs that shard nothing skip its import
    (about a second)."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(x, module.DTensor)


def full_tensor(x: torch.Tensor) -> torch.Tensor:
    """`x` whole: a shard (`is_shard`) gathered from every process, which each must call in
    the same order; any other tensor as it is."""
    return x.full_tensor() if is_shard(x) else x


def shard_like(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A whole tensor laid out as `like`: this process's shard of it when `like` is a shard
    (cut locally, no communication: every process holds `value`), else on `like`'s device."""
    if not is_shard(like):
        return value.to(like.device)
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(value.to(like.device), like.device_mesh, like.placements,
                             src_data_rank=None)
