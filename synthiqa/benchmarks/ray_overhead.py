"""Ray Data's fixed costs for ``synthiqa generate --engine ray``.

``python -m synthiqa.benchmarks.ray_overhead [TASKS] [WORKERS]`` prints them as a table.

Measured on a local Ray instance (started first, not timed), with the engine's own plumbing: rows of a
``from_items`` dataset through ``map_batches`` on an actor pool (``ActorPoolStrategy``, one CPU per actor,
``batch_size=1``), results read back with ``iter_batches``:

- per actor: the wall time of a one-row dataset through ``engines.ray.ChunkActor`` (a synthiqa actor is
  built: torch, OpenCV and the chunk runner imported and constructed; the row is an empty task) minus the
  same through a do-nothing actor, and the do-nothing actor's own start-up (one-row run);
- per task: (wall time of N empty rows - wall time of 1 row) / (N - 1) with the do-nothing actor, i.e.
  what each task of a run costs beyond its work (scheduling, serialisation, block hand-off).

Each figure is the median of ``repeat`` runs.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

from synthiqa.datasets.generation.config import GenerateConfig
from synthiqa.datasets.generation.engines.ray import TASKS_PER_BLOCK, ChunkActor, connect


class _Noop:
    """An actor that does nothing per row."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"written": np.zeros(len(batch["task"]), dtype=np.int64)}


@dataclass
class RayOverhead:
    """Seconds: start-up of a do-nothing actor, extra start-up of a synthiqa actor, cost of one task."""

    actor_start_s: float
    synthiqa_actor_extra_s: float
    per_task_s: float
    tasks: int
    workers: int


def _wall(ray, rows: int, fn, workers: int, blocks: int, **kwargs) -> float:
    ds = ray.data.from_items([{"task": b""} for _ in range(rows)], override_num_blocks=blocks)
    t0 = time.perf_counter()
    for _ in ds.map_batches(fn, batch_size=1, batch_format="numpy", num_cpus=1,
                            compute=ray.data.ActorPoolStrategy(size=workers), **kwargs).iter_batches(
                                batch_size=None, batch_format="numpy"):
        pass
    return time.perf_counter() - t0


def measure(tasks: int = 2000, workers: int = 2, repeat: int = 3) -> RayOverhead:
    """Start a local Ray instance (if none is running) and measure; see the module docstring."""

    cfg = GenerateConfig(out="unused", workers=workers, engine="ray", labels=("level",)).resolved()
    connect(cfg)
    import ray

    blocks = max(-(-tasks // TASKS_PER_BLOCK), 4 * workers)
    kwargs = {"fn_constructor_kwargs": {"cfg": cfg, "out": "unused", "device": "cpu"}}

    class _Empty(ChunkActor):
        def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"written": np.zeros(len(batch["task"]), dtype=np.int64)}

    noop_one = statistics.median(_wall(ray, 1, _Noop, 1, 1) for _ in range(repeat))
    ours_one = statistics.median(_wall(ray, 1, _Empty, 1, 1, **kwargs) for _ in range(repeat))
    noop_many = statistics.median(_wall(ray, tasks, _Noop, workers, blocks) for _ in range(repeat))
    noop_first = statistics.median(_wall(ray, 1, _Noop, workers, 1) for _ in range(repeat))
    return RayOverhead(noop_one, ours_one - noop_one, (noop_many - noop_first) * workers / (tasks - 1),
                       tasks, workers)


def main(argv: list[str]) -> None:
    tasks = int(argv[0]) if argv else 2000
    workers = int(argv[1]) if len(argv) > 1 else 2
    r = measure(tasks, workers)
    print(f"Ray {__import__('ray').__version__}, local instance, {workers} actors, median of 3 runs")
    print("| cost | seconds |\n|---|---:|")
    print(f"| one-row run, do-nothing actor (Ray Data execution + actor start) | {r.actor_start_s:.2f} |")
    print(f"| extra start-up of a synthiqa actor (torch, OpenCV, chunk runner) | "
          f"{r.synthiqa_actor_extra_s:.2f} |")
    print(f"| per task, per actor ({tasks} empty tasks on {workers} actors) | {r.per_task_s:.4f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
