"""Several training processes (``torchrun`` or ``synthiqa train --nproc N``): process-group set-up from
torchrun's environment, rank queries that also work in one process, and gathering per-rank results.

Backends: ``gloo`` on the CPU, ``nccl`` on CUDA (each rank on ``cuda:LOCAL_RANK``). Only rank 0 writes
files; the others wait at ``barrier()`` where they need what it wrote.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from synthiqa.devices import available_cores
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


def launched_rank() -> int:
    """The rank torchrun gave this process (``RANK``; 0 when not launched by it)."""
    return int(os.environ.get("RANK", "0"))


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
    cuda = uses_cuda(device)
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


def shutdown(*, together: bool = True) -> None:
    """Leave the process group. ``together``: every rank first waits for the others, so none tears its
    connections down while a peer still has a collective in flight (gloo then aborts the process); a rank
    leaving on an error does not wait (the others may never arrive)."""
    if is_distributed():
        if together:
            dist.barrier()
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


def sharded(items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
    """``(j, item)`` for this rank's items: ``j = rank, rank + world, ...`` (every item in one process)."""
    r, w = rank(), world_size()
    for j, item in enumerate(items):
        if j % w == r:
            yield j, item


def gather_in_order(pieces: Sequence[Any]) -> list[Any]:
    """Every rank's results of ``sharded`` items (this rank's ``pieces``, in its order), back in item order
    on every rank. A collective call under ``torch.distributed``."""
    if not is_distributed():
        return list(pieces)
    r, w = rank(), world_size()
    mine = [(r + w * i, p) for i, p in enumerate(pieces)]
    everything = [x for part in gather_objects(mine) for x in part]
    return [p for _, p in sorted(everything, key=lambda t: t[0])]


def round_to_ranks(n: int) -> int:
    """``n`` rounded up to a multiple of the number of ranks (so every rank runs as many steps)."""
    w = world_size()
    return -(-n // w) * w


class RankSlice(Sampler[list[int]]):
    """This rank's batches of a batch sampler: batches ``rank, rank + W, ...``, as many on every rank (the
    last ``len % W`` batches are dropped; under one process every batch)."""

    def __init__(self, batches: Iterable[list[int]]):
        self.batches = batches

    def _mine(self) -> list[list[int]]:
        everything = list(self.batches)
        w = world_size()
        keep = len(everything) - len(everything) % w
        return everything[rank():keep:w]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._mine())

    def __len__(self) -> int:
        return len(self._mine())


def uses_cuda(device: str) -> bool:
    """Whether ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) means CUDA here."""
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def max_processes(device: str) -> int:
    """How many training processes this machine takes: one per CUDA device on CUDA, else one per CPU core this
    process may run on (its affinity mask)."""
    return torch.cuda.device_count() if uses_cuda(device) else available_cores()
