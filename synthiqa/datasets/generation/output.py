"""The output folder: checks, temporaries, where image files go (``FileSink``), the final files.

Every file is written under a temporary name and renamed. Image files go one per image under
``images/`` (``FileSink``); WebDataset shards go to ``images-NNNNNN.tar`` (``shards.ShardSink``). Each
chunk's record (``.synthiqa/parts``) is written only after its images are on disk, and the final files
(manifest, label files, ``dataset.json``) are rebuilt from the records (``datasets.manifest``), which is
what ``--resume`` and ``merge`` rely on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthiqa.atomic import atomic_path, atomic_write_bytes
from synthiqa.datasets.generation.config import IDENTITY_KEYS, GenerateConfig, stored_identity
from synthiqa.datasets.generation.encoding import encode_image
from synthiqa.datasets.generation.modes import Job
from synthiqa.datasets.generation.plan import Task, WorkItem
from synthiqa.datasets.manifest import CONFIG_FILE, PARTS_DIR, STATE_DIR, finalize_dataset, write_part
from synthiqa.errors import ConfigError
from synthiqa.version import __version__

#: Finished WebDataset shards' records (``<shard>.json``: its parts and skipped references).
SHARDS_DIR = f"{STATE_DIR}/shards"


def write_copies(paths: Iterable[Path], rgb: np.ndarray, image_format: str) -> None:
    """Encode once, write the bytes to every path (atomically)."""
    data = encode_image(rgb, image_format)
    for path in paths:
        atomic_write_bytes(path, data)


class FileSink:
    """Images as files under ``images/``; each chunk's record right after its images."""

    per_task = False

    def __init__(self, cfg: GenerateConfig, out: Path):
        self.cfg = cfg
        self.out = out

    def open(self, task: Task) -> None:
        return None

    def pristine_copies(self, item: WorkItem) -> list[Path]:
        """Pristine images (basic mode) are the reference: written with its copies, encoded once."""
        return [self.out / "images" / job.file for chunk in item.chunks for job in chunk if not job.chain]

    def write_copies(self, paths: list[Path], rgb: np.ndarray) -> None:
        write_copies(paths, rgb, self.cfg.image_format)

    def write_image(self, job: Job, rgb: np.ndarray) -> None:
        if job.chain:
            atomic_write_bytes(self.out / "images" / job.file, encode_image(rgb, self.cfg.image_format))

    def rows(self, task: Task, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return rows

    def skip(self, label: str, reason: str) -> None:
        return None

    def commit(self, part: str, rows: list[dict[str, Any]], results: list[Any]) -> None:
        write_part(self.out, part, rows)

    def close(self, task: Task) -> None:
        return None

    def abort(self) -> None:
        return None


def prepare_out(out: Path, cfg: GenerateConfig) -> GenerateConfig:
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
        diff = [k for k in IDENTITY_KEYS if stored_identity(stored, k) != mine[k]]
        if stored.get("shard") != (list(cfg.shard) if cfg.shard else None):
            diff.append("shard")
        if diff:
            k = diff[0]
            raise ConfigError(f"--resume: option {k} differs from the run in {out} "
                              f"({stored_identity(stored, k)!r} there, {cfg.run_record()[k]!r} now)")
        return replace(cfg, batch_size=int(stored["batch_size"]))
    if out.is_dir() and any(out.iterdir()) and not cfg.resume:
        raise ConfigError(f"--out {out} is not empty; choose a new or empty folder")
    return cfg


def remove_temporaries(out: Path) -> None:
    """Delete temporary files a killed run left behind (names ``.<file>.<random>.tmp``)."""
    for sub in ("images", "references", PARTS_DIR, SHARDS_DIR, STATE_DIR, "."):
        folder = out / sub
        if folder.is_dir():
            for p in folder.glob(".*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()


def read_shard_records(out: Path) -> dict[str, dict[str, Any]]:
    """Shard name -> record, for every finished WebDataset shard under ``out``."""
    folder = out / SHARDS_DIR
    if not folder.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))}


def finalize(out: Path, record: dict[str, Any], skipped: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """The final files of ``out`` from its records: every skipped reference (those given and those the
    finished shards recorded) goes into ``dataset.json``, once, sorted by file."""
    late = [tuple(s) for r in read_shard_records(out).values() for s in r.get("skipped", [])]
    merged = dict(sorted(dict([*skipped, *late]).items()))
    return finalize_dataset(out, record, __version__, skipped=merged)


def copy_file(src: Path, dst: Path) -> None:
    """Copy one finished file (hard link where possible), through a temporary name."""
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
