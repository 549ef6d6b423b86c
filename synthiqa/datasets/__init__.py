"""Datasets: generate labelled distorted sets from references; load LIVE, KADID-10k, CSV, generated sets."""

from synthiqa.datasets.degraded import DegradedReferences, DegradedReferencesMap
from synthiqa.datasets.loaders import (
    DatasetKind,
    get_dataset_kind,
    list_dataset_kinds,
    load_dataset,
    register_dataset,
)
from synthiqa.datasets.records import IQADataset, IQARecord, ScoreInfo
from synthiqa.datasets.splits import (
    Split,
    apply_split,
    check_split,
    cross_dataset,
    image_key,
    image_keys,
    leave_one_reference_out,
    leave_one_type_out,
    load_splits,
    reference_disjoint_splits,
    save_splits,
    scene_keys,
    stored_split,
)

__all__ = [
    "DatasetKind", "DegradedReferences", "DegradedReferencesMap", "IQADataset", "IQARecord", "ScoreInfo",
    "Split", "apply_split", "check_split",
    "cross_dataset", "get_dataset_kind", "image_key", "image_keys", "leave_one_reference_out",
    "leave_one_type_out", "list_dataset_kinds", "load_dataset", "load_splits", "reference_disjoint_splits",
    "register_dataset", "save_splits", "scene_keys", "stored_split",
]
