"""torch.distributed set-up for runs launched with torchrun (gloo on CPU, nccl on GPU)."""
from __future__ import annotations

import os
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


@torch.no_grad()
def all_gather_tensor(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` (N, ...) from every process in rank order (no gradient); `x` itself
    outside torch.distributed. Queues and in-batch negatives see the global batch."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)
