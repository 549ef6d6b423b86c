"""The Python steps of scripts/device-check: run comparison, training plumbing, summary without CUDA."""

import json
import shutil

import cv2
import pytest

from synthiqa.benchmarks import device_check
from synthiqa.datasets.generate import GenerateConfig, generate


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "run"
    generate(GenerateConfig(out=str(out), profile="kadid", mode="basic", per_image=4, max_side=48,
                            labels=("level",), device="cpu", workers=1), progress=False)
    return out


def test_compare_runs_passes_identical_runs_and_fails_a_changed_image(generated, tmp_path):
    same = device_check.compare_runs(generated, generated)
    assert same["rows"] and same["failed"] == [] and not same["missing"]
    assert all(r["max_diff"] == 0 for r in same["rows"])
    other = tmp_path / "other"
    shutil.copytree(generated, other)
    row = next(r for r in same["rows"] if r["verdict"] == "ok" and "noise" not in r["distortion"]
               and r["distortion"] != "jpeg")
    import pandas as pd

    manifest = pd.read_parquet(other / "manifest.parquet")
    image = manifest[manifest.dist_type == row["distortion"]].image.iloc[0]
    pixels = cv2.imread(str(other / image))
    cv2.imwrite(str(other / image), 255 - pixels)
    changed = device_check.compare_runs(other, generated)
    assert changed["failed"] == [row["distortion"]]


def test_train_throughput_reads_the_run(monkeypatch, tmp_path):
    calls = {}

    class Method:
        def train(self, options, data, out):
            calls.update(options=options, data=data)
            (tmp_path / "run").mkdir()
            (tmp_path / "run" / "run.json").write_text(json.dumps({"train_images_per_s": 12.5,
                                                                   "test": {"srcc": 0.5, "name": "x"}}))
            return tmp_path / "run" / "best.pt"

    monkeypatch.setattr("synthiqa.benchmarks.device_check.get_method", lambda name: Method())
    result = device_check.train_throughput("ceniqa", tmp_path / "run", "cpu", on_the_fly="refs",
                                           overrides={"epochs": "1"})
    assert result["train_images_per_s"] == 12.5 and result["test"] == {"srcc": 0.5}
    assert calls["options"]["preset"] == "quick" and calls["options"]["overrides"] == {"device": "cpu",
                                                                                       "epochs": "1"}


def test_summary_without_cuda_says_what_did_not_run(tmp_path):
    device_check.environment(tmp_path)
    (tmp_path / "steps.tsv").write_text("cuda-tests\tok\t3.0\tpytest -m cuda\n"
                                        "bench-speed\tskipped\t0\tcuda unavailable\n"
                                        "generate-cpu\ttimeout\t60.0\t\n")
    (tmp_path / "cuda-tests.xml").write_text('<testsuites><testsuite tests="5" failures="0" errors="0" '
                                             'skipped="5"/></testsuites>')
    s = device_check.write_summary(tmp_path)
    md = (tmp_path / "summary.md").read_text()
    data = json.loads((tmp_path / "summary.json").read_text())
    if s["cuda"] == "unavailable":
        assert "cuda: unavailable" in md
    assert data["cuda_tests"] == {"tests": 5, "failures": 0, "errors": 0, "skipped": 5}
    assert data["not_run"] == ["bench-speed: skipped (cuda unavailable)", "generate-cpu: timeout"]
    assert "- bench-speed: skipped (cuda unavailable)" in md
