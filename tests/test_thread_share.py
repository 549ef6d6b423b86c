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


def _fake_proc(root, queue: int, states: list[str]):
    (root / "self" / "task").mkdir(parents=True)
    (root / "loadavg").write_text(f"1.50 1.20 0.90 {queue}/312 4242\n")
    for i, state in enumerate(states):
        (root / "self" / "task" / str(i)).mkdir()
        (root / "self" / "task" / str(i) / "stat").write_text(f"{i} (py thon) {state} 1 1 1 0 -1\n")
    return root


@pytest.mark.parametrize(("queue", "states", "expected"),
                         [(7, ["R", "S", "S"], 6), (3, ["R", "R", "S"], 1), (1, ["R"], 0), (2, ["S"], 1)])
def test_busy_elsewhere_is_the_run_queue_less_this_process(tmp_path, queue, states, expected):
    proc = _fake_proc(tmp_path, queue, states)
    assert devices.busy_elsewhere(proc) == expected


def test_busy_elsewhere_without_proc_is_zero(tmp_path):
    assert devices.busy_elsewhere(tmp_path / "missing") == 0


@pytest.mark.parametrize(("cores", "busy", "expected"), [(2, 0, 2), (2, 1, 1), (2, 9, 1), (16, 4, 12)])
def test_threads_for_load_leave_the_busy_cores(monkeypatch, cores, busy, expected):
    monkeypatch.setattr(devices, "available_cores", lambda: cores)
    monkeypatch.setattr(devices, "busy_elsewhere", lambda: busy)
    assert devices.threads_for_load() == expected


def test_predict_shares_the_cores_before_the_first_batch_and_after_each(monkeypatch, tmp_path):
    import numpy as np
    import torch
    from PIL import Image

    from synthiqa.cli import main

    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (128, 160, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    calls = []

    def two_threads() -> int:
        calls.append(1)
        return 2

    monkeypatch.setattr(devices, "threads_for_load", two_threads)
    with pytest.raises(SystemExit) as done:
        main(["predict", str(tmp_path), "--model", "niqe", "--batch-size", "1", "--device", "cpu",
              "--out", str(tmp_path / "p.csv")])
    assert done.value.code in (0, None)
    assert len(calls) == 4 and torch.get_num_threads() == 2  # the conftest fixture had set 1
