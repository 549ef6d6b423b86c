"""Passes of a trained network (CENIQA, TRCNN) over batches: scores, clusters, embeddings; prediction files.

Scores are in [0, 1], higher is better (the network ends in a sigmoid; the training target is the dataset's
normalised score). With several evaluation crops per image, a model whose ``pools_crops`` is true (CENIQA)
gets them together (``[B,n,3,S,S]``) and pools them itself; for other models the crops' scores, posteriors
and embeddings are averaged. The test report is the one quality table (``synthiqa.stats``) on the raw
predictions (no logistic fit: the model regresses the normalised score directly, the learned-IQA
convention); RMSE is on the [0, 1] scale.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from synthiqa.atomic import atomic_write_text
from synthiqa.datasets.records import IQARecord
from synthiqa.datasets.references import IMAGE_SUFFIXES
from synthiqa.errors import SynthiqaError
from synthiqa.models.data import LabelSpace, RecordImages, collate
from synthiqa.models.training.distributed import gather_in_order, sharded
from synthiqa.stats import cluster_purity, quality_summary, quality_table


@dataclass
class Outputs:
    """Per-image outputs of a pass: ``scores [N]`` in [0, 1], ``posteriors [N, K]`` (None before the
    mixture is fitted), ``embeddings [N, D]``, and the batch labels (``score``, ``type``, ``group``,
    ``level``, ``scene``; each ``[N]``), and ``parts``: the terms of the score a model reports besides it
    (CENIQA's ``regression`` and ``prior``; each ``[N]``)."""

    scores: np.ndarray
    posteriors: np.ndarray | None
    embeddings: np.ndarray
    labels: dict[str, np.ndarray]
    parts: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def clusters(self) -> np.ndarray | None:
        """Most probable mixture component per image (``[N]``), or None."""
        return None if self.posteriors is None else self.posteriors.argmax(1)


@torch.no_grad()
def run_model(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]], device: torch.device,
              amp: bool = False) -> Outputs:
    """Evaluate ``model`` (a ``CENIQANet``) on every batch; images ``[B,3,S,S]`` or ``[B,n,3,S,S]``; a batch's
    ``context`` (whole-image features) goes to a model that pools its crops.

    Under ``torch.distributed`` (every rank calls it with the same batches) rank r runs batches
    ``r, r + W, ...`` and the ranks' outputs are gathered in batch order: every rank gets all of them."""
    model.eval()
    pieces = []
    for _, batch in sharded(batches):
        images = batch["image"].to(device, non_blocking=True)
        pooled = images.dim() == 5 and getattr(model, "pools_crops", False)
        n_crops = images.shape[1] if images.dim() == 5 and not pooled else 1
        flat = images.flatten(0, 1) if images.dim() == 5 and not pooled else images
        context = batch.get("context") if pooled else None
        extra = {} if context is None else {"context": context.to(device, non_blocking=True)}
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            out = model.outputs(flat, **extra)
        b = flat.shape[0] // n_crops  # images
        piece = {"score": out["score"].float().view(b, n_crops).mean(1).cpu().numpy(),
                 "embedding": out["embedding"].float().view(b, n_crops, -1).mean(1).cpu().numpy(),
                 "labels": {k: batch[k].cpu().numpy() for k in ("score", "type", "group", "level", "scene")
                            if k in batch},
                 "parts": {k: out[k].float().view(b, n_crops).mean(1).cpu().numpy()
                           for k in ("regression", "prior") if out.get(k) is not None}}
        if out["posterior"] is not None:
            piece["posterior"] = out["posterior"].float().view(b, n_crops, -1).mean(1).cpu().numpy()
        pieces.append(piece)
    pieces = gather_in_order(pieces)
    if not pieces:
        raise SynthiqaError("no images to evaluate")
    posts = [p["posterior"] for p in pieces if "posterior" in p]
    label_keys = [k for k in pieces[0]["labels"] if all(k in p["labels"] for p in pieces)]
    part_keys = [k for k in pieces[0]["parts"] if all(k in p["parts"] for p in pieces)]
    return Outputs(np.concatenate([p["score"] for p in pieces]),
                   np.concatenate(posts) if len(posts) == len(pieces) else None,
                   np.concatenate([p["embedding"] for p in pieces]),
                   {k: np.concatenate([p["labels"][k] for p in pieces]) for k in label_keys},
                   {k: np.concatenate([p["parts"][k] for p in pieces]) for k in part_keys})


def cluster_summary(posteriors: np.ndarray | None, groups: np.ndarray | None,
                    min_fraction: float = 0.05) -> dict[str, float]:
    """Active clusters (holding >= ``min_fraction`` of the images) and purity against ``groups`` (ids
    >= 0; pristine and unknown, -1, are left out of the purity)."""
    if posteriors is None:
        return {}
    hard = posteriors.argmax(1)
    shares = np.bincount(hard, minlength=posteriors.shape[1]) / max(len(hard), 1)
    out = {"active_clusters": float((shares >= min_fraction).sum())}
    if groups is not None and (groups >= 0).any():
        out["purity"] = cluster_purity(hard[groups >= 0], groups[groups >= 0])
    return out


def evaluate_outputs(out: Outputs, type_names: Sequence[str] | None = None) -> dict[str, Any]:
    """The quality table (``synthiqa.stats.quality_table``, raw metric set) of a pass: overall SRCC, KRCC,
    PLCC, RMSE and ``n``, ``per_type`` where ``type_names`` names the type ids, and the cluster summary."""
    types = out.labels.get("type")
    names: list[str | None] = [None] * len(out.scores)
    if types is not None and type_names:
        names = [type_names[int(t)] if t >= 0 else None for t in types]
    result = quality_summary(quality_table(out.scores, out.labels["score"], names))
    result.update(cluster_summary(out.posteriors, out.labels.get("group")))
    return result


def list_images(target: str | Path) -> list[Path]:
    """The image files of ``target`` (a file, or a folder searched recursively), sorted."""
    p = Path(target)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise SynthiqaError(f"{p}: no such image or folder")
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SynthiqaError(f"{p}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    return files


def write_predictions(path: str | Path, rows: Sequence[tuple[Path, float, int | None]]) -> None:
    """CSV ``image,score,cluster`` (score in [0, 1], higher is better), written atomically."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", "score", "cluster"])
    for image, score, cluster in rows:
        w.writerow([str(image), f"{score:.6f}", "" if cluster is None else cluster])
    atomic_write_text(path, buf.getvalue())


def records_scores(model: torch.nn.Module, records: Sequence[IQARecord], labels: LabelSpace, size: int,
                   crops: int, batch_size: int, device: torch.device) -> Outputs:
    """Outputs for dataset records, with type/group ids from ``labels`` (unreadable images are an error
    here: a dataset must be complete), with each whole image's features for a model that has
    ``context_features``."""

    ds = RecordImages(records, labels, size, train=False, crops=crops,
                      context=getattr(model, "context_features", None))
    return run_model(model, DataLoader(ds, batch_size=batch_size, collate_fn=collate), device)
