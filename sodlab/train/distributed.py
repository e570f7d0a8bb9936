"""Multi-process training helpers: process group set-up from torchrun's environment,
reductions, and which process writes.

``torchrun --nproc_per_node N -m sodlab train ...`` sets ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; `init_from_env` turns them into a
process group (NCCL on GPU, gloo on CPU). Code that already initialised a process group
(tests, notebooks) is used as is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from ..device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: Optional[str | torch.device] = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group torchrun describes (if any) and pick this process's device.

    With ``device="auto"`` each process takes ``cuda:LOCAL_RANK`` when CUDA is present,
    else the CPU; the backend follows (NCCL for CUDA, gloo for CPU).
    """
    import datetime

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if dist.is_available() and not dist.is_initialized() and env_world_size() > 1:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return current(dev, local_rank)


def current(device: torch.device, local_rank: Optional[int] = None) -> DistInfo:
    """The `DistInfo` of an already initialised (or absent) process group."""
    if dist.is_available() and dist.is_initialized():
        lr = int(os.environ.get("LOCAL_RANK", dist.get_rank())) if local_rank is None else local_rank
        return DistInfo(dist.get_rank(), dist.get_world_size(), lr, device)
    return DistInfo(0, 1, 0, device)


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``t`` over processes (in place, returned); identity on one process."""
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every process."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (call once, at the end of a torchrun process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
