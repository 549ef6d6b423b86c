"""Image files to scores through any ``QualityPredictor`` (a loaded checkpoint or a baseline), for
``synthiqa.scoring.Scorer``.

CENIQA's checkpoints keep their own path (``inference.py``: clusters per image); the other methods
(ARNIQA, TRCNN, SIND) and the baselines come here. Scores are each predictor's (higher is better).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

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


def predict_paths(predictor: QualityPredictor, paths: Sequence[Path], batch_size: int = 32,
                  warn: Callable[[str], None] | None = None) -> list[tuple[Path, float, None]]:
    """(path, score, None) for every readable image, in chunks of ``batch_size``; a chunk with an
    unreadable image is redone image by image and each unreadable one reported through ``warn``."""
    rows: list[tuple[Path, float, None]] = []
    for start in range(0, len(paths), max(1, batch_size)):
        chunk = list(paths[start:start + max(1, batch_size)])
        try:
            scores = predictor.predict([_unscored(p) for p in chunk])
            rows += [(p, float(s), None) for p, s in zip(chunk, scores, strict=True)]
            continue
        except DatasetError:
            pass
        for p in chunk:
            try:
                rows.append((p, float(predictor.predict([_unscored(p)])[0]), None))
            except DatasetError as exc:
                if warn is not None:
                    warn(f"skipped {exc}")
    return rows
