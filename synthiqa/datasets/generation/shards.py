"""WebDataset output: tar shards ``images-NNNNNN.tar`` of ``KEY.png`` + ``KEY.json`` samples.

A shard holds whole references (``plan.refs_per_shard``, from ``--shard-size``), in scan order, each
reference's images in index order; its content depends only on the references and options. Tar headers
are fixed (mtime 0, uid/gid 0, mode 0644, PAX format), so equal samples give equal bytes. A shard is
written under a temporary name by one task and renamed when complete; then its chunk records and the
shard's record (``.synthiqa/shards/<shard>.json``) are written, and a shard without a record is redone
whole on ``--resume``. ``KEY`` is the image's file stem (dots, which WebDataset reads as extension
separators, become commas); ``KEY.json`` is the manifest row (with ``params`` decoded) without split.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from synthiqa.atomic import atomic_path, atomic_write_text
from synthiqa.datasets.generation.config import GenerateConfig
from synthiqa.datasets.generation.encoding import encode_image
from synthiqa.datasets.generation.modes import Job
from synthiqa.datasets.generation.output import SHARDS_DIR, write_copies
from synthiqa.datasets.generation.plan import Task, WorkItem
from synthiqa.datasets.manifest import dumps, write_part
from synthiqa.errors import DatasetError


def sample_key(file_name: str) -> str:
    """The WebDataset key of an image file name (its stem; dots become commas)."""
    return Path(file_name).stem.replace(".", ",")


def sample_json(row: dict[str, Any]) -> bytes:
    """The ``KEY.json`` member of a manifest row: every field, drawn parameters decoded."""
    record = {k: v for k, v in row.items() if k != "params_json"}
    record["params"] = json.loads(row["params_json"])
    return dumps(record).encode("utf-8")


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Append one file with fixed metadata (mtime 0, owner 0, mode 0644): equal data, equal bytes."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _open_tar(path: Path) -> tarfile.TarFile:
    return tarfile.open(path, "w", format=tarfile.PAX_FORMAT)


class ShardSink:
    """Images into the task's tar shard (written in order, renamed when the task ends); chunk records and
    the shard record after it."""

    per_task = True

    def __init__(self, cfg: GenerateConfig, out: Path):
        self.cfg = cfg
        self.out = out
        self._tar: tarfile.TarFile | None = None
        self._tmp: Path | None = None
        self._parts: list[tuple[str, list[dict[str, Any]]]] = []
        self._skipped: list[tuple[str, str]] = []

    def open(self, task: Task) -> None:
        self._parts, self._skipped = [], []
        if task.shard is not None:
            final = self.out / task.shard
            self._tmp = final.with_name(f".{final.name}.{os.getpid()}-{threading.get_ident()}.tmp")
            self._tar = _open_tar(self._tmp)

    def pristine_copies(self, item: WorkItem) -> list[Path]:
        return []

    def write_copies(self, paths: list[Path], rgb: np.ndarray) -> None:
        write_copies(paths, rgb, self.cfg.image_format)

    def write_image(self, job: Job, rgb: np.ndarray) -> bytes:
        return encode_image(rgb, self.cfg.image_format)

    def rows(self, task: Task, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ext = self.cfg.image_format
        return [{**r, "image": f"{task.shard}/{sample_key(r['image'])}.{ext}"} for r in rows]

    def skip(self, label: str, reason: str) -> None:
        self._skipped.append((label, reason))

    def commit(self, part: str, rows: list[dict[str, Any]], results: list[Any]) -> None:
        assert self._tar is not None
        for row, data in zip(rows, results, strict=True):
            key = Path(row["image"]).stem
            add_member(self._tar, f"{key}.{self.cfg.image_format}", data)
            add_member(self._tar, f"{key}.json", sample_json(row))
        self._parts.append((part, rows))

    def close(self, task: Task) -> None:
        if task.shard is None or self._tar is None:
            return
        self._tar.close()
        self._tar = None
        os.replace(self._tmp, self.out / task.shard)
        self._tmp = None
        for part, rows in self._parts:
            write_part(self.out, part, rows)
        atomic_write_text(self.out / SHARDS_DIR / f"{Path(task.shard).stem}.json", dumps({
            "parts": sorted(p for p, _ in self._parts), "skipped": sorted(map(list, self._skipped))}))

    def abort(self) -> None:
        """Drop an unfinished shard (a failed or interrupted task)."""
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def _samples(path: Path) -> list[tuple[str, dict[str, bytes]]]:
    """(key, {extension: data}) of every sample of a shard, in order."""
    samples: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isfile():
                    key, _, ext = member.name.partition(".")
                    samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    except (OSError, tarfile.TarError) as exc:
        raise DatasetError(f"cannot read WebDataset shard {path}: {exc}") from None
    return list(samples.items())


def merge_shard(sources: list[Path], dst: Path) -> None:
    """Re-pack the parts of one shard that several ``--shard I/N`` runs wrote into ``dst``, in reference
    order then image order (as one run writes it)."""
    samples = [s for src in sources for s in _samples(src)]

    def order(sample: tuple[str, dict[str, bytes]]) -> tuple[int, int]:
        meta = json.loads(sample[1]["json"])
        return int(meta["ref_index"]), int(meta["image_id"])

    with atomic_path(dst) as tmp, _open_tar(tmp) as tar:
        for key, members in sorted(samples, key=order):
            for ext in (e for e in members if e != "json"):
                add_member(tar, f"{key}.{ext}", members[ext])
            add_member(tar, f"{key}.json", members["json"])


def extract_images(root: Path, images: list[str], cache: Path) -> dict[str, Path]:
    """Extract the images named ``<shard>.tar/<member>`` from the shards under ``root`` into ``cache``
    (once: files already there are kept), so that every reader opens them as files; returns name -> path."""
    wanted: dict[str, set[str]] = {}
    for name in images:
        shard, _, member = name.partition("/")
        wanted.setdefault(shard, set()).add(member)
    paths = {}
    for shard, members in sorted(wanted.items()):
        folder = cache / Path(shard).stem
        todo = {m for m in members if not (folder / m).is_file()}
        if todo:
            for key, data in _samples(root / shard):
                for ext, blob in data.items():
                    member = f"{key}.{ext}"
                    if member in todo:
                        with atomic_path(folder / member) as tmp:
                            tmp.write_bytes(blob)
        for m in members:
            if not (folder / m).is_file():
                raise DatasetError(f"synthiqa: {m} is not in the WebDataset shard {root / shard}")
            paths[f"{shard}/{m}"] = folder / m
    return paths
