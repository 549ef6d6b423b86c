"""What a new user hits first (issue 17): label files, help output, config and checkpoint mix-ups, output
paths, the repository's ignore list."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthiqa.cli import main
from synthiqa.datasets import load_dataset
from synthiqa.errors import ConfigError, DatasetError

ROOT = Path(__file__).resolve().parents[1]


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``synthiqa ARGS``; (exit status, stdout, stderr)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _images(folder: Path, names: list[str], size: int = 40) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / name)


# --- case 2: duplicate rows of a label CSV ------------------------------------------------------------
def _dup_csv(tmp_path: Path) -> Path:
    _images(tmp_path, ["a.png", "b.png", "c.png"])
    path = tmp_path / "scores.csv"
    path.write_text("image,mos,subset\na.png,10,train\nb.png,40,test\na.png,30,train\nc.png,50,test\n")
    return path


def test_csv_duplicates_are_an_error_naming_the_lines(tmp_path):
    with pytest.raises(DatasetError, match=r"a\.png on line 2 \(score 10\), line 4 \(score 30\).*"
                                           r"duplicates=mean"):
        load_dataset("csv", _dup_csv(tmp_path), mos_range=(0, 100), lower_better=False)


def test_csv_duplicates_mean_and_first(tmp_path):
    path = _dup_csv(tmp_path)
    mean = load_dataset("csv", path, mos_range=(0, 100), lower_better=False, duplicates="mean")
    first = load_dataset("csv", path, mos_range=(0, 100), lower_better=False, duplicates="first")
    assert [(r.image.name, r.score) for r in mean.records] == [("a.png", 20.0), ("b.png", 40.0),
                                                                ("c.png", 50.0)]
    assert [(r.image.name, r.score) for r in first.records] == [("a.png", 10.0), ("b.png", 40.0),
                                                                 ("c.png", 50.0)]
    assert mean.records[0].score_norm == pytest.approx(0.2)
    with pytest.raises(DatasetError, match="duplicates must be one of error, mean, first"):
        load_dataset("csv", path, mos_range=(0, 100), lower_better=False, duplicates="last")


def test_csv_subset_and_image_root_from_the_command_line_spec(tmp_path):
    from synthiqa.datasets.spec import load_data_spec

    path = _dup_csv(tmp_path)
    _, ds = load_data_spec(f"csv:{path}?lower_better=false&mos_range=0,100&subset=test")
    assert [r.image.name for r in ds.records] == ["b.png", "c.png"]
    with pytest.raises(DatasetError, match=r"no rows with subset in \['val'\]; the column holds test, train"):
        load_data_spec(f"csv:{path}?lower_better=false&mos_range=0,100&subset=val")
    elsewhere = tmp_path / "labels" / "s.csv"
    elsewhere.parent.mkdir()
    elsewhere.write_text("image,mos\n../b.png,1\n")
    with pytest.raises(DatasetError, match=r"resolves outside .*; set image_root=FOLDER"):
        load_dataset("csv", elsewhere, mos_range=(0, 5), lower_better=False)
    (tmp_path / "labels" / "t.csv").write_text("image,mos\nb.png,1\n")
    ok = load_dataset("csv", tmp_path / "labels" / "t.csv", mos_range=(0, 5), lower_better=False,
                      image_root=str(tmp_path))
    assert ok.records[0].image == tmp_path / "b.png"


# --- case 5: help --------------------------------------------------------------------------------------
def _commands():
    import typer.main

    from synthiqa.cli import app

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from ((f"{name} {sub}", c) for sub, c in cmd.commands.items())
        else:
            yield name, cmd


def test_every_option_has_help_text():
    missing = [f"{name} {p.opts[0]}" for name, cmd in _commands() for p in cmd.params
               if p.param_type_name == "option" and not (getattr(p, "help", None) or "").strip()]
    assert missing == []


def test_help_shows_bracketed_defaults_at_80_columns_and_h_works(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = cli(capsys, "generate", "-h")
    assert code == 0
    text = " ".join(out.split())
    assert "Longest chain in chains mode (default: the profile's, 4)." in text
    assert "(default: min(4, cores))" in text and "[default: basic8]" in text
    code, out, _ = cli(capsys, "train", "--help")
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 80
    for name in ("--pretrain-epochs", "--cluster-loss-weight", "--distortions-per-image", "--train-samples"):
        assert name in out
    assert "…" not in out and "│" not in out   # plain text: nothing cut, no box characters
    code, out, _ = cli(capsys, "bench", "run", "-h")
    assert code == 0 and "--csv" in out


def test_list_never_cuts_names(capsys):
    from synthiqa.distortions import list_distortions

    code, out, _ = cli(capsys, "list", "--profile", "arniqa", "--extra")
    assert code == 0 and "…" not in out
    for name in list_distortions("arniqa", include_extra=True):
        assert re.search(rf"\b{name}\b", out), name


# --- case 8: the quick start's output is ignored by git -------------------------------------------------
def test_quick_start_output_is_git_ignored():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    out = re.search(r"synthiqa generate --out (\S+)", quick).group(1)
    ignored = [line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()]
    assert f"/{out}/" in ignored or f"{out}/" in ignored


# --- case 11: configs and checkpoints of another method ---------------------------------------------------
def test_config_of_another_method_says_which(tmp_path):
    import torch

    from synthiqa.models.arniqa.method import ARNIQAConfig
    from synthiqa.models.ceniqa.config import CENIQAConfig
    from synthiqa.models.trcnn.method import TRCNNConfig

    CENIQAConfig().save(tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match=r"a CENIQA config \(it sets 'feature_dim'.*not a TRCNN one; train "
                                          r"with --method ceniqa"):
        TRCNNConfig.load(tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match="not an ARNIQA one"):
        ARNIQAConfig.load(tmp_path / "config.yaml")
    torch.save({"method": "ceniqa", "model": {}}, tmp_path / "best.pt")
    with pytest.raises(ConfigError, match=r"best\.pt: a synthiqa checkpoint, not a config file"):
        CENIQAConfig.load(tmp_path / "best.pt")
    with pytest.raises(ConfigError, match=r"unknown option 'n_cluster' \(did you mean 'n_clusters'\?\)"):
        CENIQAConfig.from_dict({"n_cluster": 3})


# --- case 1: output paths checked first, failed writes named ------------------------------------------
def test_output_paths_are_checked_before_the_work(capsys, tmp_path):
    folder, file = tmp_path / "folder", tmp_path / "file"
    folder.mkdir()
    file.write_text("x")
    code, _, err = cli(capsys, "grid", "--out", str(folder), "--size", "32")
    assert code == 2 and err.strip() == f"error: --out {folder} is a folder; give a file name, e.g. " \
                                        f"{folder / 'grid.png'}"
    code, _, err = cli(capsys, "train", "--data", str(tmp_path / "none"), "--out", str(file))
    assert code == 2 and err.count("\n") == 1 and "is a file; give a folder" in err
    code, _, err = cli(capsys, "generate", "--out", str(file / "sub"))
    assert code == 2 and f"{file} is a file, not a folder" in err
    code, _, err = cli(capsys, "report", str(tmp_path), "--out", str(folder))
    assert code == 2 and "is a folder; give a file name, e.g." in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]


def test_read_only_location_is_named(monkeypatch, tmp_path):
    import os

    from synthiqa.outputs import OutputError, check_output_file, check_output_folder

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    monkeypatch.setattr(os, "statvfs", lambda *a: ReadOnly())
    with pytest.raises(OutputError, match=rf"--out {tmp_path / 'new'}: cannot write in {tmp_path} "
                                          r"\(read-only file system\)"):
        check_output_folder(tmp_path / "new")
    with pytest.raises(OutputError, match=r"read-only file system"):
        check_output_file(tmp_path / "a" / "b.csv")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_is_one_error_naming_the_file(monkeypatch, tmp_path):
    import os

    from synthiqa import atomic
    from synthiqa.outputs import OutputError

    real = atomic._open_temporary

    def full(path):
        tmp, fd = real(path)
        os.close(fd)
        return tmp, os.open("/dev/full", os.O_WRONLY)

    monkeypatch.setattr(atomic, "_open_temporary", full)
    target = tmp_path / "image.png"
    with pytest.raises(OutputError, match=rf"cannot write {target}: No space left on device"):
        atomic.atomic_write_bytes(target, b"x" * 100_000)
    assert list(tmp_path.iterdir()) == []   # neither the file nor its temporary is left


def test_oserror_reaches_the_user_as_one_line(capsys, monkeypatch, tmp_path):
    import synthiqa.reports.grid as grid

    def broken(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x.png"))

    monkeypatch.setattr(grid, "render_distortion_grid", broken)
    code, _, err = cli(capsys, "grid", "--out", str(tmp_path / "x.png"), "--size", "32")
    assert code == 2 and err == f"error: {tmp_path / 'x.png'}: Permission denied\n"


# --- case 7: images over the decompression-bomb guard with --max-side --------------------------------
def test_bomb_guard_admits_images_that_max_side_shrinks(monkeypatch, tmp_path):
    from synthiqa.datasets import references as R

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "big.jpg", quality=95)
    Image.fromarray(pixels).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL itself refuses images over 2x this
    guard = 1000
    for name in ("big.jpg", "big.png"):
        with pytest.raises(R.ReferenceSkipped, match=r"100x80 px exceeds the decompression-bomb guard.*"
                                                     r"pass --max-side"):
            R.decode_reference(tmp_path / name, guard)
        assert R.probe_reference(tmp_path / name, max_pixels=guard, max_side=40) == (100, 80)
    scan = R.scan_references(tmp_path, max_pixels=guard, max_side=40)
    assert len(scan.references) == 2 and scan.skipped == []
    assert R.scan_references(tmp_path, max_pixels=guard).references == []
    jpeg = R.decode_reference(tmp_path / "big.jpg", guard, max_side=40)
    assert jpeg.shape == (40, 50, 3)          # decoded at 1/2 DCT scale, still >= 40 px on the long side
    assert R.normalise_reference(jpeg, max_side=40).shape == (32, 40, 3)
    png = R.decode_reference(tmp_path / "big.png", guard, max_side=40)
    assert png.shape == (80, 100, 3) and np.array_equal(png, pixels)
    assert Image.MAX_IMAGE_PIXELS == 1000     # PIL's limit is restored
    # under the guard nothing changes: full-size decoding
    assert R.decode_reference(tmp_path / "big.jpg", max_side=40).shape == (80, 100, 3)


# --- case 9 and the scoring API: predict / evaluate take any dataset and any model -----------------
def _fr_set(tmp_path: Path) -> Path:
    """Five 128 px references and two distorted versions each (noise of two strengths), as a CSV."""
    rng = np.random.default_rng(3)
    lines = ["image,mos,ref,dist_type,dist_group"]
    for i in range(5):
        ref = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8).repeat(16, 0).repeat(16, 1)
        Image.fromarray(ref).save(tmp_path / f"r{i}.png")
        for level, sigma in ((1, 8), (2, 40)):
            noisy = np.clip(ref + rng.normal(0, sigma, ref.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(tmp_path / f"d{i}_{level}.png")
            kind = "white_noise" if i % 2 else "white_noise>jpeg"
            group = "noise" if i % 2 else "noise>jpeg"
            lines.append(f"d{i}_{level}.png,{5 - 2 * level + i * 0.1:.1f},r{i}.png,{kind},{group}")
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "s.csv"


def _batch(paths):
    import torch

    return torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)
                        for p in paths]).float() / 255


def test_predict_and_evaluate_take_a_dataset_spec_and_a_model(capsys, tmp_path):
    import csv
    import json

    import synthiqa

    spec = f"csv:{_fr_set(tmp_path)}?lower_better=false&mos_range=0,5"
    code, _, err = cli(capsys, "predict", spec, "--model", "psnr", "--out", str(tmp_path / "p.csv"))
    assert code == 0, err
    with open(tmp_path / "p.csv") as f:
        rows = {Path(r["image"]).name: float(r["score"]) for r in csv.DictReader(f)}
    assert len(rows) == 10
    names = sorted(rows)
    psnr = synthiqa.create_metric("psnr", device="cpu")
    assert psnr.needs_reference and not psnr.lower_better
    x = _batch([tmp_path / n for n in names])
    ref = _batch([tmp_path / f"r{n[1]}.png" for n in names])
    assert psnr(x, ref).tolist() == pytest.approx([rows[n] for n in names], abs=1e-4)
    code, out, err = cli(capsys, "evaluate", "--dataset", spec, "--model", "psnr", "--out",
                         str(tmp_path / "m.json"), "--scores", str(tmp_path / "scores.csv"))
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    for key in ("srcc", "krcc", "plcc", "plcc_fit", "rmse_fit", "fit_mode", "n"):
        assert key in metrics, key
    # chains count towards each of their types; n everywhere; rows under --min-n marked
    assert set(metrics["per_type"]) == {"white_noise", "jpeg"}
    assert metrics["per_type"]["white_noise"]["n"] == 10 and metrics["per_type"]["jpeg"]["n"] == 6
    assert set(metrics["per_group"]) == {"noise", "jpeg"}
    with open(tmp_path / "scores.csv") as f:
        scored = list(csv.DictReader(f))
    assert len(scored) == 10 and float(scored[0]["prediction"]) == pytest.approx(rows["d0_1.png"], abs=1e-4)
    code, out, _ = cli(capsys, "evaluate", "--dataset", spec, "--model", "psnr", "--min-n", "7")
    assert code == 0 and re.search(r"jpeg\s+.\s+6\s+.\s+-", out) and "fewer than 7 images" in out
    code, _, err = cli(capsys, "predict", spec, "--model", "ceniqa")
    assert code == 2 and "give checkpoint=PATH" in err
    code, _, err = cli(capsys, "predict", spec)
    assert code == 2 and "give --checkpoint CKPT (a trained model) or --model NAME" in err


def test_niqe_and_brisque_without_a_checkpoint(capsys, tmp_path):
    import csv

    import synthiqa

    _images(tmp_path / "imgs", ["a.png", "b.png"], size=200)
    code, _, err = cli(capsys, "predict", str(tmp_path / "imgs"), "--model", "niqe", "--out",
                       str(tmp_path / "n.csv"))
    assert code == 0, err
    with open(tmp_path / "n.csv") as f:
        cli_scores = [float(r["score"]) for r in csv.DictReader(f)]
    assert "scored" not in err  # one batch: no progress lines
    code, _, err = cli(capsys, "predict", str(tmp_path / "imgs"), "--model", "niqe", "--batch-size", "1")
    assert code == 0 and [line.split(" in ")[0] for line in err.splitlines()] == [
        "scored 1/2 images", "scored 2/2 images"]  # stderr is no terminal here: one line per batch
    niqe = synthiqa.create_metric("niqe")
    assert niqe.score_range == (-float("inf"), 0.0) and "niqe" in synthiqa.list_metrics()
    x = _batch([tmp_path / "imgs" / "a.png", tmp_path / "imgs" / "b.png"])
    assert niqe(x).tolist() == pytest.approx(cli_scores, abs=1e-4)
    with pytest.raises(ConfigError, match="brisque is fitted on rated images: give data=KIND:PATH"):
        synthiqa.create_metric("brisque")
    (tmp_path / "fr").mkdir()
    spec = f"csv:{_fr_set(tmp_path / 'fr')}?lower_better=false&mos_range=0,5"
    brisque = synthiqa.create_metric("brisque", data=spec)
    assert brisque(x).shape == (2,)
    with pytest.raises(ConfigError, match="unknown metric 'nique'"):
        synthiqa.create_metric("nique")


def test_readme_scoring_example_runs(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Scoring images in Python", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "'niqe'" in out and "(-inf, 0.0)" in out and "True" in out


def test_bench_run_csv_carries_loader_options_and_a_suite_without_cells_fails(capsys, tmp_path):
    import pandas as pd

    data = tmp_path / "data"
    data.mkdir()
    csv_path = _fr_set(data)
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: fr\nseed: 1\nlogistic: null\nn_boot: 0\nmodels: [psnr]\ndatasets: []\n"
                     "protocols:\n  - {name: intra, n_splits: 1, ratios: [0.6, 0.2, 0.2]}\n")
    code, _, err = cli(capsys, "bench", "run", str(suite), "--out", str(tmp_path / "r"),
                       "--csv", f"fr={csv_path}?lower_better=false&mos_range=0,5")
    assert code == 0, err
    results = pd.read_csv(tmp_path / "r" / "results.csv")
    assert set(results["dataset"]) == {"fr"} and (results["model"] == "psnr").all()
    cross = tmp_path / "cross.yaml"
    cross.write_text(suite.read_text().replace("{name: intra, n_splits: 1, ratios: [0.6, 0.2, 0.2]}",
                                               "{name: cross, train: fr, test: [live]}"))
    code, _, err = cli(capsys, "bench", "run", str(cross), "--out", str(tmp_path / "r2"),
                       "--csv", f"fr={csv_path}?lower_better=false&mos_range=0,5")
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: suite fr: no cell to compute") and "Traceback" not in err
    assert not (tmp_path / "r2" / "results.csv").exists()


def test_bench_cells_are_keyed_by_content_so_a_moved_folder_reuses_them(capsys, tmp_path):
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    _fr_set(data)
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: fr\nseed: 1\nlogistic: null\nn_boot: 0\nmodels: [psnr, ssim]\ndatasets: []\n"
                     "protocols:\n  - {name: intra, n_splits: 2, ratios: [0.6, 0.2, 0.2]}\n")

    def run(results: Path, folder: Path) -> str:
        code, out, err = cli(capsys, "bench", "run", str(suite), "--out", str(results), "--csv",
                             f"fr={folder / 's.csv'}?lower_better=false&mos_range=0,5")
        assert code == 0, err
        assert "suite fr ━" not in out + err   # not a terminal: no bar, a line per finished cell
        assert all(f"[{i}/4] " in err for i in range(1, 5)) or "0 cells computed" in out
        return out

    assert "4 cells computed, 0 reused" in run(tmp_path / "r", data)
    shutil.move(tmp_path / "r", tmp_path / "moved")
    shutil.move(data, tmp_path / "data2")
    assert "0 cells computed, 4 reused" in run(tmp_path / "moved", tmp_path / "data2")
    shutil.copytree(tmp_path / "moved", tmp_path / "copy")
    assert "0 cells computed, 4 reused" in run(tmp_path / "copy", tmp_path / "data2")
    assert len(list((tmp_path / "copy" / "cells").rglob("*.rows.parquet"))) == 4   # no stale duplicates
    labels = tmp_path / "data2" / "s.csv"
    labels.write_text(labels.read_text().replace("d0_1.png,3.0,", "d0_1.png,3.1,"))
    assert "0 reused" in run(tmp_path / "copy", tmp_path / "data2")   # a changed score is new content


# --- case 6: console noise --------------------------------------------------------------------------------
def test_epoch_line_is_one_concise_line():
    from synthiqa.models.training.loop import epoch_line

    row = {"epoch": 3, "phase": "finetune", "lr": 0.001, "loss_total": 0.12345, "loss_quality": 0.1,
           "loss_cluster": 0.2, "train_images_per_s": 123.44, "val_srcc": 0.81234, "val_plcc": 0.8,
           "val_rmse": 0.1, "val_active_clusters": 8.0, "seconds": 12.34}
    assert epoch_line(row, 8) == ("epoch 3/8 finetune, loss 0.1235, val SRCC 0.812 PLCC 0.800, 8 clusters, "
                                  "123.4 img/s, 12.3 s")
    trcnn = {"epoch": 1, "phase": "train", "loss_mse": 0.5, "loss_rank": 0.25, "train_images_per_s": 10.0,
             "seconds": 2.0}
    assert epoch_line(trcnn, 2) == "epoch 1/2 train, loss mse 0.5000 rank 0.2500, 10.0 img/s, 2.0 s"


def test_warnings_print_as_one_line(capsys, monkeypatch, tmp_path):
    import warnings

    import synthiqa.reports.grid as grid

    class Image:
        width = height = 1

    def noisy(*a, **k):
        warnings.warn("cluster collapse: 1 of 2 clusters hold >= 5% of the samples", stacklevel=1)
        return Image()

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)   # restored after the test
    monkeypatch.setattr(grid, "render_distortion_grid", noisy)
    code, _, err = cli(capsys, "grid", "--out", str(tmp_path / "g.png"))
    assert code == 0 and err == "warning: cluster collapse: 1 of 2 clusters hold >= 5% of the samples\n"


# --- case 10: the run folder and its config exist before the first long step ------------------------------
def test_train_writes_its_config_before_the_long_steps(monkeypatch, tmp_path):
    import synthiqa.models.ceniqa.method as C

    class Stop(Exception):
        pass

    seen = {}

    def task(config, bundle, device, progress=True):
        seen["config"] = (tmp_path / "run" / "config.yaml").is_file()
        raise Stop

    monkeypatch.setattr(C, "CENIQATask", task)
    spec = f"csv:{_fr_set(tmp_path)}?lower_better=false&mos_range=0,5"
    with pytest.raises(Stop):
        C.train_ceniqa({"progress": False}, spec, tmp_path / "run")
    assert seen == {"config": True}


# --- case 4: per-type tables say how many images each row has -------------------------------------------
def test_report_per_type_cells_show_n_and_mark_small_ones():
    import pandas as pd

    from synthiqa.reports.html import SMALL_N, per_type_cells

    rows = [{"model": "psnr", "dataset": "d", "protocol": "intra", "dist_type": t, "value": v, "n": n}
            for t, v, n in (("jpeg", 0.9, 40), ("jpeg", 0.8, 40), ("blur", 0.5, SMALL_N - 1))]
    table = per_type_cells(pd.DataFrame(rows))
    assert table.to_dict("records") == [{"model": "psnr", "dataset": "d", "protocol": "intra",
                                         "blur": f"0.500 (n {SMALL_N - 1})*", "jpeg": "0.850 (n 40)"}]


def test_harness_per_type_rows_count_chains_towards_each_type():
    from synthiqa.benchmarks.suite import _quality_rows
    from synthiqa.datasets.records import IQARecord

    kinds = ["jpeg>blur", "blur", "jpeg>noise", "noise>blur", "jpeg"] * 2
    records = [IQARecord(image=Path(f"{i}.png"), score=i, score_norm=i / 10, dist_type=k)
               for i, k in enumerate(kinds)]
    pred = np.arange(10, dtype=float)
    rows = _quality_rows(pred, records, None, 0, 0, "test")
    n = {r["dist_type"]: r["n"] for r in rows if r["metric"] == "srcc"}
    assert n == {"all": 10, "blur": 6, "jpeg": 6, "noise": 4}


def test_generate_admits_references_over_the_guard_with_max_side(monkeypatch, tmp_path):
    from synthiqa.datasets.generate import GenerateConfig, generate
    from synthiqa.errors import SynthiqaError

    refs = tmp_path / "refs"
    refs.mkdir()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (80, 100, 3), dtype=np.uint8)).save(
        refs / "big.jpg", quality=95)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    common = {"ref_dir": str(refs), "mode": "basic", "per_image": 1, "labels": ("level",), "workers": 1,
              "device": "cpu", "max_pixels": 1000}          # the guard, scaled down to this test's image
    with pytest.raises(SynthiqaError, match=r"no usable reference image .*1 files skipped"):
        generate(GenerateConfig(out=str(tmp_path / "a"), **common), progress=False)
    summary = generate(GenerateConfig(out=str(tmp_path / "b"), max_side=48, **common), progress=False)
    assert summary.images_total == 2 and not summary.skipped
    written = sorted((tmp_path / "b" / "images").rglob("*.png"))
    assert len(written) == 2 and Image.open(written[0]).size == (48, 38)


def test_predict_prints_its_scores_when_the_output_cannot_be_written(capsys, monkeypatch, tmp_path):
    import synthiqa.models.inference as inference
    from synthiqa.outputs import OutputError

    _images(tmp_path / "imgs", ["a.png"], size=200)

    def full(path, rows):
        raise OutputError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(inference, "write_predictions", full)
    code, out, err = cli(capsys, "predict", str(tmp_path / "imgs"), "--model", "niqe", "--out",
                         str(tmp_path / "p.csv"))
    assert code == 2 and "a.png\t-" in out
    assert err == f"error: cannot write {tmp_path / 'p.csv'}: No space left on device; the 1 scores are " \
                  "printed above\n"


def test_train_flags_come_from_the_method_cards(capsys, tmp_path):
    import dataclasses

    from synthiqa.models.method_config import MethodConfig
    from synthiqa.models.registry import MODELS, list_methods, register_model

    @dataclasses.dataclass
    class ToyConfig(MethodConfig):
        """A method added by a test.

        toy_strength: how strong the toy is, 0..1.
        """

        toy_strength: float = 0.5
        epochs: int = 1

    register_model("toy_method", lambda **options: None, config=ToyConfig, train=lambda o, d, out: out)
    try:
        code, out, _ = cli(capsys, "train", "--help")
        assert code == 0
        text = " ".join(out.split())
        assert "toy_method" in text  # the --method help lists every method
        for method in list_methods():
            for f in dataclasses.fields(MODELS.get(method).config):
                assert f"--{f.name.replace('_', '-')}" in out, (method, f.name)
        assert "--toy-strength, --toy_strength" in text
        assert "how strong the toy is, 0..1. (default toy_method: 0.5)" in text
        assert "number of mixture components (the maximum when BIC selects). (default ceniqa: 8)" in text
        assert "(default arniqa: 4; ceniqa: 8; sind, trcnn: 10; toy_method: 1)" in text  # --epochs
        code, _, err = cli(capsys, "train", "--method", "arniqa", "--n-clusters", "3", "--data",
                           str(tmp_path), "--out", str(tmp_path / "r"))
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert "error: --n-clusters is not an option of --method arniqa (it is one of ceniqa)" in err
        code, _, err = cli(capsys, "train", "--method", "toy_method", "--toy_strength", "x", "--out",
                           str(tmp_path / "r"))
        assert code == 2 and "Invalid value for '--toy-strength'" in err
    finally:
        MODELS.unregister("toy_method")
