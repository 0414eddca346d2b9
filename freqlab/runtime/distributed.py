"""Running on several processes with torch.distributed (launched by ``torchrun``); a no-op in one process.

freqlab has no cluster code of its own. Under ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
the rendezvous variables) :func:`setup` initialises the default process group, NCCL when the device is a GPU and
gloo on CPUs, and gives each rank its device (``cuda:LOCAL_RANK``). A Python user who initialised a process group
themselves keeps theirs. Outside torchrun every function here acts as for a single process of rank 0.

The sweep and the fine-tuning loop call :func:`setup` themselves, so ``torchrun ... -m freqlab sweep`` and the
Python API under ``torchrun`` need nothing more.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Sequence

import torch
import torch.distributed as dist

from freqlab.runtime.devices import resolve_device

__all__ = ["setup", "shutdown", "is_distributed", "rank", "world_size", "is_main", "barrier", "all_gather_objects",
           "all_reduce_sum", "shard", "backend_for", "raise_on_every_rank"]

_OWNED = False  # whether freqlab initialised the process group (and so may destroy it)


def launched() -> bool:
    """True when this process was started by torchrun (or an equivalent launcher) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA devices, gloo for everything else."""
    return "nccl" if device.type == "cuda" else "gloo"


def setup(device: str | torch.device | None = "auto") -> torch.device:
    """This rank's device; initialises the process group first when launched by torchrun and none exists.

    ``device`` as :func:`freqlab.runtime.devices.resolve_device`. With several processes, a CUDA device without an index
    becomes ``cuda:LOCAL_RANK`` (one GPU per process) and is made current. Raises ValueError when a process group
    exists whose backend cannot serve the device (gloo with CUDA tensors is fine; NCCL with CPU tensors is not).
    """
    global _OWNED
    dev = resolve_device(device)
    if launched() or dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", local % max(torch.cuda.device_count(), 1))
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
    if launched() and not dist.is_initialized():
        dist.init_process_group(backend_for(dev), timeout=datetime.timedelta(minutes=30))
        _OWNED = True
    if dist.is_initialized() and dist.get_backend() == "nccl" and dev.type != "cuda":
        raise ValueError(f"the process group uses NCCL, which needs CUDA tensors, but the device is {dev}; "
                         f"use --device cuda, or initialise the group with gloo")
    return dev


def shutdown() -> None:
    """Destroy the process group if freqlab created it (the CLI calls this at exit)."""
    global _OWNED
    if _OWNED and dist.is_initialized():
        dist.destroy_process_group()
    _OWNED = False


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0: the process that writes files, prints and shows progress."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in one process."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks, in place (returns ``t``); unchanged in one process."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def shard(items: Sequence[Any]) -> list[Any]:
    """This rank's share of ``items``: every ``world_size``-th item from position ``rank`` (all of them alone)."""
    return list(items[rank():: world_size()])


def raise_on_every_rank(error: BaseException | None) -> None:
    """Raise ``error``; with several processes, raise on every rank if any rank failed (no rank waits forever)."""
    if not is_distributed():
        if error is not None:
            raise error
        return
    messages = all_gather_objects(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    failed = [(r, m) for r, m in enumerate(messages) if m is not None]
    if failed:
        r, m = failed[0]
        raise ValueError(f"rank {r} failed: {m}")
