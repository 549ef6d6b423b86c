"""LIVE Image Quality Assessment Database, Release 2: 779 distorted images of 29 references, DMOS scores.

Two layouts are read:

- **Release files** (``source="mat"``): ``refimgs/``, the distorted folders ``jp2k/ jpeg/ wn/ gblur/
  fastfading/`` holding ``img1.bmp, img2.bmp, ...``, and the MATLAB files ``dmos_realigned.mat``
  (``dmos_new``, ``orgs``, ``dmos_std``), ``dmos.mat`` (``dmos``, ``orgs``) and ``refnames_all.mat``
  (``refnames_all``). Each MATLAB vector has 982 entries in the fixed order jp2k (227), jpeg (233),
  wn (174), gblur (174), fastfading (174); entry ``k`` of a folder is ``img{k}.bmp`` (1-based). This is
  the order hyperIQA's ``LIVEFolder`` (``SSL92/hyperIQA:folders.py``) and pyiqa's conversion script use.
  Entries with ``orgs == 1`` are undistorted copies of the references and are dropped, leaving 779.
- **``LIVE.txt``** (``source="txt"``) from icbcbicc/IQA-Dataset, as ARNIQA uses it: columns
  ``dis_img_path, dis_type, ref_img_path, score`` with the realigned DMOS; a leading ``LIVE/`` in the
  paths is dropped.

Scores are DMOS, lower is better, nominally 0..100; the realigned values stray slightly outside (e.g.
-2.64). The default is the **realigned** DMOS (``dmos_realigned.mat``), as in ARNIQA and hyperIQA; pyiqa
uses the original ``dmos.mat`` (``dmos="original"``). The loaded ``ScoreInfo.name`` says which:
``dmos_realigned`` or ``dmos``.

Types follow ARNIQA's names and its three groups (fast fading, a JPEG2000 stream with channel errors,
counts as ``jpeg``). LIVE has no discrete levels, so ``level`` is None (ARNIQA sets it to 5 everywhere).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthiqa.datasets.loaders import (
    dataset_root,
    listing,
    numeric_scores,
    read_label_table,
    register_dataset,
    require_files,
    resolve_all,
)
from synthiqa.datasets.records import IQADataset, IQARecord, ScoreInfo
from synthiqa.errors import DatasetError

#: Distorted folders in the order of the 982-entry MATLAB vectors, with their published sizes.
LIVE_FOLDERS: tuple[tuple[str, int], ...] = (
    ("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174),
)
#: LIVE folder -> (synthiqa/ARNIQA type name, ARNIQA group).
LIVE_TYPES: dict[str, tuple[str, str]] = {
    "jp2k": ("jpeg2000", "jpeg"),
    "jpeg": ("jpeg", "jpeg"),
    "wn": ("white_noise", "noise"),
    "gblur": ("gaussian_blur", "blur"),
    "fastfading": ("fast_fading", "jpeg"),
}
LIVE_SCORE = ScoreInfo("dmos", 0.0, 100.0, lower_better=True)
_DMOS_FILES = {"realigned": ("dmos_realigned.mat", "dmos_new"), "original": ("dmos.mat", "dmos")}


@register_dataset("live", score_info=LIVE_SCORE)
def load_live(root: Path, *, dmos: str = "realigned", source: str = "auto",
              folder_sizes: Mapping[str, int] | None = None) -> IQADataset:
    """LIVE Release 2 (779 distorted images, DMOS lower-better, realigned by default).

    Args:
        root: the LIVE folder (``refimgs/``, distorted folders, ``*.mat`` or ``LIVE.txt``).
        dmos: ``"realigned"`` (``dmos_realigned.mat``, default) or ``"original"`` (``dmos.mat``).
        source: ``"mat"``, ``"txt"`` (``LIVE.txt``, realigned only) or ``"auto"`` (the mat files when
            present, else ``LIVE.txt``).
        folder_sizes: entries per distorted folder for a copy whose MATLAB vectors are not the published
            982 long (e.g. a cut-down copy); keys from ``LIVE_FOLDERS``, in that order.
    """
    root = dataset_root(root, "live")
    if dmos not in _DMOS_FILES:
        raise DatasetError(f"live: option dmos={dmos!r} is not one of: {', '.join(_DMOS_FILES)}")
    if source not in ("auto", "mat", "txt"):
        raise DatasetError(f"live: option source={source!r} is not one of: auto, mat, txt")
    mat_file = _DMOS_FILES[dmos][0]
    if source == "auto":
        if (root / mat_file).is_file():
            source = "mat"
        elif (root / "LIVE.txt").is_file():
            source = "txt"
        else:
            raise DatasetError(f"live: neither {mat_file} nor LIVE.txt found in {root}")
    if source == "txt" and dmos != "realigned":
        raise DatasetError(
            "live: LIVE.txt holds the realigned DMOS only; use dmos='realigned' or the mat files"
        )
    records = _from_txt(root) if source == "txt" else _from_mat(root, dmos, folder_sizes)
    label = "dmos_realigned" if dmos == "realigned" else "dmos"
    return IQADataset("live", root, dataclasses.replace(LIVE_SCORE, name=label), records)


def _load_mat(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    from scipy.io import loadmat

    if not path.is_file():
        raise DatasetError(f"live: {path.name} not found in {path.parent}")
    try:
        content = loadmat(path)
    except (ValueError, OSError, TypeError, NotImplementedError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetError(f"live: cannot read {path}: {reason}") from None
    missing = [k for k in keys if k not in content]
    if missing:
        found = ", ".join(k for k in content if not k.startswith("__"))
        raise DatasetError(f"live {path.name}: missing variable {', '.join(missing)} (found: {found})")
    return content


def _mat_strings(value: np.ndarray) -> list[str]:
    """A MATLAB cell array of strings (or a char matrix) as a flat list of Python strings."""
    out = []
    for item in np.ravel(value):
        while isinstance(item, np.ndarray):
            item = item.ravel()[0] if item.size else ""
        out.append(str(item).strip())
    return out


def _folder_layout(n_entries: int, folder_sizes: Mapping[str, int] | None) -> list[tuple[str, int]]:
    """(folder, 1-based image number) for each MATLAB entry."""
    if folder_sizes is None:
        sizes = dict(LIVE_FOLDERS)
        if n_entries != sum(sizes.values()):
            raise DatasetError(
                f"live: the mat files have {n_entries} entries, not the published 982; "
                "pass folder_sizes={'jp2k': ..., 'jpeg': ..., 'wn': ..., 'gblur': ..., 'fastfading': ...}"
            )
    else:
        unknown = sorted(set(folder_sizes) - set(LIVE_TYPES))
        if unknown:
            raise DatasetError(f"live: folder_sizes has unknown folder {', '.join(unknown)}")
        sizes = {name: int(folder_sizes.get(name, 0)) for name, _ in LIVE_FOLDERS}
        if sum(sizes.values()) != n_entries:
            raise DatasetError(
                f"live: folder_sizes add up to {sum(sizes.values())} "
                f"but the mat files have {n_entries} entries"
            )
    return [(name, k) for name, _ in LIVE_FOLDERS for k in range(1, sizes[name] + 1)]


def _from_mat(root: Path, dmos: str, folder_sizes: Mapping[str, int] | None) -> list[IQARecord]:
    mat_file, score_key = _DMOS_FILES[dmos]
    scores_mat = _load_mat(root / mat_file, (score_key, "orgs"))
    names_mat = _load_mat(root / "refnames_all.mat", ("refnames_all",))
    raw = np.ravel(scores_mat[score_key])
    orgs = np.ravel(scores_mat["orgs"]).astype(bool)
    refnames = _mat_strings(names_mat["refnames_all"])
    std = np.ravel(scores_mat["dmos_std"]).astype(np.float64) if "dmos_std" in scores_mat else None
    lengths = {score_key: raw.size, "orgs": orgs.size, "refnames_all": len(refnames)}
    if std is not None:
        lengths["dmos_std"] = std.size
    if len(set(lengths.values())) > 1:
        raise DatasetError(f"live: mat vectors differ in length: {lengths}")
    layout = _folder_layout(raw.size, folder_sizes)
    keep = np.flatnonzero(~orgs)
    source = f"live {mat_file}"
    scores = numeric_scores(pd.Series(raw[keep]), source, rows=[f"entry {i + 1}" for i in keep])
    images = [root / folder / f"img{k}.bmp" for folder, k in (layout[i] for i in keep)]
    refs = resolve_all(root / "refimgs", [refnames[i] for i in keep], "live refnames_all.mat",
                       rows=[f"entry {i + 1}" for i in keep])
    require_files(images, root, source, "images")
    require_files(refs, root, "live refnames_all.mat", "reference images")
    records = []
    for j, i in enumerate(keep):
        folder = layout[i][0]
        extra: dict[str, Any] = {"live_index": int(i) + 1}
        if std is not None:
            extra["dmos_std"] = float(std[i])
        records.append(_record(images[j], refs[j], scores[j], folder, extra))
    return records


def _from_txt(root: Path) -> list[IQARecord]:
    source = "live LIVE.txt"
    table = read_label_table(root / "LIVE.txt", ("dis_img_path", "dis_type", "ref_img_path", "score"), source)
    scores = numeric_scores(table["score"], source)
    images = resolve_all(root, [_strip_prefix(p) for p in table["dis_img_path"].astype(str)], source)
    refs = resolve_all(root, [_strip_prefix(p) for p in table["ref_img_path"].astype(str)], source)
    kinds = [str(t).strip() for t in table["dis_type"]]
    unknown = sorted({k for k in kinds if k not in LIVE_TYPES})
    if unknown:
        raise DatasetError(
            f"{source}: unknown dis_type {listing(unknown)}; expected one of: {', '.join(LIVE_TYPES)}"
        )
    require_files(images, root, source, "images")
    require_files(refs, root, source, "reference images")
    return [_record(images[i], refs[i], scores[i], kinds[i], {}) for i in range(len(table))]


def _strip_prefix(path: str) -> str:
    """Drop the leading ``LIVE/`` that icbcbicc's ``LIVE.txt`` puts on every path."""
    parts = path.strip().replace("\\", "/").split("/", 1)
    return parts[1] if len(parts) == 2 and parts[0] == "LIVE" else path.strip()


def _record(image: Path, ref: Path, raw: float, folder: str, extra: dict[str, Any]) -> IQARecord:
    dist_type, group = LIVE_TYPES[folder]
    return IQARecord(
        image=image, score=float(raw), score_norm=LIVE_SCORE.normalise(float(raw)), reference=ref,
        scene=ref.stem, dist_type=dist_type, dist_group=group, level=None, extra=extra,
    )


__all__ = ["LIVE_FOLDERS", "LIVE_SCORE", "LIVE_TYPES", "load_live"]
