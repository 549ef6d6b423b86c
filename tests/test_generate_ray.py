"""synthiqa generate --engine ray and --format webdataset: equality with the local engine in both formats,
resume after a killed driver, WebDataset round trips, the missing extra and a bad address.

One local Ray instance (2 CPUs, no dashboard) serves the whole module; its jobs use built-in profiles
(Ray's worker processes import synthiqa afresh, so a profile registered only in this process is unknown
there).
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from synthiqa.datasets import load_dataset
from synthiqa.datasets.generate import GenerateConfig, generate, merge

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_address():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refs")
    rng = np.random.default_rng(1)
    for i in range(4):
        base = np.linspace(0, 255, 48 * 40 * 3).reshape(40, 48, 3)
        arr = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"photo {i}.png")  # a name that gets slugged
    return folder


def _cfg(out, refs, **kw):
    base = dict(out=str(out), ref_dir=str(refs), profile="basic8", mode="basic", per_image=3, seed=5,
                batch_size=2, workers=2, device="cpu", labels=("level", "fr"))
    return GenerateConfig(**{**base, **kw})


def _files(root):
    """sha256 of every output file but the run record (which names the engine's options) and images our
    loader extracted."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "config.json" and "extracted" not in p.parts}


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory, refs):
    root = tmp_path_factory.mktemp("local")
    for container in ("files", "webdataset"):
        generate(_cfg(root / container, refs, container=container, workers=1,
                      **({"shard_size": 8} if container == "webdataset" else {})))
    return root


@pytest.mark.parametrize("container", ["files", "webdataset"])
def test_ray_engine_writes_the_bytes_of_the_local_engine(tmp_path, refs, local_runs, ray_address, container):
    extra = {"shard_size": 8} if container == "webdataset" else {}
    summary = generate(_cfg(tmp_path / "ray", refs, container=container, engine="ray", **extra))
    assert summary.images_written == 16
    local = local_runs / container
    assert _files(tmp_path / "ray") == _files(local)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ray" / "manifest.parquet"),
                                  pd.read_parquet(local / "manifest.parquet"))


def test_webdataset_shards_read_with_webdataset_and_our_loader(local_runs):
    import webdataset as wds

    root = local_runs / "webdataset"
    shards = sorted(p.name for p in root.glob("images-*.tar"))
    assert shards == ["images-000000.tar", "images-000001.tar"]  # 8 images = 2 references per shard
    manifest = pd.read_parquet(root / "manifest.parquet")
    assert manifest["source_file"].str.startswith("photo ").all()
    samples = list(wds.WebDataset([str(root / s) for s in shards], shardshuffle=False).decode("rgb8"))
    assert len(samples) == len(manifest) == 16
    by_image = manifest.set_index("image")
    for sample in samples:
        meta = sample["json"]
        name = f"{os.path.basename(sample['__url__'])}/{sample['__key__']}.png"
        row = by_image.loc[name]
        assert meta["scene"] == row["scene"] and meta["seed"] == row["seed"]
        assert meta["params"] == json.loads(row["params_json"])
        assert meta["fr_pseudo_mos"] == pytest.approx(row["fr_pseudo_mos"], abs=0)
        assert sample["png"].shape == (40, 48, 3)
    ds = load_dataset("synthiqa", root)
    assert len(ds) == 16 and all(r.image.is_file() for r in ds.records)
    first = manifest.iloc[1]
    record = next(r for r in ds.records
                  if r.extra["image_id"] == first["image_id"] and r.scene == first["scene"])
    pixels = np.asarray(Image.open(record.image))
    sample = next(s for s in samples if s["__key__"] == first["image"].split("/")[1][:-4])
    assert (pixels == sample["png"]).all()
    info = json.loads((root / "dataset.json").read_text())
    assert info["files"]["shards"] == shards and info["skipped"] == []


def test_webdataset_shards_merge_to_one_run_and_skips_are_listed(tmp_path, refs, local_runs):
    for i in (1, 2):
        generate(_cfg(tmp_path / f"part{i}", refs, container="webdataset", shard_size=8, shard=(i, 2)))
    merge([tmp_path / "part1", tmp_path / "part2"], tmp_path / "merged")
    assert _files(tmp_path / "merged") == _files(local_runs / "webdataset")
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    Image.open(refs / "photo 0.png").save(folder / "a.png")
    info_dir = generate(_cfg(tmp_path / "skips", folder, labels=("level",))).out
    info = json.loads((info_dir / "dataset.json").read_text())
    assert [s["file"] for s in info["skipped"]] == ["notes.txt"] and "suffix" in info["skipped"][0]["reason"]


def test_resume_after_the_driver_is_killed_gives_the_same_bytes(tmp_path, refs, local_runs, ray_address):
    out = tmp_path / "killed"
    script = (
        "import sys; from synthiqa.datasets.generate import GenerateConfig, generate; "
        f"generate(GenerateConfig(out={str(out)!r}, ref_dir={str(refs)!r}, profile='basic8', mode='basic', "
        "per_image=3, seed=5, batch_size=2, workers=2, device='cpu', labels=('level', 'fr'), "
        f"engine='ray', ray_address={ray_address!r}))"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    parts = out / ".synthiqa" / "parts"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.is_dir() and any(parts.glob("*.json")):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.parquet").exists(), "the run finished before it could be killed"
    summary = generate(_cfg(out, refs, engine="ray", batch_size=7, resume=True))  # stored batch size wins
    assert 0 < summary.images_written < 16
    assert _files(out) == _files(local_runs / "files")


def test_missing_ray_and_a_bad_address_are_one_line_errors(tmp_path, refs, capsys, monkeypatch):
    from synthiqa.cli import main

    cases = [
        (["--engine", "ray", "--ray-address", "127.0.0.1:9"], "--ray-address 127.0.0.1:9"),
        (["--engine", "ray", "--ray-address", "nohost"], "HOST:PORT"),
        (["--ray-address", "auto"], "--engine ray"),
    ]
    for args, text in cases:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main(["generate", str(refs), "--out", str(tmp_path / "o"), *args])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and text in err and "\n" not in err and "Traceback" not in err, (args, err)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as without the extra
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(refs), "--out", str(tmp_path / "o"), "--engine", "ray"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "pip install 'synthiqa[ray]'" in err and "\n" not in err
    assert not (tmp_path / "o").exists()
