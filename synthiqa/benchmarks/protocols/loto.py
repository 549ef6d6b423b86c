"""The ``loto`` protocol: leave one distortion type out (train on the other types, test on the held-out
one)."""

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


@register_protocol("loto")
def loto_tasks(spec: ProtocolSpec, datasets: Mapping[str, IQADataset], seed: int) -> list[Task]:
    """Leave one distortion type out, on each dataset with types."""
    return [task for ds in selected_datasets(spec, datasets) if any(r.dist_type for r in ds.records)
            for task in tasks_from_splits(spec, ds, S.leave_one_type_out(ds))]
