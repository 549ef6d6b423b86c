"""The plan: references + options -> jobs, chunks and work units (pure; no file is read or written).

Jobs are a pure function of (reference name, index, options) (``modes``); chunks are fixed slices of a
reference's job list (a resumed run keeps the first run's ``batch_size``). Output therefore does not
depend on engine, worker count, shard or interruption.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from synthiqa.datasets.generation.config import GenerateConfig
from synthiqa.datasets.generation.modes import Job, get_mode
from synthiqa.datasets.references import Reference


@dataclass(frozen=True)
class RefPlan:
    """What to make from one reference: its output stem (file names), its jobs, and its position in the
    reference scan (``ordinal``, which also places it in a WebDataset shard)."""

    ref: Reference
    stem: str
    jobs: tuple[Job, ...]
    ordinal: int = 0


@dataclass(frozen=True)
class WorkItem:
    """Consecutive unfinished chunks of one reference, and the reference files it writes.

    ``ref_files`` (the copies under ``references/``, and ``images/`` in grid mode, that are missing) are
    written by exactly one item of each reference.
    """

    plan: RefPlan
    chunks: tuple[tuple[Job, ...], ...]
    ref_files: tuple[Path, ...]


@dataclass(frozen=True)
class Task:
    """What an engine hands to one worker at a time: work items, and the WebDataset shard they make
    (None for image files; a shard's task holds all its references and is redone whole)."""

    items: tuple[WorkItem, ...]
    shard: str | None = None

    @property
    def images(self) -> int:
        return sum(len(c) for item in self.items for c in item.chunks)


def plan_jobs(ref_name: str, stem: str, cfg: GenerateConfig) -> tuple[Job, ...]:
    """Every job of one reference, a pure function of (reference name, options)."""
    return get_mode(cfg.mode).plan(ref_name, stem, cfg)


def stems(refs: Sequence[Reference], mode: str) -> dict[str, str]:
    """Output stem of each reference: its name, or ``I01, I02, ...`` in scan order (KADID layout)."""
    if not get_mode(mode).kadid_layout:
        return {r.name: r.name for r in refs}
    width = max(2, len(str(len(refs))))
    return {r.name: f"I{i:0{width}d}" for i, r in enumerate(refs, start=1)}


def chunks(jobs: tuple[Job, ...], size: int) -> list[tuple[Job, ...]]:
    """Fixed slices of ``size`` jobs (the last may be shorter)."""
    return [jobs[i:i + size] for i in range(0, len(jobs), size)]


def part_name(stem: str, chunk: tuple[Job, ...]) -> str:
    """The name of a chunk's record (``.synthiqa/parts/<name>.json``)."""
    return f"{stem}.{chunk[0].index:05d}"


def refs_per_shard(cfg: GenerateConfig) -> int:
    """References per WebDataset shard: ``shard_size`` images, rounded to whole references (at least 1)."""
    return max(1, round(cfg.shard_size / get_mode(cfg.mode).count(cfg)))


def shard_name(ordinal: int, cfg: GenerateConfig) -> str:
    """The WebDataset shard of the reference at scan position ``ordinal`` (blocks of ``refs_per_shard``),
    so a shard's content depends only on the references and options, never on ``--shard`` or workers."""
    return f"images-{ordinal // refs_per_shard(cfg):06d}.tar"


def reference_files(out: Path, stem: str, cfg: GenerateConfig) -> list[Path]:
    """The copies of a reference the output holds: ``references/``, and ``images/`` in KADID layout (image
    files only: shards keep the references beside them)."""
    files = [out / "references" / f"{stem}.{cfg.image_format}"]
    if get_mode(cfg.mode).kadid_layout and cfg.container == "files":
        files.append(out / "images" / f"{stem}.{cfg.image_format}")
    return files


def plan_work(refs: Iterable[tuple[int, Reference]], names: dict[str, str], cfg: GenerateConfig,
              out: Path, done_parts: set[str], done_shards: set[str]) -> Iterator[WorkItem | Task]:
    """The work left, lazily: one ``WorkItem`` per reference with unfinished chunks or missing copies
    (image files), or one ``Task`` per unfinished WebDataset shard (all its references, every chunk).

    ``refs`` are (scan position, reference) in scan order; ``done_parts`` the finished chunk records,
    ``done_shards`` the finished shards; ``out`` is only used to name files and to see which reference
    copies exist.
    """
    shard: str | None = None
    group: list[WorkItem] = []
    for ordinal, ref in refs:
        plan = RefPlan(ref, names[ref.name], plan_jobs(ref.name, names[ref.name], cfg), ordinal)
        all_chunks = tuple(chunks(plan.jobs, cfg.batch_size))
        missing = tuple(p for p in reference_files(out, plan.stem, cfg) if not p.is_file())
        if cfg.container != "webdataset":
            todo = tuple(c for c in all_chunks if part_name(plan.stem, c) not in done_parts)
            if todo or missing:
                yield WorkItem(plan, todo, missing)
            continue
        name = shard_name(ordinal, cfg)
        if name != shard and group:
            yield Task(tuple(group), shard if any(i.chunks for i in group) else None)
            group = []
        shard = name
        if name not in done_shards:
            group.append(WorkItem(plan, all_chunks, missing))
        elif missing:
            group.append(WorkItem(plan, (), missing))
    if group:
        yield Task(tuple(group), shard if any(i.chunks for i in group) else None)


#: Guided self-scheduling: a CPU work unit takes 1/(UNIT_SHARE * processes) of the chunks not yet handed
#: out, so units shrink towards the end of the run and the processes finish within about a chunk of
#: each other.
UNIT_SHARE = 2


def split_units(work: list[WorkItem], processes: int) -> list[WorkItem]:
    """``work`` (one item per reference) cut into units by guided self-scheduling (``UNIT_SHARE``): each
    unit takes ceil(unhanded chunks / (UNIT_SHARE * processes)) chunks, at most the rest of its reference
    and at least one. Every reference's chunks stay in order and the reference files go with its first
    unit. Output does not depend on the cut (chunks are fixed, jobs pure functions of the options)."""
    remaining = sum(len(item.chunks) for item in work)
    units = []
    for item in work:
        start = 0
        while True:
            size = max(1, math.ceil(remaining / (UNIT_SHARE * processes)))
            piece = item.chunks[start:start + size]
            units.append(WorkItem(item.plan, piece, item.ref_files if start == 0 else ()))
            start += len(piece)
            remaining -= len(piece)
            if start >= len(item.chunks):
                break
    return units


def tasks_of(work: Iterable[WorkItem | Task], processes: int) -> list[Task]:
    """Engine tasks: WebDataset shards as they are; image-file work cut by ``split_units`` (one item per
    task) when several processes share it."""
    work = list(work)
    shards = [w for w in work if isinstance(w, Task)]
    items = [w for w in work if isinstance(w, WorkItem)]
    if processes > 1:
        items = split_units(items, processes)
    return shards + [Task((item,)) for item in items]
