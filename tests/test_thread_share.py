"""Worker thread shares: together the workers use no more threads than the cores the process may run on."""

import os

import pytest

from synthiqa import devices


@pytest.mark.parametrize(("cores", "workers", "expected"),
                         [(16, 4, 4), (2, 4, 1), (8, 3, 2), (1, 1, 1), (4, 0, 4)])
def test_threads_per_worker_share_the_available_cores(monkeypatch, cores, workers, expected):
    monkeypatch.setattr(devices, "available_cores", lambda: cores)
    assert devices.threads_per_worker(workers) == expected


def test_available_cores_follow_the_affinity_mask(monkeypatch):
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity mask on this OS")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3})
    assert devices.available_cores() == 2
