"""``synthiqa predict`` and ``synthiqa evaluate`` for any method's checkpoint, through its
``QualityPredictor`` (``load_predictor``): image files to scores, a dataset to SRCC/PLCC/RMSE/MSE.

CENIQA's checkpoints keep their own path (``inference.py``: clusters per image); the other methods
(ARNIQA, TRCNN, SIND) come here. Scores are each predictor's (higher is better).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthiqa.datasets.records import IQARecord
from synthiqa.devices import resolve_device
from synthiqa.errors import DatasetError
from synthiqa.models.data import PRISTINE
from synthiqa.models.inference import quality_metrics
from synthiqa.models.registry import QualityPredictor, load_predictor
from synthiqa.models.training import load_checkpoint


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


def evaluate_records(predictor: QualityPredictor, records: Sequence[IQARecord]) -> dict[str, Any]:
    """SRCC, PLCC (raw), RMSE and MSE against ``score_norm``, overall and per distortion type (pristine
    images count overall only)."""
    pred = np.asarray(predictor.predict(records), dtype=np.float64)
    y = np.array([math.nan if r.score_norm is None else r.score_norm for r in records], dtype=np.float64)
    result: dict[str, Any] = dict(quality_metrics(pred, y))
    result["mse"] = float(result["rmse"]) ** 2
    per_type = {}
    for t in sorted({r.dist_type for r in records if r.dist_type and r.dist_type != PRISTINE}):
        sel = np.array([r.dist_type == t for r in records])
        if sel.sum() >= 2:
            m = quality_metrics(pred[sel], y[sel])
            per_type[t] = {**m, "mse": float(m["rmse"]) ** 2}
    if per_type:
        result["per_type"] = per_type
    return result


def evaluate_predictor_checkpoint(checkpoint: str | Path, data: str, label: str | None = None,
                                  split: str | None = None, device: str = "auto") -> dict[str, Any]:
    """``evaluate_records`` of a checkpoint on ``data`` (``KIND:PATH`` or a generated folder); ``split``
    keeps only the manifest's ``train``/``val``/``test`` part."""
    from synthiqa.datasets.spec import load_data_spec

    records = load_data_spec(data, label)[1].records
    if split is not None:
        records = [r for r in records if r.extra.get("split") == split]
        if not records:
            raise DatasetError(f"{data}: no images with split {split!r}")
    return evaluate_records(load_on_device(checkpoint, device), records)
