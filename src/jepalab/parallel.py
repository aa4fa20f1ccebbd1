"""The engines of a multi-process run (torchrun), chosen by train.parallel.

ddp   every process holds the whole method; gradients are all-reduced (DistributedDataParallel).
fsdp  FSDP2: parameters, gradients and optimiser state are sharded over the processes on a
      1-D device mesh. Every transformer block of jepalab.nn is one unit (gathered for its
      forward and backward, then freed), the method itself one more (embeddings, norms,
      heads). A teacher is a copy of its student, so its blocks and tensors are sharded the
      same way and its EMA update (nn/ema.py) is a local operation on each process's shards.

The trainer calls `wrap`, `Unsharded` and `compile_blocks`; none knows a method by name.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from jepalab.distributed import World, full_tensor
from jepalab.nn.heads import world_batchnorm
from jepalab.nn.predictor import AdaLNBlock
from jepalab.nn.vit import Block

BLOCKS = (Block, AdaLNBlock)  # the transformer blocks: one FSDP2 unit each


def wrap(method: nn.Module, engine: str, world: World, device: torch.device) -> nn.Module:
    """The module the training loop calls: `method` itself in one process; a DDP replica;
    or with engine "fsdp", `method` sharded in place (make its optimiser after this: FSDP2
    replaces the parameters with their shards)."""
    if world.size == 1:
        return method
    if device.type == "cuda":  # projectors' BatchNorm over the global batch
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
    else:  # SyncBatchNorm runs on GPUs only
        world_batchnorm(method)
    if engine == "ddp":
        return nn.parallel.DistributedDataParallel(
            method, device_ids=[device.index] if device.type == "cuda" else None)
    shard(method, device, world.size)
    return method


def shard(method: nn.Module, device: torch.device, processes: int) -> None:
    """FSDP2 over all `processes`: fully_shard on each transformer block, then on `method`."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if device.type == "cuda":
        torch.cuda.set_device(device)  # the mesh puts each process on its current GPU
    mesh = init_device_mesh(device.type, (processes,))
    for block in blocks(method):
        fully_shard(block, mesh=mesh)
    fully_shard(method, mesh=mesh)


def blocks(method: nn.Module) -> list[nn.Module]:
    """The transformer blocks of `method`, in module order."""
    return [m for m in method.modules() if isinstance(m, BLOCKS)]


def compile_blocks(method: nn.Module) -> None:
    """torch.compile each transformer block in place (train.compile=true). The blocks are
    the step's compute; masks, views and losses stay eager: their shapes depend on the data
    drawn (torch.compile of a whole I-JEPA step fails in the mask sampler)."""
    for block in blocks(method):
        block.compile()


class Unsharded:
    """A part of the method that runs outside the training step (the collapse monitor's
    encoder), as a plain module on the main process.

    Made before `wrap`. Under FSDP2 the part is sharded and its shards are gathered only
    inside the method's own forward, so the main process keeps a copy, which `get` refreshes
    from the shards (a collective: every process calls it) and returns; the others get None.
    Otherwise `get` returns the live part on the main process."""

    def __init__(self, part: nn.Module, engine: str, world: World):
        self.sharded, self.is_main = engine == "fsdp" and world.size > 1, world.is_main
        self.copy = copy.deepcopy(part) if self.sharded and world.is_main else None

    def get(self, part: nn.Module) -> nn.Module | None:
        """`part`, of the wrapped method, as a plain module on the main process, else None."""
        if self.sharded:
            whole = {key: full_tensor(value) for key, value in part.state_dict().items()}
            if self.copy is not None:
                self.copy.load_state_dict(whole)
            part = self.copy
        return part if self.is_main else None
