"""Turning a user's ``--device`` choice into a torch device, with a one-line error for a bad one, and the
CPU threads each of several worker processes may use."""

from __future__ import annotations

import os

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
