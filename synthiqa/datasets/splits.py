"""Every split of the package: train/val/test splits stored as image keys, the index splits of the
methods (on-the-fly references, the Ridge's folds), the generation split column, and the protocol names.

Keys are paths relative to the dataset root, never row indices: a key survives re-ordering, re-loading and
merging of label files, so a split saved once names the same images forever. Every protocol here keeps
content apart where the field does: ``reference_disjoint_splits`` puts all images of a scene (reference)
in exactly one part, as ARNIQA's and pyiqa's splits do; ``leave_one_reference_out`` and ``cross_dataset``
build on the same rule (SIND's scene-based experiments); ``leave_one_type_out`` holds out one distortion
type (or group) at a time.

One seeding scheme: every random split draws ``split_order(n, seed, *stream)``, a permutation from
``numpy.random.default_rng([seed, *stream])``. The one exception is ``generation_splits``, the ``split``
column ``synthiqa generate`` has always written (Python's ``random`` under ``derive_seed(seed, "split")``),
kept as it is so generated sets and their stored digests do not move.

One protocol vocabulary: ``intra`` (reference-disjoint splits), ``random`` (images at random, scenes
leak), ``loro`` (leave one reference out), ``loto`` (leave one type out), ``cross`` (train on one set,
test on another). The older experiment names are aliases (``PROTOCOL_ALIASES``), so saved configs load.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthiqa.atomic import atomic_write_text
from synthiqa.datasets.loaders import listing, relative_key
from synthiqa.datasets.records import IQADataset, IQARecord
from synthiqa.distortions.rng import derive_seed
from synthiqa.errors import DatasetError

SPLIT_FORMAT = "synthiqa-splits"
SPLIT_FORMAT_VERSION = 1
PARTS = ("train", "val", "test")
#: The protocol names, and the experiment names of earlier versions that map onto them.
PROTOCOLS = ("intra", "random", "loro", "loto", "cross")
PROTOCOL_ALIASES = {"reference-split": "intra", "random-split": "random", "leave-one-out": "loro",
                    "cross-set": "cross"}
#: Fractions of the references (or images) in train, val and test where a protocol draws its own parts.
RATIOS = (0.7, 0.1, 0.2)


def canonical_protocol(name: str) -> str:
    """The protocol name of ``name``: itself, or what an older experiment name maps to."""
    return PROTOCOL_ALIASES.get(name, name)


def split_order(n: int, seed: int, *stream: int) -> list[int]:
    """A permutation of ``range(n)`` from ``numpy.random.default_rng([seed, *stream])``: the seeding of
    every random split (``stream`` tells one seed's draws apart: the split index, the fold, ...)."""
    return np.random.default_rng([seed, *stream]).permutation(n).tolist()


def held_out_parts(n: int, seed: int, *stream: int, val_share: float = RATIOS[1],
                   test_share: float = RATIOS[2]) -> dict[str, list[int]]:
    """Indices of ``range(n)`` in ``test``, ``val`` and ``train`` (in that order, each in drawn order):
    ``split_order(n, seed, *stream)`` cut test first (``max(1, round(test_share * n))``), then val
    (``max(1, round(val_share * n))``), the rest train."""
    order = split_order(n, seed, *stream)
    n_test, n_val = max(1, round(test_share * n)), max(1, round(val_share * n))
    return {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}


def scene_disjoint_folds(scenes: Sequence[str], n_splits: int = 10, val_ratio: float = 0.2,
                         seed: int = 27) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` (train, val) index arrays over ``scenes`` (one scene name per item): fold ``i`` puts
    the scenes first in ``split_order(n_scenes, seed, i)`` in val (``val_ratio`` of them, at least one,
    never all), so no scene is in both."""
    names = sorted(set(scenes))
    if len(names) < 2:
        raise DatasetError(f"reference-disjoint folds need at least 2 scenes, got {len(names)}")
    n_val = min(len(names) - 1, max(1, round(val_ratio * len(names))))
    scene_arr = np.asarray(scenes)
    folds = []
    for i in range(n_splits):
        val_scenes = {names[j] for j in split_order(len(names), seed, i)[:n_val]}
        is_val = np.fromiter((s in val_scenes for s in scene_arr), bool, len(scene_arr))
        folds.append((np.flatnonzero(~is_val), np.flatnonzero(is_val)))
    return folds


def generation_splits(scenes: Sequence[str], seed: int, ratios: Sequence[float] = RATIOS) -> dict[str, str]:
    """Scene -> ``train``/``val``/``test`` of a generated set's ``split`` column (reference-disjoint): the
    sorted scenes shuffled by ``random.Random(derive_seed(seed, "split"))``, cut train first by rounded
    ``ratios`` (the draw generated sets have always stored; see the module note)."""
    order = sorted(set(scenes))
    random.Random(derive_seed(seed, "split")).shuffle(order)
    n = len(order)
    n_train = round(ratios[0] * n)
    n_val = min(n - n_train, round(ratios[1] * n))
    return {scene: PARTS[0 if i < n_train else 1 if i < n_train + n_val else 2]
            for i, scene in enumerate(order)}


@dataclass
class Split:
    """One train/val/test partition.

    Attributes:
        name: e.g. ``split_03``, ``leave_out_type=jpeg``, ``kadid10k->live``.
        train, val, test: image keys (paths relative to the dataset root, ``/``-separated), sorted.
        dataset: name of the dataset the keys belong to.
        test_dataset: for cross-dataset splits, the dataset the ``test`` keys belong to (else None).
    """

    name: str
    train: list[str]
    val: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    dataset: str | None = None
    test_dataset: str | None = None

    def part(self, part: str) -> list[str]:
        """The keys of ``train``, ``val`` or ``test``."""
        return {"train": self.train, "val": self.val, "test": self.test}[part]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "train": self.train, "val": self.val, "test": self.test}
        if self.test_dataset is not None:
            out["test_dataset"] = self.test_dataset
        return out


def image_key(dataset: IQADataset, record: IQARecord) -> str:
    """The key of ``record``'s image: its path relative to ``dataset.root``."""
    try:
        return relative_key(dataset.root, record.image)
    except ValueError:
        raise DatasetError(
            f"dataset {dataset.name!r}: image {record.image} is outside its root {dataset.root}"
        ) from None


def image_keys(dataset: IQADataset) -> list[str]:
    """Keys of all records, in record order."""
    return [image_key(dataset, r) for r in dataset.records]


def scene_keys(dataset: IQADataset) -> dict[str, list[str]]:
    """Scene -> sorted image keys; a record without a scene is its own scene (its key)."""
    scenes: dict[str, set[str]] = {}
    for record in dataset.records:
        key = image_key(dataset, record)
        scenes.setdefault(record.scene if record.scene is not None else key, set()).add(key)
    return {scene: sorted(keys) for scene, keys in sorted(scenes.items())}


def _part_sizes(n: int, ratios: Sequence[float]) -> list[int]:
    """Scene counts per part: rounded cumulative ratios, and at least one scene for a non-zero ratio."""
    bounds = [0] + [int(round(c * n)) for c in np.cumsum(ratios)]
    bounds[-1] = n
    sizes = [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    for i, ratio in enumerate(ratios):
        if ratio > 0 and sizes[i] == 0:
            donor = int(np.argmax(sizes))
            sizes[donor] -= 1
            sizes[i] += 1
    return sizes


def _check_ratios(ratios: Sequence[float], n_scenes: int, dataset: str) -> list[float]:
    values = [float(r) for r in ratios]
    if len(values) != 3 or min(values) < 0 or abs(sum(values) - 1.0) > 1e-6 or values[0] == 0:
        raise DatasetError(
            f"ratios must be (train, val, test) >= 0 summing to 1 with train > 0, got {tuple(ratios)}"
        )
    needed = sum(v > 0 for v in values)
    if n_scenes < needed:
        raise DatasetError(f"dataset {dataset!r} has {n_scenes} scenes, too few for {needed} non-empty parts")
    return values


def _assign(scenes: dict[str, list[str]], order: Sequence[str], sizes: Sequence[int]) -> list[list[str]]:
    parts, start = [], 0
    for size in sizes:
        parts.append(sorted(k for scene in order[start:start + size] for k in scenes[scene]))
        start += size
    return parts


def reference_disjoint_splits(dataset: IQADataset, n_splits: int = 10,
                              ratios: Sequence[float] = RATIOS, seed: int = 27) -> list[Split]:
    """``n_splits`` random splits of the scenes (references) into train/val/test by ``ratios``.

    Every image of a scene lands in exactly one part. Split ``i`` permutes the sorted scene names with
    ``split_order(n_scenes, seed, i)``, so the result depends only on the set of (scene, key) pairs,
    not on record order. Part sizes count scenes: KADID-10k's 81 references give 57/8/16 as ARNIQA's do.
    The default seed is ARNIQA's (27).
    """
    if n_splits < 1:
        raise DatasetError(f"n_splits must be at least 1, got {n_splits}")
    scenes = scene_keys(dataset)
    values = _check_ratios(ratios, len(scenes), dataset.name)
    names = list(scenes)
    sizes = _part_sizes(len(names), values)
    splits = []
    for i in range(n_splits):
        order = [names[j] for j in split_order(len(names), seed, i)]
        train, val, test = _assign(scenes, order, sizes)
        splits.append(Split(f"split_{i:02d}", train, val, test, dataset=dataset.name))
    return splits


def leave_one_type_out(dataset: IQADataset, by: str = "dist_type") -> list[Split]:
    """One split per distortion type (``by="dist_type"``) or group (``by="dist_group"``): test on it,
    train on every other one; no val part. Every record must know its type (or group)."""
    if by not in ("dist_type", "dist_group"):
        raise DatasetError(f"leave_one_type_out: by must be 'dist_type' or 'dist_group', got {by!r}")
    groups: dict[str, list[str]] = {}
    unknown = []
    for record in dataset.records:
        key = image_key(dataset, record)
        value = getattr(record, by)
        if value is None:
            unknown.append(key)
        else:
            groups.setdefault(value, []).append(key)
    if unknown:
        raise DatasetError(
            f"leave_one_type_out: {len(unknown)} images of dataset {dataset.name!r} have no {by}, "
            f"first: {listing(unknown)}"
        )
    if len(groups) < 2:
        raise DatasetError(f"leave_one_type_out: dataset {dataset.name!r} has fewer than two values of {by}")
    splits = []
    for held in sorted(groups):
        train = sorted(k for value, keys in groups.items() if value != held for k in keys)
        splits.append(Split(f"leave_out_{by.removeprefix('dist_')}={held}", train, [], sorted(groups[held]),
                            dataset=dataset.name))
    return splits


def leave_one_reference_out(dataset: IQADataset) -> list[Split]:
    """One split per scene: test on all images of that scene, train on all the others; no val part."""
    scenes = scene_keys(dataset)
    if len(scenes) < 2:
        raise DatasetError(f"leave_one_reference_out: dataset {dataset.name!r} has fewer than two scenes")
    return [
        Split(f"leave_out_scene={held}", sorted(k for s, keys in scenes.items() if s != held for k in keys),
              [], list(scenes[held]), dataset=dataset.name)
        for held in scenes
    ]


def cross_dataset(train_ds: IQADataset, test_ds: IQADataset, val_ratio: float = 0.1, seed: int = 27) -> Split:
    """Train on ``train_ds``, test on all of ``test_ds``; ``val_ratio`` of train's scenes become val.

    ``apply_split`` then needs both datasets: ``apply_split(train_ds, split, test_dataset=test_ds)``.
    """
    if not 0 <= val_ratio < 1:
        raise DatasetError(f"cross_dataset: val_ratio must be in [0, 1), got {val_ratio}")
    scenes = scene_keys(train_ds)
    ratios = (1.0 - val_ratio, val_ratio, 0.0)
    values = _check_ratios(ratios, len(scenes), train_ds.name)
    names = list(scenes)
    order = [names[j] for j in split_order(len(names), seed, 0)]
    train, val, _ = _assign(scenes, order, _part_sizes(len(names), values))
    return Split(f"{train_ds.name}->{test_ds.name}", train, val, sorted(set(image_keys(test_ds))),
                 dataset=train_ds.name, test_dataset=test_ds.name)


def stored_split(dataset: IQADataset, column: str = "split", name: str = "stored") -> Split:
    """The split a dataset carries in ``extra[column]`` (``train``/``val``/``test``; other values unused),
    e.g. the ``split`` column of a generated set's manifest."""
    parts: dict[str, list[str]] = {p: [] for p in PARTS}
    found = False
    for record in dataset.records:
        value = record.extra.get(column)
        if value in parts:
            parts[value].append(image_key(dataset, record))
            found = True
    if not found:
        raise DatasetError(f"dataset {dataset.name!r} has no {column!r} values train/val/test")
    train, val, test = (sorted(parts[p]) for p in PARTS)
    return Split(name, train, val, test, dataset=dataset.name)


def check_split(dataset: IQADataset, split: Split, test_dataset: IQADataset | None = None) -> None:
    """A one-line error unless every key of ``split`` is an image of its dataset and no image is in two
    parts. Cross-dataset splits need ``test_dataset``, which their ``test`` keys are checked against."""
    sources = _part_sources(dataset, split, test_dataset)
    known = {id(ds): set(image_keys(ds)) for ds in sources.values()}
    for part in PARTS:
        missing = [k for k in split.part(part) if k not in known[id(sources[part])]]
        if missing:
            raise DatasetError(
                f"split {split.name!r} does not match dataset {sources[part].name!r}: {len(missing)} of "
                f"{len(split.part(part))} {part} images are not in it, first: {listing(missing)}"
            )
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        if sources[a] is not sources[b]:
            continue
        both = sorted(set(split.part(a)) & set(split.part(b)))
        if both:
            raise DatasetError(
                f"split {split.name!r}: {len(both)} images in both {a} and {b}, first: {listing(both)}"
            )


def apply_split(dataset: IQADataset, split: Split, test_dataset: IQADataset | None = None
                ) -> tuple[list[IQARecord], list[IQARecord], list[IQARecord]]:
    """(train, val, test) records of ``split``, in key order, after ``check_split``."""
    check_split(dataset, split, test_dataset)
    sources = _part_sources(dataset, split, test_dataset)
    lookup = {id(ds): _records_by_key(ds) for ds in sources.values()}
    train, val, test = (
        [r for k in split.part(part) for r in lookup[id(sources[part])][k]] for part in PARTS
    )
    return train, val, test


def _part_sources(dataset: IQADataset, split: Split,
                  test_dataset: IQADataset | None) -> dict[str, IQADataset]:
    """The dataset each part's keys belong to."""
    if split.test_dataset is None:
        return dict.fromkeys(PARTS, dataset)
    if test_dataset is None:
        raise DatasetError(
            f"split {split.name!r} tests on dataset {split.test_dataset!r}: pass it as test_dataset"
        )
    return {"train": dataset, "val": dataset, "test": test_dataset}


def _records_by_key(dataset: IQADataset) -> dict[str, list[IQARecord]]:
    out: dict[str, list[IQARecord]] = {}
    for record in dataset.records:
        out.setdefault(image_key(dataset, record), []).append(record)
    return out


def save_splits(path: str | os.PathLike, splits: Sequence[Split], dataset_name: str) -> None:
    """Write ``splits`` as JSON (atomically): image keys per part, with the dataset's name."""
    payload = {
        "format": SPLIT_FORMAT, "version": SPLIT_FORMAT_VERSION, "dataset": dataset_name,
        "keys": "image paths relative to the dataset root",
        "splits": [s.to_dict() for s in splits],
    }
    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")


def load_splits(path: str | os.PathLike, dataset: IQADataset | None = None,
                test_dataset: IQADataset | None = None) -> list[Split]:
    """Splits written by ``save_splits``; with ``dataset`` given, each is checked with ``check_split``."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"split file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"split file {path}: cannot read: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != SPLIT_FORMAT:
        raise DatasetError(f"split file {path}: not a {SPLIT_FORMAT} file (no format: {SPLIT_FORMAT!r})")
    splits = []
    for i, item in enumerate(payload.get("splits") or []):
        parts = {p: item.get(p, []) if isinstance(item, dict) else None for p in PARTS}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not all(
                isinstance(v, list) and all(isinstance(k, str) for k in v) for v in parts.values()):
            raise DatasetError(
                f"split file {path}: entry {i + 1} needs a name and train/val/test lists of keys"
            )
        splits.append(Split(item["name"], parts["train"], parts["val"], parts["test"],
                            dataset=payload.get("dataset"), test_dataset=item.get("test_dataset")))
    if not splits:
        raise DatasetError(f"split file {path}: no splits")
    if dataset is not None:
        for split in splits:
            check_split(dataset, split, test_dataset)
    return splits
