"""The Ray engine: the plan's tasks as a Ray Dataset, the chunk step in ``map_batches`` actors.

Each task becomes one row holding a compact description (references, stems, chunk starts; the jobs are
planned again on the actor, they are pure functions of the options), so the driver never holds images,
rows or job lists. ``map_batches`` runs ``ChunkActor`` (a callable class: one chunk runner, so one
distortion engine and one full-reference metric state, per actor; ``concurrency=workers``, one CPU each,
and one GPU each with a CUDA device). Actors write their outputs themselves (temporary name + rename;
records after images) and return only counts; the driver builds the final files from what is on disk,
as ``--resume`` and ``merge`` do. A task that Ray retries (a worker died) writes the same bytes again.

``--ray-address`` joins a cluster (``auto``: the running one); without it a local instance is started
with as many CPUs as the machine has (at least ``workers``) and no dashboard.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import socket
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthiqa.datasets.builtin import builtin_reference_images
from synthiqa.datasets.generation.chunk import ChunkRunner, run_tasks
from synthiqa.datasets.generation.config import GenerateConfig
from synthiqa.datasets.generation.plan import RefPlan, Task, WorkItem, chunks, plan_jobs
from synthiqa.datasets.references import Reference
from synthiqa.errors import ConfigError

#: What the missing extra is called (one line, checked before anything is scanned).
MISSING_RAY = "--engine ray needs Ray Data: pip install 'synthiqa[ray]'"
#: Seconds to wait for a TCP connection to ``--ray-address HOST:PORT`` before calling it unreachable.
CONNECT_TIMEOUT_S = 5.0
#: Tasks per Ray Data block, at most: a block is what one actor call receives and what progress counts.
TASKS_PER_BLOCK = 16


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(MISSING_RAY) from None
    return ray


def _reachable(address: str) -> None:
    """A one-line error unless ``HOST:PORT`` (optionally ``ray://``) accepts a TCP connection."""
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r}: give HOST:PORT (e.g. 10.0.0.1:6379) or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConfigError(f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc})"
                          ) from None


def connect(cfg: GenerateConfig) -> None:
    """Join ``cfg.ray_address`` or start a local Ray instance (once per process); one-line errors."""
    ray = _ray()
    address = cfg.ray_address
    if address is not None and address != "auto":
        _reachable(address)
    if ray.is_initialized():
        return
    local = address is None
    try:
        ray.init(address=address, num_cpus=max(cfg.workers, os.cpu_count() or 1) if local else None,
                 include_dashboard=False if local else None, log_to_driver=False, logging_level="error",
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = "a local Ray instance" if local else f"--ray-address {address}"
        raise ConfigError(f"{where}: cannot connect ({first})") from None
    _quiet(ray)


def _quiet(ray: Any) -> None:
    """synthiqa shows its own progress: no Ray Data bars, start and finish lines."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def encode_task(task: Task) -> bytes:
    """A compact, picklable description of ``task``: per item the reference, its stem and scan position,
    the starts of its chunks and the reference copies to write (the jobs are planned again)."""
    items = [(item.plan.ref.name, None if item.plan.ref.path is None else str(item.plan.ref.path),
              item.plan.ref.size, item.plan.stem, item.plan.ordinal,
              tuple(c[0].index for c in item.chunks), tuple(str(p) for p in item.ref_files))
             for item in task.items]
    return pickle.dumps((task.shard, items), protocol=pickle.HIGHEST_PROTOCOL)


def decode_task(data: bytes, cfg: GenerateConfig) -> Task:
    """The task ``encode_task`` described, its jobs planned from the options."""
    shard, items = pickle.loads(data)
    out = []
    for name, path, size, stem, ordinal, starts, ref_files in items:
        ref = Reference(name, None if path is None else Path(path), tuple(size))
        plan = RefPlan(ref, stem, plan_jobs(name, stem, cfg), ordinal)
        by_start = {c[0].index: c for c in chunks(plan.jobs, cfg.batch_size)}
        out.append(WorkItem(plan, tuple(by_start[s] for s in starts), tuple(Path(p) for p in ref_files)))
    return Task(tuple(out), shard)


class ChunkActor:
    """One Ray actor: a chunk runner on its device (one engine and one FR metric state), one torch and
    OpenCV thread (Ray gives it one CPU); each call runs a batch of tasks and returns their counts."""

    def __init__(self, cfg: GenerateConfig, out: str, device: str) -> None:
        import cv2


        torch.set_num_threads(1)
        if cv2.getNumThreads() != 1:  # Ray gives the actor one CPU
            cv2.setNumThreads(1)
        self.cfg = cfg
        self.out = Path(out)
        self.device = torch.device(device)
        self.runner = ChunkRunner(cfg, self.device)
        self.arrays: dict[str, np.ndarray] = {}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tasks = [decode_task(bytes(b), self.cfg) for b in batch["task"]]
        if not self.arrays and any(i.plan.ref.path is None for t in tasks for i in t.items):
            self.arrays = dict(builtin_reference_images())
        written, skipped = run_tasks(tasks, self.cfg, self.device, self.out, self.arrays, 0, lambda n: None,
                                     runner=self.runner)
        return {"written": np.array([written], dtype=np.int64), "skipped": np.array([json.dumps(skipped)])}


def _rows(work: Iterable[WorkItem | Task]) -> Iterator[tuple[bytes, int]]:
    for w in work:
        task = w if isinstance(w, Task) else Task((w,))
        yield encode_task(task), task.images


def run(work: Iterable[WorkItem | Task], cfg: GenerateConfig, device: torch.device, out: Path,
        arrays: dict[str, np.ndarray], reporter: Any,
        check: Callable[[], None]) -> tuple[int, list[tuple[str, str]]]:
    """Run the work on Ray Data; returns images written and references skipped at decode time."""
    ray = _ray()
    connect(cfg)
    rows = list(_rows(work))
    if not rows:
        return 0, []
    total = sum(n for _, n in rows)
    blocks = max(math.ceil(len(rows) / TASKS_PER_BLOCK), min(len(rows), 4 * cfg.workers))
    ds = ray.data.from_items([{"task": blob} for blob, _ in rows], override_num_blocks=blocks)
    del rows
    gpu = device.type == "cuda"
    # Ray Data's actor pools restart dead actors and retry their tasks by default
    ds = ds.map_batches(ChunkActor, batch_size=1, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=cfg.workers), num_cpus=1,
                        num_gpus=1 if gpu else None,
                        fn_constructor_kwargs={"cfg": cfg, "out": str(out), "device": device.type})
    written = 0
    skipped: dict[str, str] = {}
    with reporter.progress(total, f"generate {cfg.mode}/{cfg.profile} (ray)") as advance:
        with warnings.catch_warnings():  # fewer tasks than actors is fine: the job is small
            warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                check()
                n = int(batch["written"].sum())
                written += n
                advance(n)
                for text in batch["skipped"]:
                    for label, reason in json.loads(str(text)):
                        if label not in skipped:
                            skipped[label] = reason
                            reporter.warn(f"skipped {label}: {reason}")
    return written, list(skipped.items())
