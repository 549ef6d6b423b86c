"""The chunk step every engine runs: decode a reference, distort a chunk of its jobs, label, hand the
images and rows to the output (``output.Sink``).

``run_tasks`` is the pipeline (bounded memory whatever the folder size): decode a reference -> distort a
batch of its jobs and compute the labels -> encode and write the images (at most two chunks' worth
queued). With ``threads > 0`` (the local engine on an accelerator) decoding (at most ``threads + 1``
references ahead) and encoding/writing run in thread pools around the device; with ``threads=0`` every
stage runs in the calling thread, one task after the other (a CPU worker process or a Ray actor). A
chunk's record is written only after its images, so ``--resume`` redoes exactly the unfinished chunks.

FR labels are computed one image at a time on the CPU (the reference's features once per reference,
``fr_metrics.ReferenceFR``), so they do not depend on the batch size either; the images depend on it
only as far as the engine's batch invariance goes (it is designed to have it).
"""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthiqa.datasets.fr_metrics import ReferenceFR
from synthiqa.datasets.generation.config import GenerateConfig
from synthiqa.datasets.generation.modes import Job
from synthiqa.datasets.generation.output import FileSink
from synthiqa.datasets.generation.plan import RefPlan, Task, WorkItem, part_name
from synthiqa.datasets.generation.progress import no_stop
from synthiqa.datasets.generation.shards import ShardSink
from synthiqa.datasets.generation.sources import load_reference, source_path
from synthiqa.datasets.labels import FR_PSEUDO_MOS, fuse_fr, label_columns, level_quality
from synthiqa.datasets.references import ReferenceSkipped
from synthiqa.distortions.chains import apply_chains, format_chain
from synthiqa.errors import DatasetError

#: FR labels are computed in fixed sub-batches of this many images on CUDA (bounded memory) and one
#: image at a time on the CPU, where reductions can differ in the last bits with the batch size.
FR_SUB_BATCH_CUDA = 4
#: On the CPU a worker distorts up to this many bytes of images (whole chunks, at least one) at once, so
#: that each equal-type group is large enough to amortise the engine's per-call cost.
CPU_GROUP_BYTES = 32 * 2**20


class ChunkRunner:
    """Distort one chunk and compute its labels; returns RGB uint8 ``HxWx3`` arrays and manifest rows.

    On the CPU the chunk's images are distorted one group of equal chain types at a time (a channels-last
    batch of reference copies, so the uint8 fast path works on it and hands back ``HxWx3`` arrays with no
    further copies or gathers); on other devices, or with ``cfg.pipeline == "device"``, the chunk is one
    batch. Either way image i depends only
    on its reference, chain, seed and device (the engine's batch invariance). One runner holds one
    full-reference metric state (the last reference's features).
    """

    def __init__(self, cfg: GenerateConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.label_cols = label_columns(cfg.labels)
        self.batched = cfg.device_pipeline(device)
        self._fr_ref: tuple[torch.Tensor, ReferenceFR] | None = None

    @torch.inference_mode()
    def __call__(self, ref_u8: torch.Tensor, plan: RefPlan, chunk: tuple[Job, ...],
                 ) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
        if self.batched:
            images, records, labels = self._batch(ref_u8, chunk)
        else:
            images, records, labels = self._each(ref_u8, chunk)
        rows = [self._row(plan, job, records[j], {k: v[j] for k, v in labels.items()})
                for j, job in enumerate(chunk)]
        return images, rows

    def _each(self, ref_u8: torch.Tensor, chunk: tuple[Job, ...],
              ) -> tuple[list[np.ndarray], list[list[dict[str, Any]]], dict[str, list[float]]]:
        images: list[np.ndarray] = [ref_u8.permute(1, 2, 0).numpy()] * len(chunk)  # pristine: the reference
        records: list[list[dict[str, Any]]] = [[] for _ in chunk]
        groups: dict[tuple[str, ...], list[int]] = {}
        for j, job in enumerate(chunk):
            if job.chain:
                groups.setdefault(tuple(op.name for op in job.chain), []).append(j)
        for idx in groups.values():
            batch = ref_u8.unsqueeze(0).expand(len(idx), -1, -1, -1)  # read as it is by the uint8 paths
            seeds = torch.tensor([chunk[j].seed for j in idx], dtype=torch.int64)
            out, recs = apply_chains(batch, [chunk[j].chain for j in idx], seeds, self.cfg.profile,
                                     out_dtype=torch.uint8)
            hwc = out.permute(0, 2, 3, 1).contiguous().numpy()
            for k, j in enumerate(idx):
                images[j], records[j] = hwc[k], recs[k]
        labels: dict[str, list[float]] = {}
        if "fr" in self.cfg.labels:
            parts = [self._fr(torch.from_numpy(im).permute(2, 0, 1).unsqueeze(0), ref_u8) for im in images]
            labels = {k: [float(p[k][0]) for p in parts] for k in parts[0]}
        return images, records, labels

    def _batch(self, ref_u8: torch.Tensor, chunk: tuple[Job, ...],
               ) -> tuple[list[np.ndarray], list[list[dict[str, Any]]], dict[str, list[float]]]:
        n = len(chunk)
        batch = ref_u8.unsqueeze(0).expand(n, -1, -1, -1)
        chains = [job.chain for job in chunk]
        if any(chains):
            seeds = torch.tensor([job.seed for job in chunk], dtype=torch.int64)
            out_u8, records = apply_chains(batch, chains, seeds, self.cfg.profile, out_dtype=torch.uint8)
        else:
            out_u8, records = batch.clone(), [[] for _ in chunk]
        labels: dict[str, list[float]] = {}
        if "fr" in self.cfg.labels:
            parts = [self._fr(out_u8[s:s + FR_SUB_BATCH_CUDA], ref_u8)
                     for s in range(0, n, FR_SUB_BATCH_CUDA)]
            labels = {k: torch.cat([p[k] for p in parts]).tolist() for k in parts[0]}
        hwc = out_u8.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        return list(hwc), records, labels

    def _fr(self, images_u8: torch.Tensor, ref_u8: torch.Tensor) -> dict[str, torch.Tensor]:
        """FR components (float64 ``[B]``) and the fused pseudo-MOS of uint8 ``[B,3,H,W]`` images against the
        reference ``[3,H,W]`` (one tensor per reference: its features are computed once, ``ReferenceFR``)."""
        if self._fr_ref is None or self._fr_ref[0] is not ref_u8:  # holds ref_u8, so identity is safe
            self._fr_ref = (ref_u8, ReferenceFR(ref_u8.float().div(255.0).contiguous()))
        comps = self._fr_ref[1](images_u8.float().div(255.0).contiguous())
        comps = {k: v.reshape(-1).double().cpu() for k, v in comps.items()}
        comps[FR_PSEUDO_MOS] = fuse_fr(comps)
        return comps

    def _row(self, plan: RefPlan, job: Job, steps: list[dict[str, Any]],
             fr: dict[str, float]) -> dict[str, Any]:
        names = [s["name"] for s in steps]
        groups = [s["group"] for s in steps]
        row: dict[str, Any] = {
            "image": f"images/{job.file}",
            "reference": f"references/{plan.stem}.{self.cfg.image_format}",
            "scene": plan.ref.name,
            "source_file": source_path(plan.ref, self.cfg.ref_dir),
            "image_id": job.index,
            "chain": format_chain(job.chain),
            "dist_type": ">".join(names) if names else "pristine",
            "dist_group": ">".join(groups) if groups else "pristine",
            "level": float(max((op.level for op in job.chain), default=0.0)),
            "n_distortions": len(job.chain),
            "seed": job.seed,
            "params_json": json.dumps(steps, sort_keys=True, separators=(",", ":")),
            "ref_index": plan.ordinal,
        }
        if self.cfg.mode == "basic":
            row["severity"] = job.severity
        if "level" in self.cfg.labels:
            row["level_quality"] = level_quality(job.chain, self.cfg.profile)
        for k in self.label_cols:
            if k in fr:
                row[k] = float(fr[k])
        for k, v in row.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise DatasetError(f"{job.file}: label or level {k} is not finite ({v})")
        return row


def cpu_batches(chunks: tuple[tuple[Job, ...], ...], image_bytes: int) -> list[tuple[tuple[Job, ...], ...]]:
    """Consecutive runs of ``chunks`` holding at most ``CPU_GROUP_BYTES`` of images (at least one chunk)."""
    batches: list[tuple[tuple[Job, ...], ...]] = []
    run: list[tuple[Job, ...]] = []
    size = 0
    for chunk in chunks:
        if run and (size + len(chunk)) * image_bytes > CPU_GROUP_BYTES:
            batches.append(tuple(run))
            run, size = [], 0
        run.append(chunk)
        size += len(chunk)
    if run:
        batches.append(tuple(run))
    return batches


class _Inline:
    """The executor interface run in the calling thread: ``submit`` returns a finished future."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # delivered through the future, as a thread pool would
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        return None


def _bounded_map(pool: Any, fn: Callable[[Any], Any], items: Iterable[Any],
                 ahead: int) -> Iterator[tuple[Any, Future]]:
    """(item, future) in order, with at most ``ahead`` items submitted but not yet consumed."""
    queue: deque[tuple[Any, Future]] = deque()
    for item in items:
        queue.append((item, pool.submit(fn, item)))
        if len(queue) >= ahead:
            yield queue.popleft()
    while queue:
        yield queue.popleft()


class _LastReference:
    """Loads a work item's reference, keeping the last one: consecutive items of one reference (a CPU
    worker often takes several) decode it once. Thread-safe: the accelerator pipeline's decode pool has
    several threads."""

    def __init__(self, cfg: GenerateConfig, arrays: dict[str, np.ndarray]) -> None:
        self.cfg = cfg
        self.arrays = arrays
        self._last: tuple[str, np.ndarray] | None = None
        self._lock = threading.Lock()

    def __call__(self, entry: tuple[Task, int, WorkItem]) -> np.ndarray:
        ref = entry[2].plan.ref
        with self._lock:
            if self._last is not None and self._last[0] == ref.name:
                return self._last[1]
        cfg = self.cfg
        arr = load_reference(ref, self.arrays, cfg.max_side, cfg.crop, cfg.max_pixels)
        with self._lock:
            self._last = (ref.name, arr)
        return arr


def make_sink(cfg: GenerateConfig, out: Path) -> FileSink | ShardSink:
    """Where the images of ``cfg.container`` go: image files or WebDataset shards."""
    return ShardSink(cfg, out) if cfg.container == "webdataset" else FileSink(cfg, out)


def run_tasks(tasks: Iterable[Task], cfg: GenerateConfig, device: torch.device, out: Path,
              arrays: dict[str, np.ndarray], threads: int, advance: Callable[[int], None],
              warn: Callable[[str], None] | None = None, check: Callable[[], None] = no_stop,
              runner: ChunkRunner | None = None) -> tuple[int, list[tuple[str, str]]]:
    """Decode (threads) -> distort + label (this thread, on ``device``) -> encode/write (threads); with
    ``threads=0`` every stage runs in this thread.

    Returns the number of images written and the references skipped at decode time. A pristine image
    (basic mode) is the reference itself: in image files it is encoded once with the reference copies.
    """
    runner = runner or ChunkRunner(cfg, device)
    sink = make_sink(cfg, out)
    written = 0
    skipped: list[tuple[str, str]] = []
    decode_pool: Any = _Inline()
    write_pool: Any = _Inline()
    if threads:
        decode_pool = ThreadPoolExecutor(threads, thread_name_prefix="synthiqa-decode")
        write_pool = ThreadPoolExecutor(threads, thread_name_prefix="synthiqa-write")
    pending: deque[tuple[str, list[dict[str, Any]], list[Future], list[Future]]] = deque()

    def flush_one() -> None:
        nonlocal written
        part, rows, futures, ref_futures = pending.popleft()
        for f in ref_futures:
            f.result()
        sink.commit(part, rows, [f.result() for f in futures])
        written += len(rows)
        advance(len(rows))

    try:
        entries = ((task, k, item) for task in tasks for k, item in enumerate(task.items))
        for (task, k, item), fut in _bounded_map(decode_pool, _LastReference(cfg, arrays), entries,
                                                 threads + 1):
            check()
            if k == 0:
                sink.open(task)
            plan = item.plan
            try:
                arr = fut.result()
            except ReferenceSkipped as exc:
                label = source_path(plan.ref, cfg.ref_dir)
                if all(label != done for done, _ in skipped):  # a reference may come in several items
                    skipped.append((label, str(exc)))
                    sink.skip(label, str(exc))
                    if warn is not None:
                        warn(f"skipped {label}: {exc}")
                arr = None
            if arr is not None:
                copies = [*item.ref_files, *sink.pristine_copies(item)]
                ref_futures = [write_pool.submit(sink.write_copies, copies, arr)] if copies else []
                ref_u8 = torch.from_numpy(np.require(arr, requirements="CW")).permute(2, 0, 1).to(device)
                batches = ([(chunk,) for chunk in item.chunks] if runner.batched
                           else cpu_batches(item.chunks, arr.nbytes))
                for batch in batches:
                    check()
                    jobs = tuple(job for chunk in batch for job in chunk)
                    images, rows = runner(ref_u8, plan, jobs)
                    start = 0
                    for chunk in batch:
                        futures = [write_pool.submit(sink.write_image, job, images[start + j])
                                   for j, job in enumerate(chunk)]
                        chunk_rows = sink.rows(task, rows[start:start + len(chunk)])
                        pending.append((part_name(plan.stem, chunk), chunk_rows, futures, ref_futures))
                        start += len(chunk)
                    # at most two chunks' worth of images queued for writing: a CPU worker claims its next
                    # task only when it is nearly idle, so the processes finish together
                    while pending and (sum(len(rows) for _, rows, _, _ in pending) > 2 * cfg.batch_size
                                       or all(f.done() for f in pending[0][2])):
                        flush_one()
                if not item.chunks:
                    for f in ref_futures:
                        f.result()
            if k == len(task.items) - 1 and sink.per_task:
                while pending:
                    flush_one()
                sink.close(task)
        while pending:
            flush_one()
    finally:
        for f in (f for _, _, fs, rfs in pending for f in (*fs, *rfs)):
            f.cancel()
        write_pool.shutdown(wait=True, cancel_futures=True)
        decode_pool.shutdown(wait=True, cancel_futures=True)
        sink.abort()
    return written, skipped
