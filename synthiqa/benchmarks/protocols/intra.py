"""The ``intra`` protocol: ``n_splits`` reference-disjoint random splits of each dataset (70/10/20% of the
references by default); the model is selected on val and reported on test."""

from __future__ import annotations

from collections.abc import Mapping

from synthiqa.benchmarks.protocols import (
    ProtocolSpec,
    Task,
    register_protocol,
    selected_datasets,
    tasks_from_splits,
)
from synthiqa.datasets import splits as S
from synthiqa.datasets.records import IQADataset


@register_protocol("intra")
def intra_tasks(spec: ProtocolSpec, datasets: Mapping[str, IQADataset], seed: int) -> list[Task]:
    """``n_splits`` reference-disjoint splits of each dataset."""
    return [task for ds in selected_datasets(spec, datasets)
            for task in tasks_from_splits(spec, ds, S.reference_disjoint_splits(
                ds, n_splits=spec.n_splits, ratios=spec.ratios, seed=seed))]
