"""Quality scores from any synthiqa model, for files and for tensors (pyiqa style).

``create_metric(name, checkpoint=None, device="auto", **options)`` returns a ``QualityMetric``, a torch
module scoring a float batch ``[B,3,H,W]`` in [0, 1] (``metric(x)``; full-reference metrics
``metric(x, ref)``); ``list_metrics()`` names every metric. ``Scorer`` is the one scoring path behind
it and behind ``synthiqa predict`` / ``evaluate``, so a tensor and the PNG file holding the same pixels
get the same score: images are quantised to uint8 (``round(255 x)``) and go through the readers the
files go through.

Every score is higher-is-better (``lower_better`` is False): trained methods give a quality in [0, 1],
NIQE its negated distance, BRISQUE its SVR's normalised-quality estimate, MDSI is negated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from synthiqa.datasets.records import DecodedImage, IQARecord
from synthiqa.datasets.spec import load_data_spec
from synthiqa.devices import resolve_device
from synthiqa.errors import ConfigError, DistortionInputError
from synthiqa.models.predictor_io import (
    checkpoint_method,
    load_on_device,
    predict_paths,
    predictor_clusters,
)
from synthiqa.models.registry import create_model, list_methods

#: Baselines and full-reference metrics: name -> (needs a reference, score range).
_CLASSICAL: dict[str, tuple[bool, tuple[float, float]]] = {
    "niqe": (False, (-math.inf, 0.0)),
    "brisque": (False, (-math.inf, math.inf)),
    "psnr": (True, (0.0, math.inf)),
    "ssim": (True, (-1.0, 1.0)),
    "ms_ssim": (True, (0.0, 1.0)),
    "fsim": (True, (0.0, 1.0)),
    "vsi": (True, (0.0, 1.0)),
    "haarpsi": (True, (0.0, 1.0)),
    "mdsi": (True, (-math.inf, 0.0)),
}

Row = tuple[Any, float, "int | None"]


def list_metrics() -> list[str]:
    """Every name ``create_metric`` accepts: the trained methods (with a checkpoint), ``niqe``,
    ``brisque`` and the full-reference metrics."""
    return sorted({*list_methods(), *_CLASSICAL})


class Scorer:
    """One model's scores for images given as files or ``DecodedImage`` s.

    Args:
        name: a ``list_metrics`` name, or None to take the method from ``checkpoint``.
        checkpoint: a trained model's ``best.pt`` / ``last.pt`` (trained methods only).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        **options: the model's options: NIQE ``reference_dir`` (default: the built-in references),
            ``patch_size``; BRISQUE ``data`` (a dataset spec its SVR is fitted on; required) and its SVR
            grids; full-reference ``batch_size``.
    """

    def __init__(self, name: str | None = None, checkpoint: str | Path | None = None, device: str = "auto",
                 **options: Any) -> None:
        self.device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
        if checkpoint is not None:
            method = checkpoint_method(checkpoint)
            if name is not None and name != method:
                raise ConfigError(f"{checkpoint}: a {method} checkpoint, not a {name} one")
            if options:
                raise ConfigError(f"{method}: a checkpoint fixes every option; got {', '.join(options)}")
            self.name, self.needs_reference, self.score_range = method, False, (0.0, 1.0)
            self.predictor = load_on_device(checkpoint, self.device)
            return
        if name is None:
            raise ConfigError("give a metric name or a checkpoint")
        if name in list_methods():
            raise ConfigError(f"{name} is a trained method: give checkpoint=PATH (--checkpoint) of a model "
                              f"trained with synthiqa train --method {name}")
        if name not in _CLASSICAL:
            raise ConfigError(f"unknown metric {name!r}; known: {', '.join(list_metrics())}")
        self.name = name
        self.needs_reference, self.score_range = _CLASSICAL[name]
        if name == "brisque":
            self.predictor = create_model(name, **{k: v for k, v in options.items() if k != "data"})
            self._fit_brisque(options.get("data"))
        elif name == "niqe":
            self.predictor = create_model(name, **options)
            self.predictor.fit_builtin()
        else:
            self.predictor = create_model(name, device=str(self.device), **options)

    def _fit_brisque(self, data: Any) -> None:
        if not data:
            raise ConfigError("brisque is fitted on rated images: give data=KIND:PATH (--option "
                              "data=KIND:PATH), e.g. a set made by synthiqa generate")
        self.predictor.fit(load_data_spec(str(data))[1].records)

    def score(self, images: Sequence[Any], references: Sequence[Any] | None = None, batch_size: int = 32,
              warn: Callable[[str], None] | None = None, progress: Callable[[int], None] | None = None
              ) -> list[Row]:
        """(image, score, cluster or None) for every readable image (paths or ``DecodedImage`` s;
        ``references`` pairs each with its reference for full-reference metrics); unreadable ones are
        reported through ``warn`` and left out; ``progress`` gets the images done after each batch."""
        if self.needs_reference and (references is None or any(r is None for r in references)):
            raise ConfigError(f"{self.name} is full-reference: every image needs its reference "
                              "(a dataset with a reference column, or metric(x, ref))")
        if references is None:
            return predict_paths(self.predictor, list(images), batch_size, warn=warn, progress=progress)
        records = [IQARecord(image=i, score=math.nan, score_norm=math.nan, reference=r)
                   for i, r in zip(images, references, strict=True)]
        return [(r.image, float(s), None) for r, s in zip(records, self.predictor.predict(records),
                                                           strict=True)]

    def score_records(self, records: Sequence[IQARecord]) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores of dataset records (every image must be readable) and, for a predictor with a mixture
        (``clusters(records)``, CENIQA), each image's cluster; the path the harness evaluates with."""
        if self.needs_reference and any(r.reference is None for r in records):
            raise ConfigError(f"{self.name} is full-reference: the dataset has images without a reference")
        records = list(records)
        scores = np.asarray(self.predictor.predict(records), dtype=np.float64)
        return scores, predictor_clusters(self.predictor, records)


def _as_uint8(x: torch.Tensor, what: str) -> torch.Tensor:
    """``[B,3,H,W]`` uint8 of a float batch in [0, 1] (rounded) or a uint8 batch; one-line errors."""
    if not isinstance(x, torch.Tensor):
        raise DistortionInputError(f"{what}: expected a torch tensor, got {type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3:
        raise DistortionInputError(f"{what}: expected [B,3,H,W] RGB, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.detach().cpu()
    if not x.is_floating_point():
        raise DistortionInputError(f"{what}: expected float in [0, 1] or uint8, got {x.dtype}")
    return x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


class QualityMetric(nn.Module):
    """A quality model as a torch module: ``metric(x)`` (``metric(x, ref)`` when ``needs_reference``)
    gives one score per image, float32 ``[B]`` on ``x``'s device, higher is better.

    Attributes:
        name: the metric's name; lower_better: always False (scores are oriented higher-is-better);
        score_range: (low, high) the scores lie in; needs_reference: full-reference metric.
    Inputs are float ``[B,3,H,W]`` (or ``[3,H,W]``) in [0, 1], or uint8; they are scored as the 8-bit
    images they round to, so ``synthiqa predict`` on those images' PNG files gives the same numbers. The
    scores carry no gradient (use piq or kornia losses to train through a metric).
    """

    lower_better = False

    def __init__(self, scorer: Scorer, batch_size: int = 32) -> None:
        super().__init__()
        self.scorer = scorer
        self.name = scorer.name
        self.score_range = scorer.score_range
        self.needs_reference = scorer.needs_reference
        self.batch_size = int(batch_size)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, needs_reference={self.needs_reference}, score_range={self.score_range}"

    @torch.no_grad()
    def forward(self, x: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        images = _as_uint8(x, f"{self.name} input")
        refs = None
        if ref is not None:
            if not self.needs_reference:
                raise DistortionInputError(f"{self.name} is no-reference: call metric(x), not metric(x, ref)")
            ref8 = _as_uint8(ref, f"{self.name} reference")
            if ref8.shape != images.shape:
                raise DistortionInputError(f"{self.name}: reference shape {tuple(ref8.shape)} differs from "
                                           f"the input's {tuple(images.shape)}")
            refs = [DecodedImage(r, f"<reference {i}>") for i, r in enumerate(ref8)]
        elif self.needs_reference:
            raise DistortionInputError(f"{self.name} is full-reference: call metric(x, ref)")
        decoded = [DecodedImage(img, f"<image {i}>") for i, img in enumerate(images)]
        problems: list[str] = []
        rows = self.scorer.score(decoded, refs, self.batch_size, warn=problems.append)
        if problems:
            raise DistortionInputError(f"{self.name}: {problems[0].removeprefix('skipped ')}")
        return torch.tensor([s for _, s, _ in rows], dtype=torch.float32, device=x.device)


def create_metric(name: str | None = None, checkpoint: str | Path | None = None, device: str = "auto",
                  **options: Any) -> QualityMetric:
    """A ``QualityMetric`` for ``name`` (see ``list_metrics``): a trained method from its ``checkpoint``
    (``name`` may then be None), ``niqe``, ``brisque`` (``data=KIND:PATH`` to fit on) or a full-reference
    metric (``psnr``, ``ssim``, ``ms_ssim``, ``fsim``, ``vsi``, ``haarpsi``, ``mdsi``). ``batch_size``
    (default 32) sets how many images one model call takes; other ``options`` go to the model."""
    batch_size = int(options.pop("batch_size", 32))
    return QualityMetric(Scorer(name, checkpoint, device, **options), batch_size)


__all__ = ["QualityMetric", "Scorer", "create_metric", "list_metrics"]
