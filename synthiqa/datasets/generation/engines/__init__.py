"""Engines run a plan's tasks through the chunk step: ``local`` (this machine) and ``ray`` (Ray Data).

An engine is ``run(work, cfg, device, out, arrays, reporter, check) -> (written, skipped)``: it takes the
plan's work (``plan.plan_work``, a lazy iterator), writes every task's outputs under ``out``, shows
progress through ``reporter`` and calls ``check()`` (Ctrl-C) between results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def get_engine(name: str) -> Callable[..., Any]:
    """The ``run`` function of engine ``name`` (``local`` or ``ray``)."""
    if name == "ray":
        from synthiqa.datasets.generation.engines.ray import run
    else:
        from synthiqa.datasets.generation.engines.local import run
    return run
