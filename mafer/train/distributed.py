"""One process or many: the few `torch.distributed` calls the engine needs.

Under ``torchrun --nproc-per-node N`` the environment holds ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; the engine then wraps the network in DistributedDataParallel (nccl on CUDA,
gloo on CPU), each rank takes its share of every batch, and rank 0 alone writes files.
Without those variables everything here degrades to the single-process case.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from mafer.device import pick_device


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: its rank, the number of processes and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device_request: str) -> DistEnv:
    """Join the process group when launched by torchrun; otherwise a single-process env."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_request, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                rank=rank, world_size=world_size)
    return DistEnv(rank, world_size, local_rank, device)


def teardown(env: DistEnv) -> None:
    """Leave the process group (if this process joined one)."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum a tensor over the processes (identity for one process)."""
    if env.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` for one process)."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(env: DistEnv) -> None:
    """Wait for every process (no-op for one process)."""
    if env.distributed:
        dist.barrier()
