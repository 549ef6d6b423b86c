"""One record type for every dataset, and the facts each dataset must state about its scores."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class ScoreInfo:
    """How a dataset's raw scores read: their range and direction (pyiqa's ``mos_range``/``lower_better``).

    Attributes:
        name: label name (``mos``, ``dmos``, ``level_quality``, ``fr_pseudo_mos``...).
        low, high: nominal range of the raw score (values may stray slightly outside, as LIVE's do).
        lower_better: True for DMOS-style scores where a lower value means better quality.
    """

    name: str
    low: float
    high: float
    lower_better: bool = False

    def normalise(self, raw: float) -> float:
        """Map a raw score to [0, 1], higher is better (not clipped: out-of-range raw values stay out)."""
        unit = (raw - self.low) / (self.high - self.low)
        return 1.0 - unit if self.lower_better else unit

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DecodedImage:
    """An image already in memory, usable where a record names an image file (``IQARecord.image`` and
    ``reference``): the model readers take its pixels instead of decoding a file. ``pixels``: uint8
    ``[3,H,W]`` RGB tensor; ``name``: how messages and outputs call it."""

    __slots__ = ("pixels", "name")

    def __init__(self, pixels: Any, name: str = "<tensor>") -> None:
        self.pixels = pixels
        self.name = name

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"DecodedImage({self.name!r}, shape={tuple(self.pixels.shape)})"


@dataclass(frozen=True)
class IQARecord:
    """One rated image.

    Attributes:
        image: path of the (distorted) image (or a ``DecodedImage``).
        score: raw score as the dataset gives it.
        score_norm: score in [0, 1], higher is better (``ScoreInfo.normalise``).
        reference: path of its pristine reference, or None.
        scene: reference / content id used for reference-disjoint splits.
        dist_type: distortion type name, or None; for chains the ``>``-joined names.
        dist_group: distortion group, or None.
        level: distortion level 1..5 (or severity-derived), or None; for chains the maximum.
        extra: anything else the loader knows (chain text, label components...).
    """

    image: Path
    score: float
    score_norm: float
    reference: Path | None = None
    scene: str | None = None
    dist_type: str | None = None
    dist_group: str | None = None
    level: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class IQADataset:
    """Records plus what the loader knows about the dataset as a whole."""

    name: str
    root: Path
    score_info: ScoreInfo
    records: list[IQARecord]

    def __len__(self) -> int:
        return len(self.records)

    def to_frame(self) -> pd.DataFrame:
        """One row per record; ``image`` and ``reference`` as strings."""
        rows = []
        for r in self.records:
            row = {
                "image": str(r.image), "reference": str(r.reference) if r.reference else None,
                "scene": r.scene, "score": r.score, "score_norm": r.score_norm, "dist_type": r.dist_type,
                "dist_group": r.dist_group, "level": r.level,
            }
            row.update(r.extra)
            rows.append(row)
        return pd.DataFrame(rows)
