"""On-the-fly training data shared by the methods: reference-disjoint parts of a reference folder, and the
fixed, level-labelled evaluation sets that methods scoring records (ARNIQA's Ridge, TRCNN, SIND) read.

Training batches come from ``synthiqa.datasets.DegradedReferences`` (each method sets its own layout);
evaluation sets are drawn once from epoch 0 of a fixed ``DegradedReferences`` and written as PNG files
under ``RUN_DIR/onthefly/<part>/`` with their records, so validation and test read images as files do.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthiqa.atomic import atomic_write_bytes
from synthiqa.datasets.degraded import DegradedReferences, resolve_references
from synthiqa.datasets.generation.encoding import encode_image
from synthiqa.datasets.records import IQARecord
from synthiqa.datasets.splits import PARTS, held_out_parts
from synthiqa.distortions.registry import get_distortion
from synthiqa.errors import DatasetError


@dataclass
class ReferenceParts:
    """The usable references of a folder (``sources``, ``names``: scene names, index = scene id) and the
    reference ids of each part (``parts['train'|'val'|'test']``)."""

    root: str
    sources: list[Any]
    names: list[str]
    parts: dict[str, list[int]]

    def sources_of(self, part: str) -> list[Any]:
        return [self.sources[i] for i in self.parts[part]]

    def describe(self, profile: str) -> str:
        n = {p: len(v) for p, v in self.parts.items()}
        return (f"on the fly from {self.root}: {len(self.sources)} references "
                f"({n['train']}/{n['val']}/{n['test']} train/val/test), profile {profile}")


def split_references(ref_dir: str | Path, crop: int, seed: int, min_refs: int = 3) -> ReferenceParts:
    """Usable references of ``ref_dir`` at least ``crop`` px a side, cut reference-disjointly 70/10/20 by
    ``datasets.splits.held_out_parts(n, seed, 27)`` (at least one each for validation and test)."""
    sources, names = resolve_references(ref_dir, crop)
    if len(sources) < min_refs:
        raise DatasetError(f"{ref_dir}: on-the-fly training needs at least {min_refs} usable reference "
                           f"images of at least {crop} px a side, found {len(sources)}")
    return ReferenceParts(str(ref_dir), sources, names, held_out_parts(len(sources), seed, 27))


def eval_records(data: DegradedReferences, out_dir: Path, names: list[str], profile: str,
                 write: bool = True) -> list[IQARecord]:
    """Write epoch 0 of ``data`` (a fixed set) as PNG files under ``out_dir`` and return their records
    (score = level rule 0-100, its normalised value, scene, type, group, level, chain in ``extra``).
    ``write=False`` only builds the records (another process writes the files)."""
    records = []
    for j in range(data.num_batches):
        batch = data.batch(0, j)
        images = (batch["image"] * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for i, params in enumerate(batch["params"]):
            item, version, view = (int(batch[k][i]) for k in ("item", "version", "view"))
            path = out_dir / f"{item:05d}_v{version + 1}_{view}.png"
            if write:
                atomic_write_bytes(path, encode_image(np.ascontiguousarray(images[i]), "png"))
            steps = params["steps"]
            names_i = [s["name"] for s in steps]
            score = float(batch["score"][i])
            records.append(IQARecord(
                image=path, score=100.0 * score, score_norm=score, reference=None,
                scene=names[int(batch["scene"][i])],
                dist_type=">".join(names_i) if names_i else "pristine",
                dist_group=get_distortion(names_i[0], profile).group if len(names_i) == 1 else None,
                level=max((float(s["level"]) for s in steps), default=0.0) or None,
                extra={"chain": params["chain"]}))
    return records


def eval_set(parts: ReferenceParts, part: str, out_dir: Path, crop: int, profile: str, law: str, seed: int,
             images: int, max_chain: int = 1, write: bool = True) -> list[IQARecord]:
    """A fixed level-labelled set of about ``images`` crops of ``part``'s references (one distorted crop
    per item, a chain of ``law``), written under ``out_dir / part``."""
    srcs = parts.sources_of(part)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = DegradedReferences(srcs, crop=crop, profile=profile, law=law, max_chain=max_chain,
                                  pristine_prob=0.0 if law == "chain" else None,
                                  seed=seed + 7919 * (1 + PARTS.index(part)), items=max(2, images),
                                  batch_size=16, scene_ids=parts.parts[part], rank=0, world_size=1)
    return eval_records(data, out_dir / part, parts.names, profile, write=write)
