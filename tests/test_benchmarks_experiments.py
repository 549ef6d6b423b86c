"""`synthiqa bench run` on a folder written by `synthiqa experiments`: a few at a time, resuming."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from synthiqa.benchmarks.suite import experiments_suite, load_suite
from synthiqa.cli import main
from synthiqa.errors import ConfigError
from synthiqa.models.ceniqa.config import CENIQAConfig
from synthiqa.models.ceniqa.experiments import read_experiments, write_experiments

TINY = {"image_size": 32, "feature_dim": 8, "n_clusters": 2, "patch_dim": 4, "batch_size": 8, "test_crops": 1,
        "pretrain_epochs": 1, "epochs": 1, "images_per_scene": 4, "train_samples": 16, "val_samples": 8,
        "device": "cpu"}
EXPERIMENTS = {"base": {}, "k3": {"n_clusters": 3}, "no-frequency": {"use_frequency": False}}


def make_generated_set(root, refs=4, levels=(1, 2, 3)):
    """A generated-set folder: noisy copies of flat-ish textures, quality falling with the level."""
    rows = []
    for r in range(refs):
        rng = np.random.default_rng(r)
        ref = np.clip(rng.normal(128, 40, (6, 6, 3)).repeat(8, 0).repeat(8, 1), 0, 255)
        (root / "references").mkdir(parents=True, exist_ok=True)
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(ref.astype(np.uint8)).save(root / "references" / f"r{r}.png")
        for lv in levels:
            img = np.clip(ref + rng.normal(0, 12 * lv, ref.shape), 0, 255).astype(np.uint8)
            rel = f"images/r{r}_{lv}.png"
            Image.fromarray(img).save(root / rel)
            rows.append({"image": rel, "reference": f"references/r{r}.png", "scene": f"r{r}",
                         "dist_type": "white_noise", "dist_group": "noise", "level": float(lv),
                         "level_quality": 100.0 - 25 * lv})
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet", index=False)
    info = {"name": "tiny", "labels": {"level_quality": {"low": 0, "high": 100, "lower_better": False}},
            "primary_label": "level_quality"}
    (root / "dataset.json").write_text(json.dumps(info))


def make_index(root):
    """A three-experiment folder in the format `synthiqa experiments` writes."""
    entries = []
    for name, overrides in EXPERIMENTS.items():
        (root / "tiny").mkdir(parents=True, exist_ok=True)
        CENIQAConfig(**{**TINY, **overrides}).save(root / "tiny" / f"{name}.yaml")
        entries.append({"name": name, "group": "tiny", "config": f"tiny/{name}.yaml", "overrides": overrides})
    index = {"format": "synthiqa-experiments", "version": 1, "method": "ceniqa", "experiments": entries}
    (root / "index.yaml").write_text(yaml.safe_dump(index))


def bench(*args):
    with pytest.raises(SystemExit) as done:
        main(["bench", "run", *map(str, args)])
    return done.value.code


def finished_cells(out):
    return sorted(p.name.split(".")[0] for p in (out / "cells").rglob("*.rows.parquet"))


def test_limit_runs_the_next_experiments_and_reruns_skip_finished_ones(tmp_path, capsys):
    make_generated_set(tmp_path / "gen")
    make_index(tmp_path / "configs")
    out = tmp_path / "res"
    assert bench(tmp_path / "configs", "--out", out, "--synthetic", tmp_path / "gen", "--limit", "1") == 0
    text = capsys.readouterr().out
    assert "1 cells computed, 0 reused" in text and "2 cells left" in text
    table = pd.read_parquet(out / "results.parquet")
    assert set(table["model"]) == {"base"} and set(table["protocol"]) == {"intra"}
    first = next((out / "cells").rglob("*.rows.parquet"))
    stamp = first.stat().st_mtime_ns
    # an interrupted cell leaves files but no rows: it is computed again from scratch
    stale = first.parent.parent.parent / "k3" / "synthetic" / "intra" / "ref_split_00.0.pred.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half-written")
    assert bench(tmp_path / "configs", "--out", out, "--synthetic", tmp_path / "gen", "--limit", "1") == 0
    text = capsys.readouterr().out
    assert "1 cells computed, 1 reused" in text and "1 cells left" in text
    assert first.stat().st_mtime_ns == stamp
    assert set(pd.read_parquet(out / "results.parquet")["model"]) == {"base", "k3"}
    assert bench(tmp_path / "configs", "--out", out, "--synthetic", tmp_path / "gen") == 0
    text = capsys.readouterr().out
    assert "1 cells computed, 2 reused" in text and "left" not in text
    table = pd.read_parquet(out / "results.parquet")
    assert set(table["model"]) == set(EXPERIMENTS)
    srcc = table[(table["metric"] == "srcc") & (table["subset"] == "test") & (table["dist_type"] == "all")]
    assert len(srcc) == 3 and srcc["value"].notna().all()
    assert not list(out.rglob("*.tmp*"))
    assert bench(tmp_path / "configs", "--out", out, "--synthetic", tmp_path / "gen") == 0
    assert "0 cells computed, 3 reused" in capsys.readouterr().out


def test_jobs_compute_cells_in_worker_processes(tmp_path):
    from synthiqa.benchmarks.suite import run_suite, with_dataset_paths

    make_generated_set(tmp_path / "gen")
    make_index(tmp_path / "configs")
    data = {"synthetic": ("synthiqa", str(tmp_path / "gen"))}
    suite = with_dataset_paths(experiments_suite(tmp_path / "configs"), data)
    summary = run_suite(suite, tmp_path / "res", log=lambda m: None, progress=False, limit=2, jobs=2)
    assert summary.computed == 2 and summary.pending == 1 and not summary.failures
    assert len(finished_cells(tmp_path / "res")) == 2


def test_experiments_folder_is_a_suite_and_errors_are_one_line(tmp_path):
    write_experiments(tmp_path / "all", CENIQAConfig(**TINY))
    loaded = read_experiments(tmp_path / "all")
    suite = load_suite(tmp_path / "all")
    assert [m.key for m in suite.models] == [e.name for e in loaded]
    assert {m.name for m in suite.models} == {"ceniqa"}
    assert suite.models[0].options == loaded[0].config.to_dict()
    assert experiments_suite(tmp_path / "all", splits=3).protocols[0].max_splits == 3
    with pytest.raises(ConfigError, match="--splits"):
        experiments_suite(tmp_path / "all", splits=0)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "index.yaml").write_text("format: something-else\n")
    with pytest.raises(ConfigError, match="not a synthiqa-experiments index"):
        read_experiments(tmp_path / "bad")
    index = yaml.safe_load((tmp_path / "all" / "index.yaml").read_text())
    (tmp_path / "all" / index["experiments"][0]["config"]).unlink()
    with pytest.raises(ConfigError, match="not found"):
        read_experiments(tmp_path / "all")
