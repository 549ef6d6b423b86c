"""The ``loro`` protocol: leave one reference (scene) out."""

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


@register_protocol("loro")
def loro_tasks(spec: ProtocolSpec, datasets: Mapping[str, IQADataset], seed: int) -> list[Task]:
    """Leave one reference (scene) out, on each dataset."""
    return [task for ds in selected_datasets(spec, datasets)
            for task in tasks_from_splits(spec, ds, S.leave_one_reference_out(ds))]
