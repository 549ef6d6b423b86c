"""The local engine: this machine's cores or one accelerator.

On an accelerator one process runs the pipeline with thread pools for decoding and for encoding/writing
(``workers`` threads each), the distortion batched on the device, one chunk per batch. On the CPU
``workers`` processes run it, each in one thread with one torch/OpenCV thread, so the stages overlap
across processes without threads contending for the cores; they take tasks (runs of a reference's
chunks, ``plan.split_units``, guided self-scheduling, or whole WebDataset shards) from a shared counter
as they become free, so they finish together.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthiqa.datasets.generation.chunk import run_tasks
from synthiqa.datasets.generation.config import GenerateConfig
from synthiqa.datasets.generation.plan import Task, WorkItem, part_name, tasks_of
from synthiqa.datasets.manifest import PARTS_DIR
from synthiqa.errors import DatasetError, SynthiqaError

#: How often the parent of the CPU worker processes updates the progress bar and checks for Ctrl-C (s).
PROGRESS_POLL_S = 0.2


def processes_for(cfg: GenerateConfig, device: torch.device, tasks: int) -> int:
    """Worker processes the local engine starts: ``workers`` on the CPU (at most one per task), 1 for the
    device pipeline."""
    return 1 if cfg.device_pipeline(device) else min(cfg.workers, tasks)


def run(work: Iterable[WorkItem | Task], cfg: GenerateConfig, device: torch.device, out: Path,
        arrays: dict[str, np.ndarray], reporter: Any,
        check: Callable[[], None]) -> tuple[int, list[tuple[str, str]]]:
    """Run the work here: worker processes on the CPU, else the threaded pipeline in this process."""
    tasks = tasks_of(work, 1 if cfg.device_pipeline(device) else cfg.workers)
    processes = processes_for(cfg, device, len(tasks))
    with reporter.progress(sum(t.images for t in tasks), f"generate {cfg.mode}/{cfg.profile}") as advance:
        if processes > 1:
            written, skipped = _run_processes(tasks, cfg, out, arrays, processes, advance, check)
        else:
            return run_tasks(tasks, cfg, device, out, arrays, cfg.workers, advance, reporter.warn, check)
    for label, reason in skipped:
        reporter.warn(f"skipped {label}: {reason}")
    return written, skipped


def _claimed(tasks: list[Task], counter: Any) -> Iterator[Task]:
    """The tasks this process claims from the shared ``counter``, one at a time, as it needs them."""
    while True:
        with counter.get_lock():
            i = counter.value
            counter.value = i + 1
        if i >= len(tasks):
            return
        yield tasks[i]


def _die_with_parent(parent: int) -> None:
    """Linux: have the kernel SIGKILL this worker when the parent dies (a hard-killed run leaves no
    orphans writing on; finished files stay and ``--resume`` redoes the rest). Elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


@contextlib.contextmanager
def _one_opencv_thread() -> Iterator[None]:
    """OpenCV at one thread while worker processes are forked: OpenCV 5's ``setNumThreads`` hangs in a
    forked child whose parent had started its thread pool, so forked workers inherit the setting instead."""
    import cv2

    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def _process_worker(index: int, queue: Any, tasks: list[Task], counter: Any, cfg: GenerateConfig,
                    out: Path, arrays: dict[str, np.ndarray], parent: int) -> None:
    """One CPU worker process: claims tasks until none is left and runs each through decode, distortion and
    encoding in its one thread (one torch and OpenCV thread). The processes fill the cores, so stages
    overlap across processes; threads inside each would only contend for the same cores."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers
    import cv2

    torch.set_num_threads(1)
    if cv2.getNumThreads() != 1:  # spawned; a forked worker has the parent's setting (_one_opencv_thread)
        cv2.setNumThreads(1)  # the processes fill the cores; inner threads would only add contention
    try:
        result = run_tasks(_claimed(tasks, counter), cfg, torch.device("cpu"), out, arrays, 0, lambda n: None)
        queue.put((index, None, result))
    except BaseException as exc:  # report every failure to the parent, which re-raises it
        error = exc if isinstance(exc, SynthiqaError) else DatasetError(
            f"worker process failed: {type(exc).__name__}: {exc}")
        queue.put((index, error, None))


def _run_processes(tasks: list[Task], cfg: GenerateConfig, out: Path, arrays: dict[str, np.ndarray],
                   processes: int, advance: Callable[[int], None],
                   check: Callable[[], None]) -> tuple[int, list[tuple[str, str]]]:
    """CPU path: ``processes`` worker processes taking the tasks in order from a shared counter (each
    process takes the next task when it is ready for one, so they finish together).

    Progress comes from the chunk records appearing on disk. An interruption or a failed worker
    terminates the others (finished files stay; ``--resume`` redoes only unfinished chunks).
    """
    import multiprocessing as mp
    import queue as queue_module

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    sizes = {part_name(i.plan.stem, c): len(c) for t in tasks for i in t.items for c in i.chunks}
    seen: set[str] = set()
    parts_dir = out / PARTS_DIR

    def poll() -> None:
        if parts_dir.is_dir():
            new = {p.stem for p in parts_dir.glob("*.json")} & sizes.keys() - seen
            seen.update(new)
            advance(sum(sizes[n] for n in new))

    results: Any = ctx.Queue()
    counter = ctx.Value("q", 0)
    args = (results, tasks, counter, cfg, out, arrays, os.getpid())
    procs = [ctx.Process(target=_process_worker, args=(i, *args), daemon=True, name=f"synthiqa-worker-{i}")
             for i in range(processes)]
    outcomes: dict[int, tuple[int, list[tuple[str, str]]]] = {}
    try:
        with _one_opencv_thread():
            for proc in procs:
                proc.start()
        while len(outcomes) < processes:
            check()
            try:
                index, error, result = results.get(timeout=PROGRESS_POLL_S)
            except queue_module.Empty:
                poll()
                dead = [p for i, p in enumerate(procs) if i not in outcomes and p.exitcode not in (None, 0)]
                if dead:
                    raise DatasetError(f"{dead[0].name} died (exit code {dead[0].exitcode}); "
                                       "rerun with --resume to finish") from None
                continue
            if error is not None:
                raise error
            outcomes[index] = result
        poll()
    finally:
        for proc in procs:
            if proc.is_alive() and len(outcomes) < processes:
                proc.terminate()
        for proc in procs:
            proc.join()
    skipped = dict(s for i in sorted(outcomes) for s in outcomes[i][1])  # one entry per reference
    return sum(o[0] for o in outcomes.values()), list(skipped.items())
