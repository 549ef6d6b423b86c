"""The ``cross`` protocol: train on one dataset (selecting on a scene-disjoint fraction of it), test on
all images of each other one."""

from __future__ import annotations

from collections.abc import Mapping

from synthiqa.benchmarks.protocols import ProtocolSpec, Task, register_protocol
from synthiqa.datasets import splits as S
from synthiqa.datasets.records import IQADataset


@register_protocol("cross")
def cross_tasks(spec: ProtocolSpec, datasets: Mapping[str, IQADataset], seed: int) -> list[Task]:
    """Train on ``spec.train`` (selecting on a scene-disjoint ``val_fraction``), test on each other set."""
    if spec.train not in datasets:
        return []
    source = datasets[spec.train]
    tasks = []
    for name in spec.test or [n for n in datasets if n != spec.train]:
        if name not in datasets:
            continue
        split = S.cross_dataset(source, datasets[name], val_ratio=spec.val_fraction, seed=seed)
        train, val, test = S.apply_split(source, split, test_dataset=datasets[name])
        tasks.append(Task(spec.label, name, split.name, spec.train, train, val, test))
    return tasks
