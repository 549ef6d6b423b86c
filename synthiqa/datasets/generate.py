"""``synthiqa generate``: a labelled, reproducible distorted dataset from a folder of reference photographs.

Pipeline (bounded memory whatever the folder size): decode a reference -> distort a batch of its jobs
and compute the labels -> encode (OpenCV, ``encode_params``) and write the images (at
most two chunks' worth queued). On an accelerator one process runs it with thread pools for decoding
(at most ``workers + 1`` references ahead) and for encoding/writing (``workers`` threads each), the
distortion batched on the device, one chunk per batch. On the CPU ``workers`` processes run it, each in
one thread with one torch/OpenCV thread, so the stages overlap across processes without threads
contending for the cores; they take units of work (runs of a reference's chunks, ``split_units``,
guided self-scheduling) from a shared counter as they become free, so they finish together, and
distort up to ``CPU_GROUP_BYTES`` of a unit's images at a time, one group of equal chain types per
engine call (uint8 in and out, the engine's OpenCV fast path). Every file is written under a temporary
name and renamed; a chunk's record is written only after its images, so ``--resume`` redoes exactly the
unfinished chunks and the final files are rebuilt from the records (``datasets.manifest``), which is also
what ``merge`` does with shards. A pristine image (basic mode) is the reference itself and is encoded
once with the reference copies.

Jobs are a pure function of (reference name, index, options): image i of reference r has seed
``derive_seed(run seed, r, i)``; chunks are fixed slices of a reference's job list (a resumed run keeps
the first run's ``batch_size``). Output therefore does not depend on worker count, shard or interruption.
FR labels are computed one image at a time on the CPU (the reference's features once per reference,
``fr_metrics.ReferenceFR``), so they do not depend on the batch size either;
the images depend on it only as far as the engine's batch invariance goes (it is designed to have it).

Modes:
- ``grid``: every type of the profile at levels 1..5, named like KADID-10k: ``I{ref}_{type}_{level}.png``
  (type = KADID id under ``kadid``, else the 1-based position in the profile's list); the references are
  numbered ``I01, I02, ...`` in scan order and also copied into ``images/`` as KADID-10k does.
- ``chains``: ``per_image`` chains per reference by ARNIQA's rules (``sample_chain``), ``{ref}__{i:04d}``.
- ``basic``: the CENIQA guide's recipe: image 0 is the pristine copy, images 1..N one distortion each;
  types cycle through a per-reference seeded permutation of the profile's types (balanced), severity is
  uniform in [0.2, 1.0] (3 decimals) and level = 5 * severity.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthiqa.atomic import atomic_write_bytes, atomic_write_text
from synthiqa.datasets.fr_metrics import ReferenceFR
from synthiqa.datasets.labels import (
    FR_PSEUDO_MOS,
    fuse_fr,
    label_columns,
    level_quality,
    parse_label_families,
)
from synthiqa.datasets.manifest import (
    CONFIG_FILE,
    PARTS_DIR,
    STATE_DIR,
    dumps,
    finalize_dataset,
    read_parts,
    write_part,
)
from synthiqa.datasets.references import (
    DEFAULT_MAX_PIXELS,
    MIN_SIDE,
    Reference,
    ReferenceSkipped,
    decode_reference,
    normalise_reference,
    scan_references,
)
from synthiqa.devices import resolve_device
from synthiqa.distortions.chains import Chain, ChainOp, apply_chains, format_chain, sample_chain
from synthiqa.distortions.registry import get_distortion, get_profile, list_distortions
from synthiqa.distortions.rng import derive_seed
from synthiqa.errors import ConfigError, DatasetError, SynthiqaError

MODES = ("grid", "chains", "basic")
IMAGE_FORMATS = ("png", "bmp")
#: Default images per reference in chains and basic mode (basic: plus the pristine copy).
DEFAULT_PER_IMAGE = 5
#: Default longest side of the built-in references (they are 300..1000 px; 384 keeps the README run quick).
BUILTIN_MAX_SIDE = 384
#: FR labels are computed in fixed sub-batches of this many images on CUDA (bounded memory) and one
#: image at a time on the CPU, where reductions can differ in the last bits with the batch size.
FR_SUB_BATCH_CUDA = 4
SEVERITY_RANGE = (0.2, 1.0)
#: Options that define the dataset; a resumed run or a merged shard must match them all.
IDENTITY_KEYS = ("source", "profile", "mode", "per_image", "max_chain", "seed", "max_side", "crop",
                 "labels", "image_format", "max_pixels")


@dataclass
class GenerateConfig:
    """Everything ``synthiqa generate`` needs; serialises to JSON (``.synthiqa/config.json``).

    Attributes:
        out: output folder.
        ref_dir: folder of reference images (recursive), or None for the built-in references.
        profile: distortion profile (``kadid``, ``arniqa``, ``basic8``).
        mode: ``grid``, ``chains`` or ``basic``.
        per_image: images per reference in chains/basic mode (default 5; ignored by grid).
        max_chain: longest chain in chains mode (default: the profile's, 4).
        seed: run seed.
        max_side: shrink references so the longer side is at most this (px); built-ins default to 384.
        crop: (width, height) centre crop instead of ``max_side``.
        labels: label families, ``level`` and/or ``fr``.
        image_format: ``png`` (default) or ``bmp``; both lossless.
        shard: (index, count) with 1 <= index <= count: this run does references index, index+count, ...
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (where the distortions and FR metrics run).
        batch_size: images per chunk (one device batch); a resumed run keeps the first run's value.
        workers: threads for decoding and for encoding/writing (each).
        resume: continue the run in ``out`` (same options) instead of refusing a non-empty folder.
        max_pixels: decompression-bomb guard; larger references are skipped.
    """

    out: str
    ref_dir: str | None = None
    profile: str = "basic8"
    mode: str = "basic"
    per_image: int | None = None
    max_chain: int | None = None
    seed: int = 0
    max_side: int | None = None
    crop: tuple[int, int] | None = None
    labels: tuple[str, ...] = ("level", "fr")
    image_format: str = "png"
    shard: tuple[int, int] | None = None
    device: str = "auto"
    batch_size: int = 16
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    resume: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS

    def resolved(self) -> GenerateConfig:
        """Validated copy with mode-dependent defaults filled in; one-line errors for bad values."""
        if self.mode not in MODES:
            raise ConfigError(f"--mode {self.mode!r}: choose one of {', '.join(MODES)}")
        prof = get_profile(self.profile)
        if not list_distortions(self.profile):
            raise ConfigError(f"--profile {self.profile!r} has no registered distortions")
        if self.image_format not in IMAGE_FORMATS:
            raise ConfigError(f"--format {self.image_format!r}: choose one of {', '.join(IMAGE_FORMATS)}"
                              " (lossless, so the labels describe the written pixels)")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.max_side is not None and self.max_side < MIN_SIDE:
            raise ConfigError(f"--max-side must be at least {MIN_SIDE} px, got {self.max_side}")
        if self.crop is not None and self.max_side is not None:
            raise ConfigError("use either --max-side or --crop, not both")
        per_image = self.per_image
        if self.mode == "grid":
            per_image = None
        elif per_image is None:
            per_image = DEFAULT_PER_IMAGE
        elif per_image < 1:
            raise ConfigError(f"--per-image must be at least 1, got {per_image}")
        max_chain = None
        if self.mode == "chains":
            max_chain = prof.max_distortions if self.max_chain is None else self.max_chain
            sample_chain(0, self.profile, max_distortions=max_chain)  # range check, one-line error
        max_side = self.max_side
        if self.ref_dir is None and max_side is None and self.crop is None:
            max_side = BUILTIN_MAX_SIDE
        if self.shard is not None:
            i, n = self.shard
            if not 1 <= i <= n:
                raise ConfigError(f"--shard {i}/{n}: the index must lie in 1..{n}")
        return replace(self, per_image=per_image, max_chain=max_chain, max_side=max_side,
                       labels=parse_label_families(self.labels))

    @property
    def source(self) -> str:
        return "builtin" if self.ref_dir is None else str(Path(self.ref_dir).resolve())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = list(self.labels)
        d["crop"] = list(self.crop) if self.crop else None
        d["shard"] = list(self.shard) if self.shard else None
        d["source"] = self.source
        return d

    def identity(self) -> dict[str, Any]:
        """The options that define the dataset (what resume and merge compare)."""
        d = self.to_dict()
        return {k: d[k] for k in IDENTITY_KEYS}

    def run_record(self) -> dict[str, Any]:
        """What ``.synthiqa/config.json`` keeps: the identity, the chunking and the shard."""
        d = self.to_dict()
        return {**self.identity(), "batch_size": d["batch_size"], "shard": d["shard"]}


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"2/4"`` -> (2, 4); a one-line error otherwise."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ConfigError(f"--shard {text!r} must be I/N with 1 <= I <= N (e.g. 1/4)")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class Job:
    """One output image: its reference, index, file name, chain, per-image seed and severity."""

    ref: str
    index: int
    file: str
    chain: Chain
    seed: int
    severity: float | None = None


@dataclass(frozen=True)
class RefPlan:
    """What to make from one reference: its output stem (file names) and its jobs."""

    ref: Reference
    stem: str
    jobs: tuple[Job, ...]


def _type_number(name: str, position: int, profile: str) -> int:
    kadid_id = get_distortion(name, profile).kadid_id
    return kadid_id if profile == "kadid" and kadid_id is not None else position


def plan_jobs(ref_name: str, stem: str, cfg: GenerateConfig) -> tuple[Job, ...]:
    """Every job of one reference, a pure function of (reference name, options)."""
    ext = cfg.image_format
    names = list_distortions(cfg.profile)
    jobs = []
    if cfg.mode == "grid":
        for pos, name in enumerate(names, start=1):
            t = _type_number(name, pos, cfg.profile)
            for level in range(1, 6):
                index = (pos - 1) * 5 + level - 1
                jobs.append(Job(ref_name, index, f"{stem}_{t:02d}_{level:02d}.{ext}",
                                (ChainOp(name, float(level)),), derive_seed(cfg.seed, ref_name, index)))
    elif cfg.mode == "chains":
        for i in range(cfg.per_image):
            seed = derive_seed(cfg.seed, ref_name, i)
            chain = sample_chain(seed, cfg.profile, max_distortions=cfg.max_chain)
            jobs.append(Job(ref_name, i, f"{stem}__{i:04d}.{ext}", chain, seed))
    else:
        order = list(names)
        random.Random(derive_seed(cfg.seed, ref_name, "types")).shuffle(order)
        jobs.append(Job(ref_name, 0, f"{stem}__0000.{ext}", (), derive_seed(cfg.seed, ref_name, 0), 0.0))
        for i in range(1, cfg.per_image + 1):
            seed = derive_seed(cfg.seed, ref_name, i)
            severity = round(random.Random(derive_seed(seed, "severity")).uniform(*SEVERITY_RANGE), 3)
            chain = (ChainOp(order[(i - 1) % len(order)], round(5.0 * severity, 6)),)
            jobs.append(Job(ref_name, i, f"{stem}__{i:04d}.{ext}", chain, seed, severity))
    return tuple(jobs)


def _chunks(jobs: tuple[Job, ...], size: int) -> list[tuple[Job, ...]]:
    return [jobs[i:i + size] for i in range(0, len(jobs), size)]


def _part_name(stem: str, chunk: tuple[Job, ...]) -> str:
    return f"{stem}.{chunk[0].index:05d}"


#: OpenCV encoder settings by format, as (flag name, value name) pairs: for PNG the Up row filter instead of
#: OpenCV's default Sub (zlib level 1 and the RLE strategy stay OpenCV's defaults). On photographs and
#: their distorted copies it encodes 2-5% faster at about the same size (-6% to +2% measured on the
#: built-in and Kodak references and their distortions).
ENCODE_SETTINGS: dict[str, tuple[tuple[str, str], ...]] = {
    "png": (("IMWRITE_PNG_FILTER", "IMWRITE_PNG_FILTER_UP"),),
}


def encode_params(image_format: str) -> list[int]:
    """The ``cv2.imencode``/``cv2.imwrite`` parameter list synthiqa encodes ``image_format`` with."""
    import cv2

    return [int(getattr(cv2, name)) for pair in ENCODE_SETTINGS.get(image_format, ()) for name in pair]


def encode_image(rgb: np.ndarray, image_format: str) -> bytes:
    """Lossless encoding of an RGB uint8 ``HxWx3`` array with OpenCV (``encode_params``): byte for byte
    what ``cv2.imwrite(path, bgr, encode_params(image_format))`` writes for the same pixels."""
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(f".{image_format}", bgr, encode_params(image_format))
    if not ok:
        raise DatasetError(f"OpenCV could not encode a {rgb.shape[1]}x{rgb.shape[0]} image as {image_format}")
    return buf.tobytes()


def _write_image(paths: Iterable[Path], rgb: np.ndarray, image_format: str) -> None:
    """Encode once, write the bytes to every path (atomically)."""
    data = encode_image(rgb, image_format)
    for path in paths:
        atomic_write_bytes(path, data)


@dataclass
class GenerateSummary:
    """What a run did: counts, skipped files, time."""

    out: Path
    references: int
    images_total: int
    images_written: int
    skipped: list[tuple[str, str]]
    seconds: float
    device: str

    @property
    def images_per_second(self) -> float:
        return self.images_written / self.seconds if self.seconds > 0 else 0.0


class Reporter:
    """Progress and warnings; the CLI passes a rich console, library callers may pass nothing."""

    def __init__(self, console: Any = None, progress: bool = True):
        self.console = console
        self.progress_enabled = progress and console is not None

    def warn(self, text: str) -> None:
        if self.console is not None:
            self.console.print(f"[yellow]warning:[/] {text}", highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def progress(self, total: int, description: str) -> Iterator[Callable[[int], None]]:
        if not self.progress_enabled:
            yield lambda n: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class _Rate(ProgressColumn):
            def render(self, task: Any) -> Text:
                return Text(f"{task.speed or 0:.1f} img/s")

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(),
                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                      console=self.console, transient=False) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)


def _prepare_out(out: Path, cfg: GenerateConfig) -> GenerateConfig:
    """Create or check the output folder; on resume, return the stored config's chunking."""
    config_path = out / CONFIG_FILE
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if config_path.is_file():
        if not cfg.resume:
            raise ConfigError(f"--out {out} already holds a synthiqa run; pass --resume to finish it, "
                              "or choose another folder")
        stored = json.loads(config_path.read_text(encoding="utf-8"))
        mine = cfg.identity()
        diff = [k for k in IDENTITY_KEYS if stored.get(k) != mine[k]]
        if stored.get("shard") != (list(cfg.shard) if cfg.shard else None):
            diff.append("shard")
        if diff:
            k = diff[0]
            raise ConfigError(f"--resume: option {k} differs from the run in {out} "
                              f"({stored.get(k)!r} there, {cfg.run_record()[k]!r} now)")
        return replace(cfg, batch_size=int(stored["batch_size"]))
    if out.is_dir() and any(out.iterdir()) and not cfg.resume:
        raise ConfigError(f"--out {out} is not empty; choose a new or empty folder")
    return cfg


def remove_temporaries(out: Path) -> None:
    """Delete temporary files a killed run left behind (names ``.<file>.<random>.tmp``)."""
    for sub in ("images", "references", PARTS_DIR, STATE_DIR, "."):
        folder = out / sub
        if folder.is_dir():
            for p in folder.glob(".*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()


def _scan(cfg: GenerateConfig, reporter: Reporter) -> tuple[list[Reference], list[tuple[str, str]],
                                                            dict[str, np.ndarray]]:
    if cfg.ref_dir is None:
        from synthiqa.datasets.builtin import builtin_reference_images

        arrays = dict(builtin_reference_images())
        refs = [Reference(name, None, (a.shape[1], a.shape[0])) for name, a in arrays.items()]
        return refs, [], arrays
    min_side = MIN_SIDE
    result = scan_references(cfg.ref_dir, min_side, cfg.crop, cfg.max_pixels, warn=reporter.warn)
    return result.references, list(result.skipped), {}


def _stems(refs: list[Reference], mode: str) -> dict[str, str]:
    if mode != "grid":
        return {r.name: r.name for r in refs}
    width = max(2, len(str(len(refs))))
    return {r.name: f"I{i:0{width}d}" for i, r in enumerate(refs, start=1)}


def _bounded_map(pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: Iterable[Any],
                 ahead: int) -> Iterator[tuple[Any, Future]]:
    """(item, future) in order, with at most ``ahead`` items submitted but not yet consumed."""
    queue: deque[tuple[Any, Future]] = deque()
    for item in items:
        queue.append((item, pool.submit(fn, item)))
        if len(queue) >= ahead:
            yield queue.popleft()
    while queue:
        yield queue.popleft()


class _ChunkRunner:
    """Distort one chunk and compute its labels; returns RGB uint8 ``HxWx3`` arrays and manifest rows.

    On the CPU the chunk's images are distorted one group of equal chain types at a time (a channels-last
    batch of reference copies, so the uint8 fast path works on it and hands back ``HxWx3`` arrays with no
    further copies or gathers); on other devices the chunk is one batch. Either way image i depends only
    on its reference, chain, seed and device (the engine's batch invariance).
    """

    def __init__(self, cfg: GenerateConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.label_cols = label_columns(cfg.labels)
        self._fr_ref: tuple[torch.Tensor, ReferenceFR] | None = None

    @torch.inference_mode()
    def __call__(self, ref_u8: torch.Tensor, plan: RefPlan, chunk: tuple[Job, ...],
                 ) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
        if self.device.type == "cpu":
            images, records, labels = self._each(ref_u8, chunk)
        else:
            images, records, labels = self._batch(ref_u8, chunk)
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
            "image_id": job.index,
            "chain": format_chain(job.chain),
            "dist_type": ">".join(names) if names else "pristine",
            "dist_group": ">".join(groups) if groups else "pristine",
            "level": float(max((op.level for op in job.chain), default=0.0)),
            "n_distortions": len(job.chain),
            "seed": job.seed,
            "params_json": json.dumps(steps, sort_keys=True, separators=(",", ":")),
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


@dataclass(frozen=True)
class WorkItem:
    """A unit of work: consecutive unfinished chunks of one reference, and the reference files it writes.

    ``ref_files`` (the copies under ``references/``, and ``images/`` in grid mode, that are missing) are
    written by exactly one unit of each reference.
    """

    plan: RefPlan
    chunks: tuple[tuple[Job, ...], ...]
    ref_files: tuple[Path, ...]


#: How often the parent of the CPU worker processes updates the progress bar and checks for Ctrl-C (s).
PROGRESS_POLL_S = 0.2
#: Guided self-scheduling: a CPU work unit takes 1/(UNIT_SHARE * processes) of the chunks not yet handed
#: out, so units shrink towards the end of the run and the processes finish within about a chunk of
#: each other.
UNIT_SHARE = 2
#: On the CPU a worker distorts up to this many bytes of images (whole chunks, at least one) at once, so
#: that each equal-type group is large enough to amortise the engine's per-call cost.
CPU_GROUP_BYTES = 32 * 2**20


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


def _cpu_batches(chunks: tuple[tuple[Job, ...], ...], image_bytes: int) -> list[tuple[tuple[Job, ...], ...]]:
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


def _load(item: tuple[WorkItem, GenerateConfig, dict[str, np.ndarray]]) -> np.ndarray:
    unit, cfg, arrays = item
    ref = unit.plan.ref
    arr = arrays[ref.name] if ref.path is None else decode_reference(ref.path, cfg.max_pixels)
    return normalise_reference(arr, cfg.max_side, cfg.crop)


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


class _LastReference:
    """``_load`` that keeps the last reference it made: consecutive units of one reference (a CPU worker
    often takes several) decode it once. Thread-safe: the accelerator pipeline's decode pool has
    ``workers`` threads."""

    def __init__(self) -> None:
        self._last: tuple[str, np.ndarray] | None = None
        self._lock = threading.Lock()

    def __call__(self, item: tuple[WorkItem, GenerateConfig, dict[str, np.ndarray]]) -> np.ndarray:
        name = item[0].plan.ref.name
        with self._lock:
            if self._last is not None and self._last[0] == name:
                return self._last[1]
        arr = _load(item)
        with self._lock:
            self._last = (name, arr)
        return arr


def _no_stop() -> None:
    return None


@contextlib.contextmanager
def interrupt_at_safe_points() -> Iterator[Callable[[], None]]:
    """Turn the first Ctrl-C into a request that ``check()`` raises as KeyboardInterrupt between chunks.

    A KeyboardInterrupt raised asynchronously inside a native call (torch, codecs) can abort the
    process; deferring it to Python code between chunks keeps every finished file. A second Ctrl-C
    interrupts at once. Outside the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield _no_stop
        return
    requested = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    def check() -> None:
        if requested.is_set():
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_pipeline(work: Iterable[WorkItem], cfg: GenerateConfig, device: torch.device, out: Path,
                  arrays: dict[str, np.ndarray], threads: int, advance: Callable[[int], None],
                  warn: Callable[[str], None] | None = None,
                  check: Callable[[], None] = _no_stop) -> tuple[int, list[tuple[str, str]]]:
    """Decode (threads) -> distort + label (this thread, on ``device``) -> encode/write (threads); with
    ``threads=0`` every stage runs in this thread, one unit after the other (a CPU worker process).

    Returns the number of images written and the references skipped at decode time. A pristine image
    (basic mode) is the reference itself: it is encoded once with the reference copies.
    """
    runner = _ChunkRunner(cfg, device)
    written = 0
    skipped: list[tuple[str, str]] = []
    decode_pool: Any = _Inline()
    write_pool: Any = _Inline()
    if threads:
        decode_pool = ThreadPoolExecutor(threads, thread_name_prefix="synthiqa-decode")
        write_pool = ThreadPoolExecutor(threads, thread_name_prefix="synthiqa-write")
    pending: deque[tuple[str, list[dict[str, Any]], list[Future]]] = deque()

    def flush_one() -> None:
        nonlocal written
        part, rows, futures = pending.popleft()
        for f in futures:
            f.result()
        write_part(out, part, rows)
        written += len(rows)
        advance(len(rows))

    try:
        items = ((unit, cfg, arrays) for unit in work)
        for (unit, _, _), fut in _bounded_map(decode_pool, _LastReference(), items, threads + 1):
            check()
            plan = unit.plan
            try:
                arr = fut.result()
            except ReferenceSkipped as exc:
                label = plan.ref.name if plan.ref.path is None else str(plan.ref.path)
                if all(label != done for done, _ in skipped):  # a reference may come in several units
                    skipped.append((label, str(exc)))
                    if warn is not None:
                        warn(f"skipped {label}: {exc}")
                continue
            pristine = [out / "images" / job.file for chunk in unit.chunks for job in chunk if not job.chain]
            copies = [*unit.ref_files, *pristine]
            ref_futures = [write_pool.submit(_write_image, copies, arr, cfg.image_format)] if copies else []
            ref_u8 = torch.from_numpy(np.require(arr, requirements="CW")).permute(2, 0, 1).to(device)
            batches = (_cpu_batches(unit.chunks, arr.nbytes) if device.type == "cpu"
                       else [(chunk,) for chunk in unit.chunks])
            for batch in batches:
                check()
                jobs = tuple(job for chunk in batch for job in chunk)
                images, rows = runner(ref_u8, plan, jobs)
                start = 0
                for chunk in batch:
                    futures = [write_pool.submit(_write_image, (out / "images" / job.file,),
                                                 images[start + j], cfg.image_format)
                               for j, job in enumerate(chunk) if job.chain]
                    pending.append((_part_name(plan.stem, chunk), rows[start:start + len(chunk)],
                                    futures + ref_futures))
                    start += len(chunk)
                # at most two chunks' worth of images queued for writing: a CPU worker claims its next
                # unit only when it is nearly idle, so the processes finish together
                while pending and (sum(len(rows) for _, rows, _ in pending) > 2 * cfg.batch_size
                                   or all(f.done() for f in pending[0][2])):
                    flush_one()
            if not unit.chunks:
                for f in ref_futures:
                    f.result()
        while pending:
            flush_one()
    finally:
        for f in (f for _, _, fs in pending for f in fs):
            f.cancel()
        write_pool.shutdown(wait=True, cancel_futures=True)
        decode_pool.shutdown(wait=True, cancel_futures=True)
    return written, skipped


def _claimed(units: list[WorkItem], counter: Any) -> Iterator[WorkItem]:
    """The units this process claims from the shared ``counter``, one at a time, as it needs them."""
    while True:
        with counter.get_lock():
            i = counter.value
            counter.value = i + 1
        if i >= len(units):
            return
        yield units[i]


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


def _process_worker(index: int, queue: Any, units: list[WorkItem], counter: Any, cfg: GenerateConfig,
                    out: Path, arrays: dict[str, np.ndarray], parent: int) -> None:
    """One CPU worker process: claims units until none is left and runs each through decode, distortion and
    encoding in its one thread (one torch and OpenCV thread). The processes fill the cores, so stages
    overlap across processes; threads inside each would only contend for the same cores."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers
    import cv2

    torch.set_num_threads(1)
    if cv2.getNumThreads() != 1:  # spawned; a forked worker has the parent's setting (_one_opencv_thread)
        cv2.setNumThreads(1)  # the processes fill the cores; inner threads would only add contention
    try:
        result = _run_pipeline(_claimed(units, counter), cfg, torch.device("cpu"), out, arrays, 0,
                               lambda n: None)
        queue.put((index, None, result))
    except BaseException as exc:  # report every failure to the parent, which re-raises it
        error = exc if isinstance(exc, SynthiqaError) else DatasetError(
            f"worker process failed: {type(exc).__name__}: {exc}")
        queue.put((index, error, None))


def _run_processes(units: list[WorkItem], cfg: GenerateConfig, out: Path, arrays: dict[str, np.ndarray],
                   processes: int, advance: Callable[[int], None],
                   check: Callable[[], None] = _no_stop) -> tuple[int, list[tuple[str, str]]]:
    """CPU path: ``processes`` worker processes taking the units in order from a shared counter (each
    process takes the next unit when it is ready for one, so they finish together).

    Progress comes from the chunk records appearing on disk. An interruption or a failed worker
    terminates the others (finished files stay; ``--resume`` redoes only unfinished chunks).
    """
    import multiprocessing as mp
    import queue as queue_module

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    sizes = {_part_name(u.plan.stem, c): len(c) for u in units for c in u.chunks}
    seen: set[str] = set()
    parts_dir = out / PARTS_DIR

    def poll() -> None:
        if parts_dir.is_dir():
            new = {p.stem for p in parts_dir.glob("*.json")} & sizes.keys() - seen
            seen.update(new)
            advance(sum(sizes[n] for n in new))

    results: Any = ctx.Queue()
    counter = ctx.Value("q", 0)
    args = (results, units, counter, cfg, out, arrays, os.getpid())
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


def generate(config: GenerateConfig, console: Any = None, progress: bool = True) -> GenerateSummary:
    """Run (or resume) a generation job; see the module docstring. Returns what was done.

    A Ctrl-C stops the run between chunks (KeyboardInterrupt); ``--resume`` finishes it.
    """
    with interrupt_at_safe_points() as check:
        return _generate(config, console, progress, check)


def _generate(config: GenerateConfig, console: Any, progress: bool, check: Callable[[], None],
              ) -> GenerateSummary:
    t0 = time.perf_counter()
    reporter = Reporter(console, progress)
    cfg = config.resolved()
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    cfg = _prepare_out(out, cfg)
    refs, skipped, arrays = _scan(cfg, reporter)
    if not refs:
        raise DatasetError(f"no usable reference image in {cfg.ref_dir} ({len(skipped)} files skipped)")
    stems = _stems(refs, cfg.mode)
    if cfg.shard is not None:
        i, n = cfg.shard
        total_refs = len(refs)
        refs = [r for k, r in enumerate(refs) if k % n == i - 1]
        if not refs:
            raise ConfigError(f"--shard {i}/{n}: no reference falls in this shard ({total_refs} references)")
    out.mkdir(parents=True, exist_ok=True)
    remove_temporaries(out)
    atomic_write_text(out / CONFIG_FILE, dumps(cfg.run_record()))
    done = set(read_parts(out))
    work: list[WorkItem] = []
    for ref in refs:
        plan = RefPlan(ref, stems[ref.name], plan_jobs(ref.name, stems[ref.name], cfg))
        todo = tuple(c for c in _chunks(plan.jobs, cfg.batch_size) if _part_name(plan.stem, c) not in done)
        ref_files = [out / "references" / f"{plan.stem}.{cfg.image_format}"]
        if cfg.mode == "grid":
            ref_files.append(out / "images" / f"{plan.stem}.{cfg.image_format}")
        missing = tuple(p for p in ref_files if not p.is_file())
        if todo or missing:
            work.append(WorkItem(plan, todo, missing))
    to_make = sum(len(c) for item in work for c in item.chunks)
    units = split_units(work, cfg.workers) if device.type == "cpu" and cfg.workers > 1 else work
    processes = min(cfg.workers, len(units)) if device.type == "cpu" else 1
    check()
    with reporter.progress(to_make, f"generate {cfg.mode}/{cfg.profile}") as advance:
        if processes > 1:
            written, late_skips = _run_processes(units, cfg, out, arrays, processes, advance, check)
        else:
            written, late_skips = _run_pipeline(work, cfg, device, out, arrays, cfg.workers, advance,
                                                reporter.warn, check)
    if processes > 1:
        for label, reason in late_skips:
            reporter.warn(f"skipped {label}: {reason}")
    skipped += late_skips
    if not read_parts(out):
        raise DatasetError(f"no usable reference image in {cfg.ref_dir or 'the built-in set'} "
                           f"({len(skipped)} files skipped)")
    from synthiqa import __version__ as version

    frame = finalize_dataset(out, cfg.run_record(), version)
    return GenerateSummary(out, int(frame["scene"].nunique()), len(frame), written, skipped,
                           time.perf_counter() - t0, str(device))


def merge(shard_dirs: list[str | Path], out: str | Path, console: Any = None) -> GenerateSummary:
    """Merge shard runs into ``out``; equals one unsharded run byte for byte (same options)."""
    from synthiqa import __version__ as version

    t0 = time.perf_counter()
    reporter = Reporter(console, progress=False)
    out = Path(out)
    if not shard_dirs:
        raise ConfigError("merge: give at least one shard folder")
    configs = []
    for d in shard_dirs:
        path = Path(d) / CONFIG_FILE
        if not path.is_file():
            raise DatasetError(f"merge: {d} is not a synthiqa generate run (no {CONFIG_FILE})")
        configs.append(json.loads(path.read_text(encoding="utf-8")))
    first = configs[0]
    for d, c in zip(shard_dirs[1:], configs[1:], strict=True):
        diff = [k for k in IDENTITY_KEYS if k != "source" and c.get(k) != first.get(k)]
        if diff:
            raise ConfigError(f"merge: {d} was made with another {diff[0]} ({c.get(diff[0])!r} vs "
                              f"{first.get(diff[0])!r})")
        if c.get("source") != first.get("source"):
            reporter.warn(f"{d} read its references from {c.get('source')}, not {first.get('source')}")
    shards = [tuple(c["shard"]) if c.get("shard") else None for c in configs]
    counts = {s[1] for s in shards if s is not None}
    if len(counts) == 1 and None not in shards:
        n = counts.pop()
        missing = sorted(set(range(1, n + 1)) - {s[0] for s in shards})
        if missing:
            reporter.warn(f"shards {', '.join(f'{i}/{n}' for i in missing)} are missing from the merge")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty; choose a new or empty folder")
    copied = 0
    for d in shard_dirs:
        src = Path(d)
        for sub in ("images", "references", PARTS_DIR):
            folder = src / sub
            if not folder.is_dir():
                continue
            for f in sorted(folder.iterdir()):
                if f.is_file() and not f.name.startswith("."):
                    target = out / sub / f.name
                    if sub == PARTS_DIR and target.exists():
                        raise DatasetError(f"merge: chunk {f.stem} appears in two shards")
                    _copy_file(f, target)
                    copied += sub == "images"
    merged = dict(first, shard=None)
    atomic_write_text(out / CONFIG_FILE, dumps(merged))
    frame = finalize_dataset(out, merged, version)
    return GenerateSummary(out, int(frame["scene"].nunique()), len(frame), copied, [],
                           time.perf_counter() - t0, "-")


def _copy_file(src: Path, dst: Path) -> None:
    """Copy one finished file (hard link where possible), through a temporary name."""
    import shutil

    from synthiqa.atomic import atomic_path

    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
