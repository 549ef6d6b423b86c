"""Image files to scores through any ``QualityPredictor`` (a loaded checkpoint or a baseline), for
``synthiqa.scoring.Scorer``: one path for every method and baseline. Scores are each predictor's (higher
is better); a predictor with a mixture (``clusters(records)``, CENIQA) also gives each image's cluster.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from synthiqa.datasets.records import IQARecord
from synthiqa.devices import resolve_device
from synthiqa.errors import DatasetError
from synthiqa.models.registry import QualityPredictor, load_predictor
from synthiqa.models.training.loop import load_checkpoint


def checkpoint_method(path: str | Path) -> str:
    """The ``method`` entry of a checkpoint (one-line errors for missing or foreign files)."""
    return str(load_checkpoint(path).get("method"))


def load_on_device(path: str | Path, device: str | torch.device = "auto") -> QualityPredictor:
    """``load_predictor(path)`` with its network moved to ``device``."""
    predictor = load_predictor(path)
    to = getattr(predictor, "to", None)
    if callable(to):
        to(resolve_device(str(device)) if not isinstance(device, torch.device) else device)
    return predictor


def _unscored(path: Path) -> IQARecord:
    return IQARecord(image=path, score=math.nan, score_norm=math.nan)


def predictor_clusters(predictor: QualityPredictor, records: Sequence[IQARecord]) -> np.ndarray | None:
    """The predictor's mixture cluster of each record, or None for predictors without one."""
    clusters = getattr(predictor, "clusters", None)
    return None if not callable(clusters) else clusters(records)


def _rows(predictor: QualityPredictor, paths: Sequence[Path]) -> list[tuple[Path, float, int | None]]:
    records = [_unscored(p) for p in paths]
    scores = predictor.predict(records)
    clusters = predictor_clusters(predictor, records)
    return [(p, float(s), None if clusters is None else int(clusters[i]))
            for i, (p, s) in enumerate(zip(paths, scores, strict=True))]


def predict_paths(predictor: QualityPredictor, paths: Sequence[Path], batch_size: int = 32,
                  warn: Callable[[str], None] | None = None, progress: Callable[[int], None] | None = None
                  ) -> list[tuple[Path, float, int | None]]:
    """(path, score, cluster or None) for every readable image, in chunks of ``batch_size``; a chunk with
    an unreadable image is redone image by image and each unreadable one reported through ``warn``;
    ``progress`` gets the number of images done (scored or skipped) after each chunk."""
    rows: list[tuple[Path, float, int | None]] = []
    step = max(1, batch_size)
    for start in range(0, len(paths), step):
        chunk = list(paths[start:start + step])
        try:
            rows += _rows(predictor, chunk)
        except DatasetError:
            for p in chunk:
                try:
                    rows += _rows(predictor, [p])
                except DatasetError as exc:
                    if warn is not None:
                        warn(f"skipped {exc}")
        if progress is not None:
            progress(min(start + step, len(paths)))
    return rows
