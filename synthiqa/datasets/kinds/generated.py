"""Sets written by ``synthiqa generate``: ``dataset.json`` + ``manifest.parquet`` (one row per image).

``dataset.json`` declares every label column with its range and direction (``labels: {name: {"low",
"high", "lower_better"}}``) and the ``primary_label``. ``manifest.parquet`` has ``image`` (path relative to
the set's folder) and one column per label; ``reference``, ``scene``, ``dist_type``, ``dist_group``,
``level`` and the rest (``chain``, ``n_distortions``, ``seed``, ``params_json``, ``split``, other labels)
are optional: those missing are left None, the rest go into ``IQARecord.extra``. Pristine rows carry
``dist_type="pristine"`` and level 0, as the writer stores them.

A WebDataset set (``generate --format webdataset``; ``image`` is ``<shard>.tar/<KEY>.png``) is read by
extracting its images once into ``.synthiqa/extracted/<shard>/`` inside the set, so that every model
reads them as files; training at scale can read the shards directly with the ``webdataset`` library.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from synthiqa.datasets.generation.shards import extract_images
from synthiqa.datasets.loaders import (
    dataset_root,
    numeric_scores,
    read_label_table,
    register_dataset,
    relative_key,
    require_files,
    resolve_all,
    resolve_optional,
)
from synthiqa.datasets.records import IQADataset, IQARecord, ScoreInfo
from synthiqa.errors import DatasetError

#: Manifest columns that map onto ``IQARecord`` fields; every other column goes into ``extra``.
_CORE_COLUMNS = ("image", "reference", "scene", "dist_type", "dist_group", "level")
#: Where the images of a WebDataset set are extracted to (inside the set).
EXTRACTED_DIR = ".synthiqa/extracted"


def read_dataset_info(root: Path) -> dict[str, Any]:
    """``dataset.json`` of a generated set, checked to declare its labels."""
    path = root / "dataset.json"
    if not path.is_file():
        raise DatasetError(f"synthiqa: {path.name} not found in {root} (not a generated set?)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"synthiqa dataset.json: cannot read {path}: {exc}") from None
    labels = info.get("labels") if isinstance(info, dict) else None
    if not isinstance(labels, dict) or not labels:
        raise DatasetError(
            "synthiqa dataset.json: no 'labels' mapping of label name -> {low, high, lower_better}"
        )
    return info


def label_score_info(info: dict[str, Any], label: str | None) -> ScoreInfo:
    """``ScoreInfo`` of ``label`` (default: the set's ``primary_label``) as ``dataset.json`` declares it."""
    labels = info["labels"]
    if label is None:
        label = info.get("primary_label")
        if label is None:
            raise DatasetError(
            f"synthiqa dataset.json: no primary_label; pass label= one of: {', '.join(labels)}"
        )
    if label not in labels:
        raise DatasetError(f"synthiqa: unknown label {label!r}; this set has: {', '.join(labels)}")
    spec = labels[label]
    try:
        return ScoreInfo(label, float(spec["low"]), float(spec["high"]), bool(spec["lower_better"]))
    except (KeyError, TypeError, ValueError):
        raise DatasetError(
            f"synthiqa dataset.json: label {label!r} needs numeric low, high and lower_better, got {spec!r}"
        ) from None


@register_dataset("synthiqa", score_info=None)
def load_generated(root: Path, *, label: str | None = None) -> IQADataset:
    """A set made by ``synthiqa generate`` (range and direction of each label from ``dataset.json``).

    Args:
        root: the generated set's folder.
        label: which label column is the score (default: ``primary_label`` of ``dataset.json``).
    """
    root = dataset_root(root, "synthiqa")
    info = read_dataset_info(root)
    score_info = label_score_info(info, label)
    source = "synthiqa manifest.parquet"
    table = read_label_table(root / "manifest.parquet", ("image", score_info.name), source)
    scores = numeric_scores(table[score_info.name], source)
    names = table["image"].astype(str).tolist()
    if (info.get("files") or {}).get("shards"):
        extracted = extract_images(root, names, root / EXTRACTED_DIR)
        images = [extracted[n] for n in names]
    else:
        images = resolve_all(root, names, source)
    refs = resolve_optional(root, _column(table, "reference"), source)
    require_files(images, root, source, "images")
    require_files({r for r in refs if r is not None}, root, source, "reference images")
    scenes = _column(table, "scene")
    types = _column(table, "dist_type")
    groups = _column(table, "dist_group")
    levels = _column(table, "level")
    extra_columns = [c for c in table.columns if c not in _CORE_COLUMNS and c != score_info.name]
    extras = {c: _column(table, c) for c in extra_columns}
    records = []
    for i, image in enumerate(images):
        ref = refs[i]
        scene = scenes[i]
        if scene is None:
            scene = ref.stem if ref is not None else relative_key(root, image)
        records.append(IQARecord(
            image=image, score=float(scores[i]), score_norm=score_info.normalise(float(scores[i])),
            reference=ref, scene=str(scene),
            dist_type=None if types[i] is None else str(types[i]),
            dist_group=None if groups[i] is None else str(groups[i]),
            level=None if levels[i] is None else float(levels[i]),
            extra={c: values[i] for c, values in extras.items()},
        ))
    return IQADataset(str(info.get("name") or root.name), root, score_info, records)


def _column(table: pd.DataFrame, name: str) -> list[Any]:
    """Column values as plain Python values, None for missing or empty ones; all None if absent."""
    if name not in table.columns:
        return [None] * len(table)
    return [_plain(v) for v in table[name].tolist()]


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value.item() if hasattr(value, "item") else value


__all__ = ["label_score_info", "load_generated", "read_dataset_info"]
