"""SIND, scene-invariant distribution learning: the parts that make a quality regressor learn what is
shared across scenes rather than each scene's absolute level.

* ``SceneSampler``: every batch holds ``k`` domains (scenes, i.e. references, or whole datasets) with
  ``n`` images each, so each domain's predictions can be compared with its labels inside the batch.
* ``scale_shift_align`` / ``sind_loss``: per domain of the batch, the affine map ``a*p + b`` of the
  predictions that best fits the labels (closed-form least squares, differentiable) is applied before an
  L1 loss; with alignment off the loss is plain L1. The slope is kept >= 0 so that an inverted ranking is
  never a perfect fit, and a small unaligned L1 term (``anchor_weight``) keeps scores on the label scale
  (design choices of this implementation, stated here because the loss alone is sign- and offset-free).
* ``LocalGlobalImages``: the local-global patch option: each image is seen as one global view (the whole
  image resized to the crop size) plus ``n_local`` full-resolution crops; the image's score is the mean
  over its views.
* ``experiment_splits``: ``random-split`` (images at random: scenes leak between parts, the optimistic
  protocol), ``reference-split`` (reference-disjoint), ``leave-one-out`` (cross-scene: one scene held out
  per fold) and ``cross-set`` (train on one dataset, test on another).

``synthiqa train --method sind`` is TRCNN's network trained with all of the above switched on (scene
sampling, scene alignment); every option is also a field of the TRCNN config (``--method trcnn --set
alignment=scene``...).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Sampler

from synthiqa.datasets.records import IQADataset, IQARecord
from synthiqa.distortions.rng import derive_seed
from synthiqa.errors import ConfigError, DatasetError
from synthiqa.models.data import LabelSpace, RecordImages, crop_origins, fit_min_side, random_origin, read_rgb
from synthiqa.models.registry import Method, register_method, register_model

METHOD = "sind"
EXPERIMENTS = ("reference-split", "random-split", "leave-one-out", "cross-set")
ALIGNMENTS = ("none", "scene", "dataset")


# ---------------------------------------------------------------------------------------- sampling
class SceneSampler(Sampler[list[int]]):
    """Batches of ``scenes_per_batch`` domains x ``images_per_scene`` images.

    Args:
        domains: the domain id of every item (scene or dataset index).
        scenes_per_batch: k, distinct domains per batch (all of them when there are fewer).
        images_per_scene: n, images drawn per domain without replacement (with replacement when a domain
            has fewer than n).
        steps: batches per epoch (default: as many as cover the items once on average).
        seed: with ``set_epoch``, batch ``t`` of epoch ``e`` depends only on (seed, e, t).

    Domains with a single item are never drawn: alignment within them is empty.
    """

    def __init__(self, domains: Sequence[int], scenes_per_batch: int, images_per_scene: int,
                 steps: int | None = None, seed: int = 0):
        if scenes_per_batch < 1 or images_per_scene < 2:
            raise ConfigError(f"scene sampling needs scenes_per_batch >= 1 and images_per_scene >= 2, got "
                              f"{scenes_per_batch} and {images_per_scene}")
        members: dict[int, list[int]] = {}
        for i, d in enumerate(domains):
            members.setdefault(int(d), []).append(i)
        self.members = {d: m for d, m in sorted(members.items()) if len(m) >= 2}
        if not self.members:
            raise DatasetError("scene sampling: no scene (or dataset) has two or more training images")
        self.k = min(scenes_per_batch, len(self.members))
        self.n = images_per_scene
        self.steps = steps or max(1, math.ceil(len(domains) / (self.k * self.n)))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        keys = list(self.members)
        for step in range(self.steps):
            rng = random.Random(derive_seed(self.seed, self.epoch, step, "scene-sampler"))
            batch = []
            for d in rng.sample(keys, self.k):
                m = self.members[d]
                batch += rng.sample(m, self.n) if len(m) >= self.n else rng.choices(m, k=self.n)
            yield batch


# ---------------------------------------------------------------------------------------- alignment
def scale_shift_align(pred: torch.Tensor, target: torch.Tensor, domains: torch.Tensor,
                      nonnegative: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Predictions mapped by each domain's least-squares affine fit to the labels.

    For the items of domain ``d``: ``a = cov(p, y) / var(p)``, ``b = mean(y) - a mean(p)`` (the
    solution of ``min_{a,b} sum (a p_i + b - y_i)^2``), returned as ``a p + b``; differentiable in ``p``.
    A domain with constant predictions (or one item) gets ``a = 0``, i.e. its label mean.

    Args:
        pred, target: ``[B]`` predictions and labels.
        domains: ``[B]`` integer domain ids.
        nonnegative: clamp the slope at 0 (an inverted ranking then cannot fit).
        eps: added to the variance.
    """
    p, y = pred.float(), target.float()
    _, inv = torch.unique(domains, return_inverse=True)
    g = int(inv.max()) + 1
    count = torch.zeros(g, device=p.device).index_add_(0, inv, torch.ones_like(p))
    mean_p = torch.zeros(g, device=p.device).index_add_(0, inv, p) / count
    mean_y = torch.zeros(g, device=p.device).index_add_(0, inv, y) / count
    dp, dy = p - mean_p[inv], y - mean_y[inv]
    var = torch.zeros(g, device=p.device).index_add_(0, inv, dp * dp)
    cov = torch.zeros(g, device=p.device).index_add_(0, inv, dp * dy)
    a = cov / (var + eps)
    if nonnegative:
        a = a.clamp_min(0.0)
    return a[inv] * dp + mean_y[inv]


def sind_loss(pred: torch.Tensor, target: torch.Tensor, domains: torch.Tensor | None, align: bool = True,
              anchor_weight: float = 0.1) -> torch.Tensor:
    """SIND's loss: L1 between the per-domain aligned predictions and the labels, plus ``anchor_weight``
    times the unaligned L1; plain L1 when ``align`` is False. Items with a NaN label are ignored."""
    ok = torch.isfinite(target)
    if not bool(ok.any()):
        return pred.sum() * 0.0
    p, y = pred[ok].float(), target[ok].float()
    plain = F.l1_loss(p, y)
    if not align or domains is None:
        return plain
    aligned = scale_shift_align(p, y, domains[ok])
    return F.l1_loss(aligned, y) + anchor_weight * plain


# ---------------------------------------------------------------------------------------- patches
class LocalGlobalImages(RecordImages):
    """Each item's ``image`` is ``[1 + n_local, 3, S, S]``: the whole image resized to ``S x S`` (global
    view, bilinear with antialiasing) followed by ``n_local`` full-resolution ``S`` crops (random in
    training, spread over the image at evaluation)."""

    def __init__(self, records: Sequence[IQARecord], labels: LabelSpace, size: int, train: bool,
                 n_local: int = 3, seed: int = 0):
        super().__init__(records, labels, size, train=train, crops=n_local, seed=seed)
        self.n_local = n_local

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = fit_min_side(read_rgb(self.records[i].image), self.size)
        h, w = image.shape[-2:]
        s = self.size
        whole = F.interpolate(image[None].float(), size=(s, s), mode="bilinear", antialias=True,
                              align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
        if self.train:
            rng = random.Random(derive_seed(self.seed, self.epoch, i, "local"))
            origins = [random_origin(h, w, s, rng) for _ in range(self.n_local)]
        else:
            origins = crop_origins(h, w, s, self.n_local)
        views = [whole] + [image[:, y:y + s, x:x + s] for y, x in origins]
        out = self.targets(i)
        out["image"] = torch.stack(views)
        return out


# ---------------------------------------------------------------------------------------- experiments
def experiment_splits(experiment: str, dataset: IQADataset, test_dataset: IQADataset | None = None,
                      seed: int = 27, n_splits: int = 1) -> list[Any]:
    """The train/val/test ``Split`` list of an experiment type on ``dataset``.

    ``reference-split``: ``n_splits`` reference-disjoint 70/10/20 splits. ``random-split``: the same
    ratios over images, ignoring scenes (scenes leak: the protocol SIND argues against, kept for
    comparison). ``leave-one-out``: one fold per scene, tested on that scene (10% of the other scenes
    become val). ``cross-set``: all of ``dataset`` (10% of its scenes as val) against all of
    ``test_dataset``.
    """
    from synthiqa.datasets import (
        Split,
        cross_dataset,
        image_key,
        image_keys,
        leave_one_reference_out,
        reference_disjoint_splits,
    )

    if experiment == "reference-split":
        return reference_disjoint_splits(dataset, n_splits=n_splits, seed=seed)
    if experiment == "random-split":
        keys = sorted(set(image_keys(dataset)))
        if len(keys) < 3:
            raise DatasetError(f"random-split needs at least 3 images, {dataset.name!r} has {len(keys)}")
        n_test, n_val = max(1, round(0.2 * len(keys))), max(1, round(0.1 * len(keys)))
        splits = []
        for i in range(n_splits):
            order = [keys[j] for j in np.random.default_rng([seed, i, 1]).permutation(len(keys))]
            test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
            splits.append(Split(f"random_{i:02d}", sorted(train), sorted(val), sorted(test),
                                dataset=dataset.name))
        return splits
    if experiment == "leave-one-out":
        scene_of = {image_key(dataset, r): r.scene if r.scene is not None else image_key(dataset, r)
                    for r in dataset.records}
        folds = []
        for fold in leave_one_reference_out(dataset):
            train_scenes = sorted({scene_of[k] for k in fold.train})
            order = np.random.default_rng([seed, len(folds)]).permutation(len(train_scenes))
            val_scenes = {train_scenes[j] for j in order[:max(1, round(0.1 * len(train_scenes)))]}
            if len(val_scenes) == len(train_scenes):
                val_scenes = set()
            val = [k for k in fold.train if scene_of[k] in val_scenes]
            train = [k for k in fold.train if scene_of[k] not in val_scenes]
            folds.append(Split(fold.name, train, val, fold.test, dataset=dataset.name))
        return folds
    if experiment == "cross-set":
        if test_dataset is None:
            raise ConfigError("experiment cross-set needs a test dataset (--set test_data=KIND:PATH)")
        return [cross_dataset(dataset, test_dataset, val_ratio=0.1, seed=seed)]
    raise ConfigError(f"unknown experiment {experiment!r}; known: {', '.join(EXPERIMENTS)}")


@dataclass
class ExperimentData:
    """The records of one experiment fold: ``train``, ``val``, ``test``, the index of the dataset each
    training/validation record comes from (``train_source``, ``val_source``: positions in
    ``datasets``), and a one-line description."""

    train: list[IQARecord]
    val: list[IQARecord]
    test: list[IQARecord]
    train_source: list[int]
    val_source: list[int]
    datasets: list[str]
    description: str


def experiment_records(data: str, experiment: str = "reference-split", fold: int = 0,
                       test_data: str | None = None, label: str | None = None,
                       seed: int = 0) -> ExperimentData:
    """Load ``data`` (one or more comma-separated ``KIND:PATH`` specs or generated folders) and cut fold
    ``fold`` of ``experiment``.

    ``reference-split`` uses a generated set's stored ``split`` column when it has one (the split CENIQA
    trains on), else ``reference_disjoint_splits(seed=seed)``. With several training sets each is split
    on its own and the parts are concatenated; ``cross-set`` tests on all of ``test_data``.
    """
    from synthiqa.datasets import apply_split, stored_split
    from synthiqa.datasets.spec import load_data_spec
    from synthiqa.datasets.splits import PARTS

    def load(spec: str) -> IQADataset:
        return load_data_spec(spec, label)[1]

    if experiment not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {experiment!r}; known: {', '.join(EXPERIMENTS)}")
    specs = [s for s in data.split(",") if s.strip()]
    if not specs:
        raise ConfigError("no training data given")
    test_ds = load(test_data) if experiment == "cross-set" and test_data else None
    out = ExperimentData([], [], [], [], [], [], "")
    names = []
    for index, spec in enumerate(specs):
        ds = load(spec.strip())
        if experiment == "reference-split" and any(r.extra.get("split") in PARTS for r in ds.records):
            split = stored_split(ds)
        else:
            splits = experiment_splits(experiment, ds, test_ds, seed=seed, n_splits=fold + 1)
            if fold >= len(splits):
                raise ConfigError(f"fold {fold} asked for, but {experiment} on {ds.name!r} has {len(splits)}")
            split = splits[fold]
        train, val, test = apply_split(ds, split, test_dataset=test_ds if split.test_dataset else None)
        out.train += train
        out.val += val
        out.train_source += [index] * len(train)
        out.val_source += [index] * len(val)
        out.datasets.append(ds.name)
        if experiment != "cross-set" or index == 0:
            out.test += test
        names.append(f"{ds.name} ({ds.score_info.name}, split {split.name})")
    if not out.train:
        raise DatasetError(f"{data}: the {experiment} split leaves no training images")
    out.description = (f"{experiment} fold {fold} of {', '.join(names)}: "
                       f"{len(out.train)}/{len(out.val)}/{len(out.test)} train/val/test")
    return out


# ---------------------------------------------------------------------------------------- method
#: SIND's defaults on top of the TRCNN config.
SIND_DEFAULTS: dict[str, Any] = {"scene_sampling": True, "alignment": "scene", "loss": "sind"}


def train_sind(options: dict[str, Any], data: str | None, out: str | Path | None) -> Path:
    """``synthiqa train --method sind``: TRCNN's trainer with ``SIND_DEFAULTS`` (see ``train_trcnn``)."""
    from synthiqa.models.trcnn import train_regressor

    return train_regressor(METHOD, options, data, out, defaults=SIND_DEFAULTS)


def load_sind(path: Path) -> Any:
    from synthiqa.models.trcnn import TRCNNPredictor

    return TRCNNPredictor.from_checkpoint(path, method=METHOD)


@register_model(METHOD)
def sind_predictor(preset: str = "default", **overrides: Any) -> Any:
    """A TRCNN predictor trained the SIND way (scene sampling and scene alignment by default)."""
    from synthiqa.models.trcnn import TRCNNPredictor

    return TRCNNPredictor(preset=preset, method=METHOD, **{**SIND_DEFAULTS, **overrides})


register_method(Method(
    name=METHOD, train=train_sind, load=load_sind,
    description="scene-invariant training (scene sampling, per-scene scale-shift alignment) of TRCNN",
))
