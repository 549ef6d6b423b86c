"""Experiment folds of SIND's four experiment types, cut from loaded dataset specs.

``random-split`` (images at random: scenes leak between parts, the optimistic protocol),
``reference-split`` (reference-disjoint), ``leave-one-out`` (cross-scene: one scene held out per fold) and
``cross-set`` (train on one dataset, test on another). ``experiment_records`` loads one or more
``KIND:PATH`` specs and returns one fold's records; the record-scoring methods (TRCNN, SIND, ARNIQA's
Ridge) train on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from synthiqa.datasets.records import IQADataset, IQARecord
from synthiqa.datasets.spec import load_data_spec
from synthiqa.datasets.splits import (
    PARTS,
    Split,
    apply_split,
    cross_dataset,
    image_key,
    image_keys,
    leave_one_reference_out,
    reference_disjoint_splits,
    stored_split,
)
from synthiqa.errors import ConfigError, DatasetError

EXPERIMENTS = ("reference-split", "random-split", "leave-one-out", "cross-set")


def experiment_splits(experiment: str, dataset: IQADataset, test_dataset: IQADataset | None = None,
                      seed: int = 27, n_splits: int = 1) -> list[Any]:
    """The train/val/test ``Split`` list of an experiment type on ``dataset``.

    ``reference-split``: ``n_splits`` reference-disjoint 70/10/20 splits. ``random-split``: the same
    ratios over images, ignoring scenes (scenes leak: the protocol SIND argues against, kept for
    comparison). ``leave-one-out``: one fold per scene, tested on that scene (10% of the other scenes
    become val). ``cross-set``: all of ``dataset`` (10% of its scenes as val) against all of
    ``test_dataset``.
    """
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
