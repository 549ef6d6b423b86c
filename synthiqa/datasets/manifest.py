"""The files of a generated set, rebuilt from the per-chunk records on disk.

The generator writes each finished chunk's rows to ``.synthiqa/parts/<chunk>.json`` only after its images
are on disk, so the parts are the truth about what is done. ``finalize_dataset`` reads every part and
writes (each atomically):

- ``manifest.parquet``: one row per image; columns ``MANIFEST_COLUMNS`` (``source_file``: the
  reference's original path relative to the reference folder, ``builtin:NAME`` for built-ins; ``severity``
  only in basic mode), then one column per label, then ``split``. In a WebDataset set ``image`` is
  ``<shard>.tar/<KEY>.png``.
- ``labels.csv``: ``image_path,mos`` with the primary label (the CENIQA code's format).
- ``meta_info.csv``: ``ref_name,dist_name,mos`` (pyiqa's FR meta-info format; paths relative to the set).
- ``dmos.csv`` (grid mode): KADID-10k's ``dist_img,ref_img,dmos,var``; ``dmos`` is the primary label
  mapped to KADID's 1..5 (higher is better) and ``var`` the variance of the FR components on that scale
  (their disagreement; 0 without FR labels), not a rating variance.
- ``dataset.json``: profile, mode, seed, options, counts, version, every label's range and direction, the
  WebDataset shards (if any) and the reference files that were skipped, with the reason.

Resumed, sharded-and-merged and uninterrupted runs therefore give the same bytes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from synthiqa.atomic import atomic_write_bytes, atomic_write_text
from synthiqa.datasets.labels import FR_ANCHORS, FR_COMPONENTS, label_infos, primary_label
from synthiqa.datasets.splits import PARTS, RATIOS, generation_splits
from synthiqa.errors import DatasetError

STATE_DIR = ".synthiqa"
PARTS_DIR = f"{STATE_DIR}/parts"
CONFIG_FILE = f"{STATE_DIR}/config.json"
#: Manifest columns before the labels (the contract with ``datasets.generated``).
MANIFEST_COLUMNS = ("image", "reference", "scene", "source_file", "image_id", "chain", "dist_type",
                    "dist_group", "level", "n_distortions", "seed", "params_json")


def dumps(obj: Any) -> str:
    """Canonical JSON (sorted keys, fixed separators) so equal content gives equal bytes."""
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def write_part(root: Path, part_name: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Record a finished chunk (call only after its images are written)."""
    atomic_write_text(root / PARTS_DIR / f"{part_name}.json", dumps(list(rows)))


def read_parts(root: Path) -> dict[str, list[dict[str, Any]]]:
    """Part name -> rows, for every finished chunk under ``root``."""
    parts = {}
    folder = root / PARTS_DIR
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            try:
                parts[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise DatasetError(f"cannot read chunk record {path}: {exc}") from None
    return parts


def _kadid_scale(values: pd.Series) -> pd.Series:
    return 1.0 + 4.0 * values / 100.0


def _component_variance(frame: pd.DataFrame) -> pd.Series:
    if not all(c in frame.columns for c in FR_COMPONENTS):
        return pd.Series(0.0, index=frame.index)
    scaled = []
    for name in FR_COMPONENTS:
        a = FR_ANCHORS[name]
        s = ((frame[name] - a.worst) / (a.perfect - a.worst)).clip(0.0, 1.0)
        scaled.append(1.0 + 4.0 * s)
    return pd.concat(scaled, axis=1).var(axis=1, ddof=0)


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue().encode("utf-8")


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue().to_pybytes()


def build_manifest(rows: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> pd.DataFrame:
    """The manifest table from chunk rows, sorted by scene and image id, with the split column."""
    families = config["labels"]
    label_cols = list(label_infos(families))
    cols = list(MANIFEST_COLUMNS) + (["severity"] if config["mode"] == "basic" else []) + label_cols
    frame = pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols)
    frame = frame.sort_values(["scene", "image_id"], kind="stable").reset_index(drop=True)
    dup = frame["image"][frame["image"].duplicated()]
    if len(dup):
        raise DatasetError(f"image {dup.iloc[0]!r} is recorded twice (merging overlapping shards?)")
    splits = generation_splits(frame["scene"].tolist(), int(config["seed"]))
    frame["split"] = frame["scene"].map(splits)
    for c in ("level", *label_cols, *(["severity"] if config["mode"] == "basic" else [])):
        frame[c] = frame[c].astype("float64")
    for c in ("image_id", "n_distortions", "seed"):
        frame[c] = frame[c].astype("int64")
    return frame


def dataset_info(frame: pd.DataFrame, config: Mapping[str, Any], version: str,
                 skipped: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``dataset.json`` content; ``skipped`` maps each reference file left out to the reason."""
    families = config["labels"]
    pristine = int((frame["n_distortions"] == 0).sum())
    files = {"manifest": "manifest.parquet", "labels": "labels.csv", "meta_info": "meta_info.csv",
             "dmos": "dmos.csv" if config["mode"] == "grid" else None,
             "shards": sorted({Path(p).parent.name for p in frame["image"]})
             if config.get("container") == "webdataset" else None}
    return {
        "format": "synthiqa-generated",
        "synthiqa_version": version,
        "profile": config["profile"],
        "mode": config["mode"],
        "seed": config["seed"],
        "options": {k: config.get(k) for k in ("source", "per_image", "max_chain", "max_side", "crop",
                                                "image_format", "max_pixels", "container", "shard_size")},
        "labels": {name: {"low": info.low, "high": info.high, "lower_better": info.lower_better}
                   for name, info in label_infos(families).items()},
        "primary_label": primary_label(families),
        "label_rules": {
            "level_quality": "100 * prod(q_i / 100); q_i = basic8 severity_quality(name, level / 5) "
                             "under basic8, else 100 - 16 * level; pristine 100",
            "fr_pseudo_mos": "100 * mean_k clip((v_k - worst_k) / (perfect_k - worst_k), 0, 1) over "
                             "HaarPSI, MDSI (sum), VSI, MS-GMSDc (piq)",
            "fr_anchors": {k: {"perfect": a.perfect, "worst": a.worst} for k, a in FR_ANCHORS.items()},
        },
        "splits": {"kind": "reference-disjoint", "seed": config["seed"], "column": "split",
                   "fractions": dict(zip(PARTS, RATIOS, strict=True))},
        "counts": {
            "references": int(frame["scene"].nunique()),
            "images": len(frame),
            "distorted": len(frame) - pristine,
            "pristine": pristine,
            "splits": {s: int((frame["split"] == s).sum()) for s in PARTS},
            "dist_types": {k: int(v) for k, v in sorted(frame["dist_type"].value_counts().items())},
        },
        "files": files,
        "skipped": [{"file": f, "reason": r} for f, r in sorted((skipped or {}).items())],
    }


def finalize_dataset(root: Path, config: Mapping[str, Any], version: str,
                     skipped: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Write manifest, label files and ``dataset.json`` from the parts on disk; returns the manifest.
    ``skipped`` (reference file -> reason) is listed in ``dataset.json``."""
    rows = [r for part in read_parts(root).values() for r in part]
    if not rows:
        raise DatasetError(f"no finished images under {root}; nothing to write")
    frame = build_manifest(rows, config)
    primary = primary_label(config["labels"])
    atomic_write_bytes(root / "manifest.parquet", _parquet_bytes(frame))
    atomic_write_bytes(root / "labels.csv", _csv_bytes(
        pd.DataFrame({"image_path": frame["image"], "mos": frame[primary]})))
    atomic_write_bytes(root / "meta_info.csv", _csv_bytes(
        pd.DataFrame({"ref_name": frame["reference"], "dist_name": frame["image"], "mos": frame[primary]})))
    if config["mode"] == "grid":
        atomic_write_bytes(root / "dmos.csv", _csv_bytes(pd.DataFrame({
            "dist_img": frame["image"].map(lambda p: Path(p).name),
            "ref_img": frame["reference"].map(lambda p: Path(p).name),
            "dmos": _kadid_scale(frame[primary]),
            "var": _component_variance(frame),
        })))
    atomic_write_text(root / "dataset.json", dumps(dataset_info(frame, config, version, skipped)))
    return frame
