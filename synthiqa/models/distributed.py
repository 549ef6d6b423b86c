"""Several training processes (``torchrun`` or ``synthiqa train --nproc N``): process-group set-up from
torchrun's environment, rank queries that also work in one process, and gathering per-rank results.

Backends: ``gloo`` on the CPU, ``nccl`` on CUDA (each rank on ``cuda:LOCAL_RANK``). Only rank 0 writes
files; the others wait at ``barrier()`` where they need what it wrote.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from synthiqa.errors import ConfigError

#: The variables torchrun sets for every process.
TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (nothing in one process)."""
    if is_distributed():
        dist.barrier()


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun (``WORLD_SIZE`` set by the launcher)."""
    return "TORCHRUN_ID" in os.environ or ("WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ)


def init_from_env(device: str = "auto") -> torch.device:
    """Join the process group torchrun describes (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT``): nccl when ``device`` is CUDA (``auto`` with CUDA present), else gloo. Returns this
    rank's device. A one-line error names the missing variables."""
    missing = [v for v in TORCHRUN_VARS if v not in os.environ]
    if missing:
        raise ConfigError(f"several processes need torchrun's environment; missing {', '.join(missing)} "
                          "(start with `torchrun --nproc-per-node N -m synthiqa train ...` or "
                          "`synthiqa train --nproc N ...`)")
    local = int(os.environ["LOCAL_RANK"])
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local} has no CUDA device (this machine has "
                              f"{torch.cuda.device_count()})")
        torch.cuda.set_device(local)
        target = torch.device("cuda", local)
    else:
        target = torch.device("cpu")
    if not is_distributed():
        dist.init_process_group("nccl" if cuda else "gloo")
    return target


def shutdown() -> None:
    if is_distributed():
        dist.destroy_process_group()


def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (``[value]`` in one process)."""
    if not is_distributed():
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(items: Sequence[Any]) -> list[Any]:
    """This rank's strided share of ``items`` (``items[rank::world]``); ``unshard`` restores the order."""
    return list(items[rank()::world_size()])


def unshard(parts: Sequence[Sequence[Any]]) -> list[Any]:
    """Interleave per-rank ``shard`` results back into the original order."""
    out: list[Any] = []
    longest = max((len(p) for p in parts), default=0)
    for i in range(longest):
        out += [p[i] for p in parts if i < len(p)]
    return out


def max_processes(device: str) -> int:
    """How many training processes this machine takes: one per CUDA device on CUDA, else one per CPU core."""
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return torch.cuda.device_count() if cuda else (os.cpu_count() or 1)
