"""Where the references come from: the built-in photographs or a scanned folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synthiqa.datasets.builtin import builtin_reference_images
from synthiqa.datasets.references import (
    MIN_SIDE,
    Reference,
    decode_reference,
    normalise_reference,
    scan_references,
)


@dataclass
class Sources:
    """The usable references in scan order, the files skipped at scan time as (file, reason), and the
    built-in images by name (empty for a folder)."""

    references: list[Reference]
    skipped: list[tuple[str, str]]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def scan_sources(ref_dir: str | None, crop: tuple[int, int] | None, max_pixels: int,
                 warn: Callable[[str], None] | None = None, max_side: int | None = None) -> Sources:
    """The references of a run: the built-ins when ``ref_dir`` is None, else the folder's usable images
    (``max_side`` / ``crop`` admit images over ``max_pixels``, which are shrunk while decoding)."""
    if ref_dir is None:
        arrays = dict(builtin_reference_images())
        return Sources([Reference(name, None, (a.shape[1], a.shape[0])) for name, a in arrays.items()], [],
                       arrays)
    result = scan_references(ref_dir, MIN_SIDE, crop, max_pixels, warn=warn, max_side=max_side)
    return Sources(result.references, list(result.skipped))


def source_path(ref: Reference, ref_dir: str | None) -> str:
    """A reference's original file, relative to the reference folder (``builtin:NAME`` for built-ins):
    the provenance kept in the manifest, whatever name the file was given in the output."""
    if ref.path is None or ref_dir is None:
        return f"builtin:{ref.name}"
    return Path(ref.path).relative_to(Path(ref_dir)).as_posix()


def load_reference(ref: Reference, arrays: dict[str, np.ndarray], max_side: int | None,
                   crop: tuple[int, int] | None, max_pixels: int) -> np.ndarray:
    """The reference as the run distorts it: decoded (or built-in), resized or cropped; RGB uint8 HxWx3.
    Raises ``ReferenceSkipped`` for a file that cannot be decoded."""
    arr = arrays[ref.name] if ref.path is None else decode_reference(ref.path, max_pixels, max_side, crop)
    return normalise_reference(arr, max_side, crop)
