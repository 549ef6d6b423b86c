"""Turning a user's ``--device`` choice into a torch device, with a one-line error for a bad one, and the
CPU threads each of several worker processes may use, or one process on a machine others keep busy."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import cv2
import torch

from synthiqa.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else the CPU; ``cpu``, ``cuda`` or ``cuda:N`` as given.

    An unknown name, a device type other than CPU/CUDA, or CUDA on a machine without it is a
    one-line ``ConfigError``.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return device


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else all of them), >= 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads_per_worker(workers: int) -> int:
    """Intra-op threads (torch, OpenCV) for each of ``workers`` processes so that together they do not
    oversubscribe the available cores: ``available_cores() // workers``, at least 1."""
    return max(1, available_cores() // max(1, workers))


#: Samples of the run queue ``busy_elsewhere`` takes (their median), and the seconds between them.
RUN_QUEUE_SAMPLES, RUN_QUEUE_INTERVAL = 5, 0.002


def _running_threads(stat_files: list[Path]) -> int:
    """How many of the ``/proc/.../stat`` files (one thread each) are in state R (running or runnable)."""
    running = 0
    for path in stat_files:
        try:
            state = path.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):  # the thread ended while being read
            continue
        running += state == "R"
    return running


def busy_elsewhere(proc: Path = Path("/proc")) -> int:
    """Threads of other processes running or waiting for a core right now: the kernel's run queue
    (``/proc/loadavg``'s running count) less this process's running threads, the median of
    ``RUN_QUEUE_SAMPLES`` looks; 0 where ``/proc`` is not there."""
    loadavg = proc / "loadavg"
    if not loadavg.is_file():
        return 0
    counts = []
    for i in range(RUN_QUEUE_SAMPLES):
        if i:
            time.sleep(RUN_QUEUE_INTERVAL)
        try:
            queue = int(loadavg.read_text().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            return 0
        own = _running_threads(sorted((proc / "self" / "task").glob("*/stat")))
        counts.append(max(0, queue - max(own, 1)))
    return int(statistics.median(counts))


def threads_for_load() -> int:
    """Intra-op threads for one process that shares the machine: the cores it may run on less the
    threads other processes keep running (``busy_elsewhere``), at least 1. On a quiet machine every
    core; with five such jobs on two cores, one each, so no job's threads wait on each other for a core
    (torch's thread pool spins at each operation's end for threads that are not running)."""
    return max(1, available_cores() - busy_elsewhere())


def share_cores(threads: int | None = None) -> int:
    """Sets torch's and OpenCV's intra-op threads to ``threads`` (None: ``threads_for_load()``) and
    returns the count."""
    n = threads or threads_for_load()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    cv2.setNumThreads(n)
    return n
