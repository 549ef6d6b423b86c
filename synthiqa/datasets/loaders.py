"""Dataset loaders in timm's style: ``@register_dataset`` registers a loader, ``load_dataset`` builds one.

The kinds live in one ``Registry`` (``DATASET_KINDS``); the built-in ones are the modules of
``synthiqa/datasets/kinds/``.

A loader is a function ``loader(root, *, option=...) -> IQADataset`` that reads a label file, checks that
every listed image exists (without decoding it) and returns one ``IQARecord`` per rated image. The helpers
below are shared by the loaders: they keep every path inside the dataset root and turn many small
problems (missing images, bad scores) into one error line that names the file and the first few cases.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthiqa.datasets.records import IQADataset, ScoreInfo
from synthiqa.errors import DatasetError
from synthiqa.registry import Registry

#: How many offending items an error message lists before ``...``.
SHOWN_PROBLEMS = 3

Loader = Callable[..., IQADataset]


@dataclass(frozen=True)
class DatasetKind:
    """A registered loader and what it states about its scores.

    Attributes:
        name: the ``kind`` given to ``load_dataset``.
        loader: ``loader(root, **options) -> IQADataset``.
        score_info: the fixed score range and direction, or None where each dataset declares its own
            (``csv`` takes it from the user's options, ``synthiqa`` from ``dataset.json``).
        description: one line.
    """

    name: str
    loader: Loader
    score_info: ScoreInfo | None
    description: str


#: Every registered dataset kind by name.
DATASET_KINDS: Registry[DatasetKind] = Registry("dataset kind", "synthiqa.datasets.kinds", DatasetError)


def register_dataset(kind: str, score_info: ScoreInfo | None = None,
                     description: str = "") -> Callable[[Loader], Loader]:
    """Decorator: make ``loader`` available as ``load_dataset(kind, root, **options)``.

    ``score_info`` is the kind's fixed range and direction; pass None only for kinds whose datasets
    declare it themselves (the loader must then set ``IQADataset.score_info`` from that declaration).
    """

    def decorate(loader: Loader) -> Loader:
        doc = description or (inspect.getdoc(loader) or "").split("\n", 1)[0]
        DATASET_KINDS.register(kind, DatasetKind(kind, loader, score_info, doc))
        return loader

    return decorate


def list_dataset_kinds() -> list[str]:
    """Names accepted by ``load_dataset``, sorted."""
    return DATASET_KINDS.list()


def get_dataset_kind(kind: str) -> DatasetKind:
    """The registered kind; a one-line error with suggestions for an unknown one."""
    return DATASET_KINDS.get(kind)


def load_dataset(kind: str, root: str | os.PathLike, **options: Any) -> IQADataset:
    """Load the dataset at ``root`` with the loader registered as ``kind`` (see ``list_dataset_kinds``).

    ``options`` go to the loader as keyword arguments; an unknown option is a one-line ``DatasetError``
    that lists the accepted ones.
    """
    entry = get_dataset_kind(kind)
    accepted = [p.name for p in list(inspect.signature(entry.loader).parameters.values())[1:]]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DatasetError(
            f"dataset kind {kind!r} has no option {', '.join(unknown)}; "
            f"its options are: {', '.join(accepted) or '(none)'}"
        )
    return entry.loader(Path(root), **options)


# --- helpers shared by the loaders -------------------------------------------------------------------


def dataset_root(root: Path, kind: str) -> Path:
    """``root`` made absolute; a one-line error when it is not a folder."""
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise DatasetError(f"{kind}: dataset root {root} {what}")
    return Path(os.path.abspath(root))


def listing(items: Sequence[str], total: int | None = None) -> str:
    """``a, b, c, ...``: the first ``SHOWN_PROBLEMS`` items, with an ellipsis when more exist."""
    total = len(items) if total is None else total
    shown = ", ".join(str(i) for i in items[:SHOWN_PROBLEMS])
    return shown + (", ..." if total > SHOWN_PROBLEMS else "")


def read_label_table(path: Path, required: Iterable[str], source: str, **read_options: Any) -> pd.DataFrame:
    """Read a CSV (or ``.parquet``) label file and check that it has the ``required`` columns.

    ``source`` names the file in error messages (``"kadid10k dmos.csv"``).
    """
    if not path.is_file():
        raise DatasetError(f"{source}: label file not found: {path}")
    try:
        if path.suffix == ".parquet":
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path, keep_default_na=False, **read_options)
    except (ValueError, OSError, pd.errors.ParserError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetError(f"{source}: cannot read {path}: {first}") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DatasetError(
            f"{source}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(found: {', '.join(table.columns) or 'none'})"
        )
    if table.empty:
        raise DatasetError(f"{source}: no rows in {path}")
    return table


def numeric_scores(values: pd.Series, source: str, rows: Sequence[str] | None = None) -> np.ndarray:
    """``values`` as float64; one error naming the first rows whose score is missing or not a number.

    ``rows`` labels each value in messages (default ``row 1``, ``row 2``... counting data rows from 1).
    """
    scores = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        labels = [rows[i] if rows is not None else f"row {i + 1}" for i in bad[:SHOWN_PROBLEMS]]
        shown = [f"{lab} ({_shown_value(values.iloc[i])})"
                 for lab, i in zip(labels, bad[:SHOWN_PROBLEMS], strict=True)]
        raise DatasetError(
            f"{source}: {bad.size} scores missing or not numbers, first: {listing(shown, bad.size)}"
        )
    return scores


def _shown_value(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return "empty"
    if not isinstance(value, str) and pd.isna(value):
        return "empty"
    return repr(value.item() if hasattr(value, "item") else value)


def resolve_inside(root: Path, relative: str, source: str, row: str, hint: str | None = None) -> Path:
    """``root / relative`` normalised; a one-line error if it points outside ``root``.

    The check is lexical (``..`` and absolute paths), so a dataset whose image folder is a symlink to
    another disk still loads. ``row`` names the offending row in the error (``"row 12"``); ``hint`` ends
    the error of a path outside the root (how to point the loader at the right folder).
    """
    text = str(relative).strip()
    if not text or text.lower() == "nan":
        raise DatasetError(f"{source} {row}: empty image path")
    base = str(root)
    joined = os.path.normpath(os.path.join(base, text.replace("\\", "/")))
    if not joined.startswith(base.rstrip(os.sep) + os.sep):
        raise DatasetError(f"{source} {row}: path {text!r} resolves outside the dataset root {root}"
                           + (f"; {hint}" if hint else ""))
    return Path(joined)


def resolve_all(root: Path, relatives: Iterable[str], source: str,
                rows: Sequence[str] | None = None, hint: str | None = None) -> list[Path]:
    """``resolve_inside`` for a column of paths; ``rows`` labels each path in messages (default ``row i``)."""
    return [
        resolve_inside(root, rel, source, rows[i] if rows is not None else f"row {i + 1}", hint)
        for i, rel in enumerate(relatives)
    ]


def resolve_optional(root: Path, relatives: Sequence[str | None], source: str,
                     rows: Sequence[str] | None = None, hint: str | None = None) -> list[Path | None]:
    """``resolve_all`` for a column where some rows have no path (None stays None)."""
    out: list[Path | None] = []
    for i, rel in enumerate(relatives):
        row = rows[i] if rows is not None else f"row {i + 1}"
        out.append(None if rel is None else resolve_inside(root, str(rel), source, row, hint))
    return out


def require_files(paths: Iterable[Path], root: Path, source: str, what: str = "images") -> None:
    """One error listing how many of ``paths`` are missing and the first few (relative to ``root``).

    Only existence is checked: no image is opened, so loading stays fast.
    """
    missing = sorted({p for p in paths if not p.is_file()})
    if missing:
        shown = [p.relative_to(root).as_posix() for p in missing[:SHOWN_PROBLEMS]]
        raise DatasetError(f"{source}: {len(missing)} {what} missing, first: {listing(shown, len(missing))}")


def relative_key(root: Path, path: Path) -> str:
    """The key of an image: its path relative to the dataset root, with ``/`` separators.

    Raises ValueError when ``path`` is not inside ``root``.
    """
    base, text = str(root).rstrip(os.sep) + os.sep, str(path)
    if text.startswith(base):
        return text[len(base):].replace(os.sep, "/")
    return path.relative_to(root).as_posix()
