"""Experiment folds of SIND's four experiment types, cut from loaded dataset specs with the splits of
``synthiqa.datasets.splits`` and named in its protocol vocabulary.

``random`` (images at random: scenes leak between parts, the optimistic protocol), ``intra``
(reference-disjoint), ``loro`` (cross-scene: one scene held out per fold) and ``cross`` (train on one
dataset, test on another); SIND's names ``random-split``, ``reference-split``, ``leave-one-out`` and
``cross-set`` are accepted as aliases (``canonical_protocol``). ``experiment_records`` loads one or more
``KIND:PATH`` specs and returns one fold's records; the record-scoring methods (TRCNN, SIND, ARNIQA's
Ridge) train on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synthiqa.datasets.records import IQADataset, IQARecord
from synthiqa.datasets.spec import load_data_spec
from synthiqa.datasets.splits import (
    PARTS,
    PROTOCOL_ALIASES,
    Split,
    apply_split,
    canonical_protocol,
    cross_dataset,
    held_out_parts,
    image_key,
    image_keys,
    leave_one_reference_out,
    reference_disjoint_splits,
    split_order,
    stored_split,
)
from synthiqa.errors import ConfigError, DatasetError

#: The experiment types (protocol names; ``PROTOCOL_ALIASES`` maps the older names onto them).
EXPERIMENTS = ("intra", "random", "loro", "cross")


def experiment_splits(experiment: str, dataset: IQADataset, test_dataset: IQADataset | None = None,
                      seed: int = 27, n_splits: int = 1) -> list[Any]:
    """The train/val/test ``Split`` list of an experiment type (or its older alias) on ``dataset``.

    ``intra``: ``n_splits`` reference-disjoint 70/10/20 splits. ``random``: the same ratios over images
    (``held_out_parts``), ignoring scenes (scenes leak: the protocol SIND argues against, kept for
    comparison). ``loro``: one fold per scene, tested on that scene (10% of the other scenes become val).
    ``cross``: all of ``dataset`` (10% of its scenes as val) against all of ``test_dataset``.
    """
    experiment = _experiment(experiment)
    if experiment == "intra":
        return reference_disjoint_splits(dataset, n_splits=n_splits, seed=seed)
    if experiment == "random":
        keys = sorted(set(image_keys(dataset)))
        if len(keys) < 3:
            raise DatasetError(f"random split needs at least 3 images, {dataset.name!r} has {len(keys)}")
        splits = []
        for i in range(n_splits):
            parts = {p: sorted(keys[j] for j in v) for p, v in held_out_parts(len(keys), seed, i, 1).items()}
            splits.append(Split(f"random_{i:02d}", parts["train"], parts["val"], parts["test"],
                                dataset=dataset.name))
        return splits
    if experiment == "loro":
        scene_of = {image_key(dataset, r): r.scene if r.scene is not None else image_key(dataset, r)
                    for r in dataset.records}
        folds = []
        for fold in leave_one_reference_out(dataset):
            train_scenes = sorted({scene_of[k] for k in fold.train})
            order = split_order(len(train_scenes), seed, len(folds))
            val_scenes = {train_scenes[j] for j in order[:max(1, round(0.1 * len(train_scenes)))]}
            if len(val_scenes) == len(train_scenes):
                val_scenes = set()
            val = [k for k in fold.train if scene_of[k] in val_scenes]
            train = [k for k in fold.train if scene_of[k] not in val_scenes]
            folds.append(Split(fold.name, train, val, fold.test, dataset=dataset.name))
        return folds
    if test_dataset is None:
        raise ConfigError("experiment cross needs a test dataset (--set test_data=KIND:PATH)")
    return [cross_dataset(dataset, test_dataset, val_ratio=0.1, seed=seed)]


def _experiment(name: str) -> str:
    """The experiment type of ``name`` (a protocol name or an older alias); a one-line error otherwise."""
    experiment = canonical_protocol(name)
    if experiment not in EXPERIMENTS:
        aliases = ", ".join(f"{old} = {new}" for old, new in PROTOCOL_ALIASES.items())
        raise ConfigError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)} ({aliases})")
    return experiment


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


def experiment_records(data: str, experiment: str = "intra", fold: int = 0,
                       test_data: str | None = None, label: str | None = None,
                       seed: int = 0) -> ExperimentData:
    """Load ``data`` (one or more comma-separated ``KIND:PATH`` specs or generated folders) and cut fold
    ``fold`` of ``experiment``.

    ``intra`` uses a generated set's stored ``split`` column when it has one (the split CENIQA
    trains on), else ``reference_disjoint_splits(seed=seed)``. With several training sets each is split
    on its own and the parts are concatenated; ``cross`` tests on all of ``test_data``.
    """
    def load(spec: str) -> IQADataset:
        return load_data_spec(spec, label)[1]

    experiment = _experiment(experiment)
    specs = [s for s in data.split(",") if s.strip()]
    if not specs:
        raise ConfigError("no training data given")
    test_ds = load(test_data) if experiment == "cross" and test_data else None
    out = ExperimentData([], [], [], [], [], [], "")
    names = []
    for index, spec in enumerate(specs):
        ds = load(spec.strip())
        if experiment == "intra" and any(r.extra.get("split") in PARTS for r in ds.records):
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
        if experiment != "cross" or index == 0:
            out.test += test
        names.append(f"{ds.name} ({ds.score_info.name}, split {split.name})")
    if not out.train:
        raise DatasetError(f"{data}: the {experiment} split leaves no training images")
    out.description = (f"{experiment} fold {fold} of {', '.join(names)}: "
                       f"{len(out.train)}/{len(out.val)}/{len(out.test)} train/val/test")
    return out
