"""Evaluation protocols: how a dataset (or a pair of datasets) is cut into train / val / test tasks.

* ``intra``: ``n_splits`` reference-disjoint random splits of one dataset (default 10, 70/10/20% of the
  references); the model is selected on val and reported on test; the summary is the median over splits.
* ``cross``: train on one dataset (selecting on a scene-disjoint 10% of it), test on all images of others.
* ``loto``: leave one distortion type out: train on the other types, test on the held-out one.
* ``loro``: leave one reference (scene) out.

Splits come from ``synthiqa.datasets.splits`` and are keyed by image path, never by row index. Each
protocol is one module of this package with a function ``tasks(spec, datasets, seed) -> list[Task]``
registered in ``PROTOCOLS`` (``@register_protocol(name)``); ``make_tasks`` looks the spec's protocol up
there (the modules are imported on the first lookup).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from synthiqa.datasets import splits as S
from synthiqa.datasets.records import IQADataset, IQARecord
from synthiqa.errors import ConfigError
from synthiqa.registry import Registry


@dataclass
class ProtocolSpec:
    """One protocol of a suite.

    Attributes:
        name: a registered protocol (``intra``, ``cross``, ``loto``, ``loro``).
        n_splits: number of random splits (``intra``).
        ratios: train/val/test fractions of the references (``intra``).
        train: training dataset name (``cross``).
        test: test dataset names (``cross``; empty = every other dataset of the suite).
        datasets: datasets this protocol runs on (``intra``/``loto``/``loro``; empty = all).
        models: models this protocol runs (empty = all models of the suite).
        max_splits: run only the first ``max_splits`` splits (quick suites), or None for all.
        val_fraction: fraction of the training dataset's references held out for selection (``cross``).
    """

    name: str
    n_splits: int = 10
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    train: str | None = None
    test: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    max_splits: int | None = None
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        self.name = S.canonical_protocol(self.name)  # an older experiment name reads as its protocol
        PROTOCOLS.get(self.name)  # a one-line error for an unknown protocol
        self.ratios = tuple(float(r) for r in self.ratios)  # type: ignore[assignment]
        if len(self.ratios) != 3 or any(r < 0 for r in self.ratios) or abs(sum(self.ratios) - 1) > 1e-6:
            raise ConfigError(f"protocol {self.name}: ratios must be 3 non-negative fractions summing to 1")
        if self.n_splits < 1:
            raise ConfigError(f"protocol {self.name}: n_splits must be >= 1, got {self.n_splits}")
        if self.name == "cross" and not self.train:
            raise ConfigError("protocol cross: give 'train: DATASET_NAME'")
        self.test = list(self.test)
        self.datasets = list(self.datasets)
        self.models = list(self.models)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | str) -> ProtocolSpec:
        if isinstance(data, str):
            return cls(name=data)
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            names = ", ".join(sorted(unknown))
            raise ConfigError(f"protocol {data.get('name')!r}: unknown option(s) {names}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratios"] = list(self.ratios)
        return out

    @property
    def label(self) -> str:
        """Name used in results: the protocol name, with the training set for ``cross``."""
        return f"cross_from_{self.train}" if self.name == "cross" else self.name


@dataclass
class Task:
    """One train/val/test cut: what a model is fitted on, selected on and reported on."""

    protocol: str
    dataset: str
    split: str
    train_dataset: str
    train: list[IQARecord]
    val: list[IQARecord]
    test: list[IQARecord]

    @functools.cached_property
    def content_key(self) -> str:
        """Digest of the task's data as its numbers see it, not of where it lies: per part, each image's
        path relative to the part's folder, its reference's, raw and normalised score, type, group,
        level and scene. A moved or copied dataset keeps its key."""
        parts = []
        for records in (self.train, self.val, self.test):
            parts.append([_record_identity(r, _folder_of(records)) for r in records])
        text = json.dumps(parts, default=str)
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _folder_of(records: Sequence[IQARecord]) -> str:
    """The deepest folder holding every image and reference of ``records``."""
    folders = {os.path.dirname(os.path.abspath(str(p))) for r in records
               for p in (r.image, r.reference) if p is not None}
    return os.path.commonpath(sorted(folders)) if folders else ""


def _record_identity(r: IQARecord, folder: str) -> list[Any]:
    def rel(p: Any) -> str | None:
        return None if p is None else os.path.relpath(os.path.abspath(str(p)), folder).replace(os.sep, "/")

    return [rel(r.image), rel(r.reference), r.score, r.score_norm, r.dist_type, r.dist_group, r.level,
            r.scene]


def _cap(items: list, limit: int | None) -> list:
    return items if limit is None else items[:limit]


def tasks_from_splits(spec: ProtocolSpec, ds: IQADataset, splits: Sequence[Any]) -> list[Task]:
    """One ``Task`` per split of ``ds`` (the first ``spec.max_splits`` of them)."""
    tasks = []
    for split in _cap(list(splits), spec.max_splits):
        train, val, test = S.apply_split(ds, split)
        tasks.append(Task(spec.label, ds.name, str(split.name), ds.name, list(train), list(val), list(test)))
    return tasks


ProtocolTasks = Callable[[ProtocolSpec, Mapping[str, IQADataset], int], list[Task]]

#: Every protocol by name: ``tasks(spec, datasets, seed) -> list[Task]``.
PROTOCOLS: Registry[ProtocolTasks] = Registry("protocol", "synthiqa.benchmarks.protocols")


def register_protocol(name: str) -> Callable[[ProtocolTasks], ProtocolTasks]:
    """Decorator: register a protocol's task maker under ``name``."""
    return PROTOCOLS.register(name)


def make_tasks(spec: ProtocolSpec, datasets: Mapping[str, IQADataset], seed: int) -> list[Task]:
    """All tasks of one protocol over the loaded datasets (datasets not loaded are skipped)."""
    return PROTOCOLS.get(spec.name)(spec, datasets, seed)


def selected_datasets(spec: ProtocolSpec, datasets: Mapping[str, IQADataset]) -> list[IQADataset]:
    """The datasets a per-dataset protocol runs on: ``spec.datasets``, or all of them."""
    return [ds for name, ds in datasets.items() if not spec.datasets or name in spec.datasets]
