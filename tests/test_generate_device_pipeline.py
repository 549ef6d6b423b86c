"""The single-process device pipeline of ``synthiqa generate`` (``pipeline="device"``), forced on the CPU:
one process, decode and write threads, one engine batch per chunk (what runs on an accelerator). It must
make the records and labels of the normal CPU run (worker processes, equal-chain groups) and its images
within the uint8 fast path's tolerance of the float path (one 8-bit step)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from synthiqa.datasets.generate import GenerateConfig, generate
from synthiqa.datasets.generation import chunk
from synthiqa.datasets.generation.engines import local
from synthiqa.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

#: FR labels may differ in the last float32 bits: the CPU run scores one image at a time, the device
#: pipeline in sub-batches (``chunk.FR_SUB_BATCH_CUDA``); the digest test allows the same.
LABEL_TOLERANCE = 1e-3


def _refs(folder, n=2, h=40, w=48):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, np.sqrt(xx * yy) * 255 / np.sqrt(w * h)], -1)
    for i in range(n):
        arr = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"ref{i}.png")
    return folder


def _spy(monkeypatch, name):
    calls = []
    original = getattr(chunk.ChunkRunner, name)

    def spy(self, *args):
        calls.append(len(args[1]))
        return original(self, *args)

    monkeypatch.setattr(chunk.ChunkRunner, name, spy)
    return calls


def test_forced_device_pipeline_matches_the_cpu_run(tmp_path, monkeypatch):
    refs = _refs(tmp_path / "refs")
    common = dict(ref_dir=str(refs), profile="kadid", mode="chains", per_image=12, seed=3, batch_size=8,
                  workers=2, device="cpu", labels=("level", "fr"))
    generate(GenerateConfig(out=str(tmp_path / "cpu"), **common), progress=False)

    batched, grouped = _spy(monkeypatch, "_batch"), _spy(monkeypatch, "_each")
    monkeypatch.setattr(local, "_run_processes", lambda *a: pytest.fail("the device pipeline forked"))
    generate(GenerateConfig(out=str(tmp_path / "dev"), pipeline="device", **common), progress=False)
    assert batched == [8, 4, 8, 4] and grouped == []  # one engine batch per chunk, in this process

    a = pd.read_parquet(tmp_path / "cpu" / "manifest.parquet")
    b = pd.read_parquet(tmp_path / "dev" / "manifest.parquet")
    assert len(a) == 24 and a["n_distortions"].max() > 1 and (a["n_distortions"] == 1).any()
    fr = [c for c in a.columns if c.startswith("fr_")]
    assert fr
    pd.testing.assert_frame_equal(a.drop(columns=fr), b.drop(columns=fr))
    np.testing.assert_allclose(b[fr].to_numpy(), a[fr].to_numpy(), rtol=0, atol=LABEL_TOLERANCE)
    for image in a["image"]:
        x = np.asarray(Image.open(tmp_path / "cpu" / image), dtype=np.int16)
        y = np.asarray(Image.open(tmp_path / "dev" / image), dtype=np.int16)
        assert np.abs(x - y).max() <= 1, image


def test_unknown_pipeline_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="--pipeline 'gpu'"):
        GenerateConfig(out=str(tmp_path / "o"), pipeline="gpu").resolved()
