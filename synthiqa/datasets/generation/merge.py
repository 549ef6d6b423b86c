"""``synthiqa merge``: ``--shard I/N`` runs into one folder, the same bytes as one unsharded run."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synthiqa.atomic import atomic_write_text
from synthiqa.datasets.generation.config import IDENTITY_KEYS, stored_identity
from synthiqa.datasets.generation.output import SHARDS_DIR, copy_file, finalize
from synthiqa.datasets.generation.progress import Reporter
from synthiqa.datasets.generation.run import GenerateSummary
from synthiqa.datasets.generation.shards import merge_shard
from synthiqa.datasets.manifest import CONFIG_FILE, PARTS_DIR, dumps
from synthiqa.errors import ConfigError, DatasetError


def merge(shard_dirs: Sequence[str | Path], out: str | Path, console: Any = None) -> GenerateSummary:
    """Merge ``--shard I/N`` runs into ``out``; equals one unsharded run byte for byte (same options).

    Image files are hard-linked (or copied); WebDataset shards that several runs wrote parts of are
    re-packed in reference order (``shards.merge_shard``), the others copied.
    """
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
        diff = [k for k in IDENTITY_KEYS
                if k != "source" and stored_identity(c, k) != stored_identity(first, k)]
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
    skipped: dict[str, str] = {}
    tars: dict[str, list[Path]] = {}
    for d in shard_dirs:
        src = Path(d)
        info = src / "dataset.json"
        if info.is_file():
            listed = json.loads(info.read_text("utf-8")).get("skipped", [])
            skipped.update({s["file"]: s["reason"] for s in listed})
        for tar in sorted(src.glob("images-*.tar")):
            tars.setdefault(tar.name, []).append(tar)
        for sub in ("images", "references", PARTS_DIR, SHARDS_DIR):
            folder = src / sub
            if not folder.is_dir():
                continue
            for f in sorted(folder.iterdir()):
                if f.is_file() and not f.name.startswith("."):
                    target = out / sub / f.name
                    if sub == PARTS_DIR and target.exists():
                        raise DatasetError(f"merge: chunk {f.stem} appears in two shards")
                    if sub == SHARDS_DIR and target.exists():
                        a, b = (json.loads(p.read_text("utf-8")) for p in (target, f))
                        atomic_write_text(target, dumps({"parts": sorted(a["parts"] + b["parts"]),
                                                         "skipped": sorted(a["skipped"] + b["skipped"])}))
                        continue
                    copy_file(f, target)
                    copied += sub == "images"
    for name, sources in tars.items():
        if len(sources) > 1:
            merge_shard(sources, out / name)
        else:
            copy_file(sources[0], out / name)
    merged = dict(first, shard=None)
    atomic_write_text(out / CONFIG_FILE, dumps(merged))
    frame = finalize(out, merged, sorted(skipped.items()))
    if tars:
        copied = len(frame)  # every sample went into a shard of the merged set
    return GenerateSummary(out, int(frame["scene"].nunique()), len(frame), copied, sorted(skipped.items()),
                           time.perf_counter() - t0, "-")
