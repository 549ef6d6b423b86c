"""Training in two CPU processes (gloo) through ``synthiqa train --nproc 2``: it finishes, only rank 0 writes,
its checkpoint loads, its validation metrics equal a one-process evaluation of that checkpoint, and
``--resume`` continues it. Bad input for several processes is one ``error:`` line each."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from synthiqa.cli import main

TRCNN = ["--method", "trcnn", "--device", "cpu", "--quiet", "--set", "image_size=48", "--batch_size", "8",
         "--set", "d_model=32", "--set", "heads=2", "--set", "layers=1", "--set", "test_crops=1",
         "--train_samples", "32", "--val_samples", "12", "--set", "scene_sampling=false"]


def _train(args):
    try:
        main(["train", *args])
    except SystemExit as exc:
        return exc.code
    return 0


def _one_process_validation(run, refs):
    from synthiqa.models.data import LabelSpace
    from synthiqa.models.inference import evaluate_outputs
    from synthiqa.models.training.onthefly import eval_set, split_references
    from synthiqa.models.trcnn.method import TRCNNPredictor, score_records

    predictor = TRCNNPredictor.from_checkpoint(run / "best.pt").to(torch.device("cpu"))
    c = predictor.config_
    parts = split_references(refs, c.image_size, c.seed)
    val = eval_set(parts, "val", run / "onthefly", c.image_size, c.onthefly_profile, "single", c.seed,
                   c.val_samples, write=False)
    m = evaluate_outputs(score_records(predictor.model_, val, LabelSpace.from_records(val), c,
                                       torch.device("cpu")))
    return {"srcc": m["srcc"], "plcc": m["plcc"], "mse": m["rmse"] ** 2}


def test_two_gloo_processes_train_resume_and_validate_like_one(refs, tmp_path):
    run = tmp_path / "run"
    args = ["--nproc", "2", "--on-the-fly", str(refs), "--out", str(run)]
    assert _train([*args, "--epochs", "1", *TRCNN]) == 0
    state = torch.load(run / "best.pt", weights_only=True)
    assert state["method"] == "trcnn" and state["epoch"] == 1
    expected = _one_process_validation(run, refs)
    for key, value in expected.items():
        assert state["metrics"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert len(rows) == 1 and float(rows[0]["val_srcc"]) == pytest.approx(state["metrics"]["srcc"], abs=1e-5)
    assert _train([*args, "--epochs", "2", "--resume", str(run / "last.pt"), *TRCNN]) == 0
    assert [r["epoch"] for r in csv.DictReader((run / "log.csv").open())] == ["1", "2"]
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2


def test_too_many_processes_is_one_error_line(refs, tmp_path, capsys):
    assert _train(["--nproc", "999", "--on-the-fly", str(refs), "--out", str(tmp_path / "r"), *TRCNN]) == 2
    err = capsys.readouterr().err
    assert "error: --nproc 999 is more processes than this machine allows" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_missing_torchrun_variables_are_one_error_line(refs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert _train(["--on-the-fly", str(refs), "--out", str(tmp_path / "r"), *TRCNN]) == 2
    err = capsys.readouterr().err
    assert "error: several processes need torchrun's environment; missing RANK, LOCAL_RANK, MASTER_ADDR" \
        in err


@pytest.mark.parametrize("setup, message", [
    (lambda d: (d / "notes.txt").write_text("x"), "no usable reference image"),
    (lambda d: Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(d / "a.png"),
     "crop 48 px is larger than every reference"),
])
def test_bad_reference_folders_are_one_error_line(tmp_path, capsys, setup, message):
    refs = tmp_path / "refs"
    refs.mkdir()
    setup(refs)
    assert _train(["--on-the-fly", str(refs), "--out", str(tmp_path / "r"), *TRCNN]) == 2
    err = capsys.readouterr().err
    assert f"error: {refs}: {message}" in err and "Traceback" not in err


def test_an_error_in_the_processes_is_its_one_line(tmp_path, capsys):
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "notes.txt").write_text("x")
    assert _train(["--nproc", "2", "--on-the-fly", str(refs), "--out", str(tmp_path / "r"), *TRCNN]) == 2
    err = capsys.readouterr().err
    assert f"error: {refs}: no usable reference image" in err and "Traceback" not in err
