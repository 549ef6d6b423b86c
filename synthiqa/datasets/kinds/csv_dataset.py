"""Any rated image list in a CSV file: ``image, mos[, ref]`` with a score range and direction the user states.

A CSV does not say whether its scores are MOS (higher is better) or DMOS (lower is better), nor their
range, so the loader refuses to guess: ``lower_better`` must always be given, and ``mos_range`` too
unless ``infer_range=True`` asks for the observed minimum and maximum (which makes ``score_norm``
depend on the data, so it is off by default). An image listed on several rows is an error unless
``duplicates`` says how to merge its rows (``mean`` of the scores or the ``first`` row).

``half`` keeps one of two fixed halves of the list, decided by each image's base file name alone (not by
row order, folder or a seed), so design choices can be made on half ``a`` and numbers reported on half
``b``: an image is in ``a`` when ``int(sha1(name.encode("utf-8")).hexdigest(), 16) % 2 == 0``, else in
``b`` (``half_of``).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthiqa.datasets.loaders import (
    listing,
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

#: Optional columns, read when present under these default names; a name the user gives must exist.
_OPTIONAL_DEFAULTS = {"ref_col": "ref", "scene_col": "scene", "type_col": "dist_type",
                      "group_col": "dist_group", "level_col": "level"}
#: How to fix paths that leave the CSV's folder (the end of that error).
_ROOT_HINT = "set image_root=FOLDER (csv:PATH?image_root=FOLDER) to the folder the paths are relative to"
#: What ``duplicates`` accepts: refuse, average the scores, or keep the first row.
DUPLICATE_POLICIES = ("error", "mean", "first")
#: The fixed halves ``half`` selects (see ``half_of``).
HALVES = ("a", "b")


def half_of(image: str | Path) -> str:
    """``a`` when the SHA-1 of the image's base file name (UTF-8), read as an integer, is even, else ``b``."""
    digest = hashlib.sha1(os.path.basename(str(image)).encode("utf-8")).hexdigest()
    return HALVES[int(digest, 16) % 2]


@register_dataset("csv", score_info=None)
def load_csv(root: Path, *, mos_range: Sequence[float] | None = None, lower_better: bool | None = None,
             infer_range: bool = False, image_col: str = "image", score_col: str = "mos",
             ref_col: str = "ref", scene_col: str = "scene", type_col: str = "dist_type",
             group_col: str = "dist_group", level_col: str = "level", image_root: str | None = None,
             score_name: str | None = None, name: str | None = None, sep: str = ",",
             subset: Any = None, subset_col: str = "subset", duplicates: str = "error",
             half: str | None = None) -> IQADataset:
    """A CSV of rated images with a declared score range and direction.

    Args:
        root: the CSV file.
        mos_range: (low, high) nominal range of the scores; required unless ``infer_range``.
        lower_better: True for DMOS-style scores (lower is better), False for MOS; always required.
        infer_range: take the range from the observed scores (only when ``mos_range`` is not given).
        image_col, score_col: columns with the image path and the raw score.
        ref_col, scene_col, type_col, group_col, level_col: optional columns (reference path, content id,
            distortion type, group, level), used when present.
        image_root: folder the paths are relative to (default: the CSV's folder). Paths must stay inside
            it; it is the dataset root, so split keys are relative to it. On the command line
            ``csv:scores.csv?image_root=/data/images``.
        score_name: label name for ``ScoreInfo`` (default ``score_col``).
        name: dataset name (default: the CSV's file stem).
        sep: column separator.
        subset: keep only the rows whose ``subset_col`` equals this value (e.g. ``test``); comma-separated
            values keep several subsets.
        subset_col: the column ``subset`` filters on.
        duplicates: an image on several rows: ``error`` (default; the error names the lines), ``mean``
            (one record with the mean raw score, other columns from the first row) or ``first``.
        half: ``a`` or ``b``: keep only that fixed half of the images (``half_of``; e.g.
            ``csv:labels.csv?half=a`` to make choices, ``half=b`` to report).

    Without a reference or scene column every image is its own scene.
    """
    csv_path = Path(os.path.abspath(root))
    source = f"csv {csv_path.name}"
    if csv_path.is_dir():
        raise DatasetError(f"{source}: give the CSV file itself, not the folder {csv_path}")
    score_info = _score_info(source, mos_range, lower_better, infer_range, score_name or score_col)
    columns = {"ref_col": ref_col, "scene_col": scene_col, "type_col": type_col, "group_col": group_col,
               "level_col": level_col}
    if duplicates not in DUPLICATE_POLICIES:
        raise DatasetError(f"{source}: duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, "
                           f"got {duplicates!r}")
    if half is not None and str(half) not in HALVES:
        raise DatasetError(f"{source}: half must be one of {', '.join(HALVES)}, got {half!r}")
    required = [image_col, score_col] + [c for k, c in columns.items() if c != _OPTIONAL_DEFAULTS[k]]
    if subset is not None:
        required.append(subset_col)
    table = read_label_table(csv_path, required, source, sep=sep)
    table.index = [f"line {i + 2}" for i in range(len(table))]
    if subset is not None:
        table = _keep_subset(table, subset_col, subset, source)
    if half is not None:
        table = table[[half_of(v) == str(half) for v in table[image_col].astype(str)]]
        if table.empty:
            raise DatasetError(f"{source}: no image is in half {half}")
    present = {k: c for k, c in columns.items() if c in table.columns}
    rows = list(table.index)
    scores = numeric_scores(table[score_col], source, rows)
    data_root = Path(os.path.abspath(image_root)) if image_root is not None else csv_path.parent
    if not data_root.is_dir():
        raise DatasetError(f"{source}: image_root {data_root} is not a folder")
    images = resolve_all(data_root, table[image_col].astype(str).tolist(), source, rows,
                         hint=_ROOT_HINT)
    keep, scores = _merge_duplicates(images, scores, rows, duplicates, source)
    table, images, rows = table.iloc[keep], [images[i] for i in keep], [rows[i] for i in keep]
    refs: list[Path | None] = [None] * len(table)
    if "ref_col" in present:
        refs = resolve_optional(data_root, _optional_text(table[present["ref_col"]]), source, rows,
                                hint=_ROOT_HINT)
    require_files(images, data_root, source, "images")
    require_files({r for r in refs if r is not None}, data_root, source, "reference images")
    if infer_range:
        low, high = float(scores.min()), float(scores.max())
        if not high > low:
            raise DatasetError(f"{source}: cannot infer a range, every score is {low}")
        score_info = ScoreInfo(score_info.name, low, high, score_info.lower_better)
    texts = {k: _optional_text(table[c]) for k, c in present.items() if k != "ref_col" and k != "level_col"}
    levels = (pd.to_numeric(table[present["level_col"]], errors="coerce").tolist()
              if "level_col" in present else [math.nan] * len(table))
    records = []
    for i, image in enumerate(images):
        ref = refs[i]
        scene = texts["scene_col"][i] if "scene_col" in texts else None
        if scene is None:
            scene = relative_key(data_root, ref if ref is not None else image)
        records.append(IQARecord(
            image=image, score=float(scores[i]), score_norm=score_info.normalise(float(scores[i])),
            reference=ref, scene=scene,
            dist_type=texts["type_col"][i] if "type_col" in texts else None,
            dist_group=texts["group_col"][i] if "group_col" in texts else None,
            level=None if math.isnan(levels[i]) else float(levels[i]),
        ))
    return IQADataset(name or csv_path.stem, data_root, score_info, records)


def _keep_subset(table: pd.DataFrame, column: str, subset: Any, source: str) -> pd.DataFrame:
    """The rows whose ``column`` is one of the ``subset`` values (comma-separated text or a sequence, as a
    command-line option parses); error when no row is."""
    items = subset if isinstance(subset, (list, tuple)) else str(subset).split(",")
    wanted = {(f"{v:g}" if isinstance(v, float) else str(v)).strip() for v in items} - {""}
    values = table[column].astype(str).str.strip()
    kept = table[values.isin(wanted)]
    if kept.empty:
        found = sorted(set(values))
        raise DatasetError(f"{source}: no rows with {column} in {sorted(wanted)}; the column holds "
                           f"{listing(found)}")
    return kept


def _merge_duplicates(images: Sequence[Path], scores: np.ndarray, rows: Sequence[str], policy: str,
                      source: str) -> tuple[list[int], np.ndarray]:
    """Row positions to keep (an image's first row) and their scores under ``policy``."""
    positions: dict[Path, list[int]] = {}
    for i, image in enumerate(images):
        positions.setdefault(image, []).append(i)
    repeated = [p for p in positions.values() if len(p) > 1]
    if repeated and policy == "error":
        first = repeated[0]
        shown = ", ".join(f"{rows[i]} (score {scores[i]:g})" for i in first)
        raise DatasetError(
            f"{source}: {len(repeated)} image(s) listed more than once, first {images[first[0]].name} on "
            f"{shown}; pass duplicates=mean or duplicates=first (csv:PATH?duplicates=mean) to merge them")
    keep = [p[0] for p in positions.values()]
    if policy == "mean":
        merged = np.array([scores[p].mean() for p in positions.values()], dtype=np.float64)
    else:
        merged = np.asarray(scores, dtype=np.float64)[keep]
    return keep, merged


def _score_info(source: str, mos_range: Sequence[float] | None, lower_better: bool | None,
                infer_range: bool, label: str) -> ScoreInfo:
    """The declared range and direction (a placeholder range when it is to be inferred)."""
    if lower_better is None:
        raise DatasetError(
            f"{source}: declare the score direction: lower_better=True (DMOS, lower is better) "
            "or lower_better=False (MOS, higher is better); on the command line csv:PATH?lower_better=false"
        )
    if not isinstance(lower_better, bool):
        raise DatasetError(f"{source}: lower_better must be True or False, got {lower_better!r}")
    if mos_range is None:
        if not infer_range:
            raise DatasetError(
                f"{source}: declare the score range, e.g. mos_range=(1, 5), "
                "or pass infer_range=True to take it from the data (command line: ?mos_range=1,5)"
            )
        return ScoreInfo(label, 0.0, 1.0, lower_better)
    if infer_range:
        raise DatasetError(f"{source}: give either mos_range or infer_range=True, not both")
    try:
        low, high = (float(v) for v in mos_range)
    except (TypeError, ValueError):
        raise DatasetError(f"{source}: mos_range must be two numbers, not {mos_range!r}") from None
    if not high > low:
        raise DatasetError(f"{source}: mos_range must have low < high, got ({low}, {high})")
    return ScoreInfo(label, low, high, lower_better)


def _optional_text(column: pd.Series) -> list[str | None]:
    return [None if pd.isna(v) or not str(v).strip() else str(v).strip() for v in column]


__all__ = ["load_csv"]
