"""Distortion grids, the speed benchmark command, and the custom-distortion example."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from synthiqa.cli import app, main
from synthiqa.datasets.generation.encoding import encode_image
from synthiqa.datasets.references import read_image
from synthiqa.distortions import (
    apply_chains,
    get_distortion,
    list_distortions,
    parse_chain,
    unregister_distortion,
)
from synthiqa.errors import DistortionInputError
from synthiqa.reports.grid import CAPTION_HEIGHT, HEADER_HEIGHT, LABEL_WIDTH, PAD, render_distortion_grid

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_distortion.py"


def _image(h=40, w=60):
    g = np.random.default_rng(0)
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None]
    img[h // 4:h // 2, w // 4:w // 2] = 230
    return (img + g.integers(0, 20, size=img.shape)).astype(np.uint8)


def test_grid_layout_cells_and_atomic_write(tmp_path):
    out = tmp_path / "sub" / "grid.png"
    grid = render_distortion_grid(_image(), "kadid", [1, 3, 5], out, names=["fog", "chromatic_aberration"],
                                  size=40, seed=1)
    cell_w, cell_h = 60, 40
    assert grid.size == (LABEL_WIDTH + 4 * (cell_w + PAD),
                         HEADER_HEIGHT + 2 * (cell_h + CAPTION_HEIGHT + PAD))
    assert out.is_file() and [p.name for p in out.parent.iterdir()] == ["grid.png"]
    arr = np.asarray(Image.open(out).convert("RGB")).astype(int)
    top = HEADER_HEIGHT
    ref = arr[top:top + cell_h, LABEL_WIDTH:LABEL_WIDTH + cell_w]
    cells = [arr[top:top + cell_h, LABEL_WIDTH + j * (cell_w + PAD):LABEL_WIDTH + j * (cell_w + PAD) + cell_w]
             for j in range(1, 4)]
    diffs = [np.abs(c - ref).mean() for c in cells]
    assert 0 < diffs[0] < diffs[1] < diffs[2]  # fog thickens from level 1 to 5


def test_grid_rows_use_one_seed_per_row(tmp_path):
    a = render_distortion_grid(_image(), "kadid", [4, 4], names=["rain"], size=40, seed=3)
    arr = np.asarray(a).astype(int)
    x0, x1, x2 = (LABEL_WIDTH + j * (60 + PAD) for j in range(3))  # reference, level 4, level 4
    row = arr[HEADER_HEIGHT:HEADER_HEIGHT + 40]
    assert np.array_equal(row[:, x1:x1 + 60], row[:, x2:x2 + 60])
    assert not np.array_equal(row[:, x0:x0 + 60], row[:, x1:x1 + 60])


def test_grid_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(DistortionInputError, match="no level table"):
        render_distortion_grid(_image(), "kadid", names=["nonlinear_contrast_change"], size=40)
    with pytest.raises(SystemExit) as exc:
        main(["grid", str(tmp_path / "missing.png"), "--out", str(tmp_path / "g.png")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["grid", "--levels", "1,x", "--out", str(tmp_path / "g.png")])
    assert "--levels" in capsys.readouterr().err


def test_grid_command_writes_png(tmp_path):
    img = tmp_path / "ref.png"
    Image.fromarray(_image(48, 64)).save(img)
    out = tmp_path / "grid.png"
    res = CliRunner().invoke(app, ["grid", str(img), "--profile", "basic8", "--levels", "1,5", "--size", "32",
                                   "--out", str(out), "--extra"])
    assert res.exit_code == 0, res.output
    im = Image.open(out)
    assert im.size[1] == HEADER_HEIGHT + 12 * (32 + CAPTION_HEIGHT + PAD)  # 8 basic + 4 extra rows
    # written by the datasets' PNG writer: re-encoding the decoded grid gives the same bytes
    assert out.read_bytes() == encode_image(read_image(out), "png")


def test_bench_speed_writes_json(tmp_path):
    out = tmp_path / "speed.json"
    res = CliRunner().invoke(app, ["bench", "speed", "--device", "cpu", "--size", "64x48", "--batch", "2",
                                   "--repeats", "1", "--only", "white_noise,mean_shift,fog",
                                   "--threads", "1", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert [r["name"] for r in data["rows"]] == ["white_noise", "mean_shift", "fog"]
    assert data["config"]["size"] == [64, 48] and data["unit"] == "images/s"
    assert data["environment"]["threads"] == 1 and data["config"]["threads"] == 1
    assert all(r["synthiqa"] > 0 for r in data["rows"])
    fog = data["rows"][2]
    assert fog["albumentations"] is None and fog["kornia"] is None
    if data["environment"]["albumentations"]:
        assert data["rows"][0]["albumentations_op"].startswith("GaussNoise")
        assert data["geomean_ratio_albumentations"] > 0
    assert data["rows"][1]["kornia_op"].startswith("enhance.adjust_brightness")
    assert data["kadid_mix_without_jpeg2000"] is None  # --only skips the mix


def test_bench_speed_rejects_bad_options(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["bench", "speed", "--size", "64by48"])
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


@pytest.fixture
def example_module():
    """The example, imported (so ``vignette`` is registered) for one test, then unregistered."""
    spec = importlib.util.spec_from_file_location("custom_distortion_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    unregister_distortion("vignette")


def test_custom_distortion_example(example_module):
    d = get_distortion("vignette", "arniqa")
    assert list_distortions("kadid")[-1] == "vignette" and d.group == "brightness_change"
    x = torch.full((3, 3, 40, 48), 0.8)
    out, params = d(x, [1, 3, 5], [0, 0, 0])
    corner = out[:, :, 0, 0].mean(1)
    assert torch.all(corner[1:] < corner[:-1]) and abs(out[0, 0, 20, 24].item() - 0.8) < 0.05
    chain = parse_chain("vignette:4>fog:2", "kadid")
    y, rec = apply_chains(x[:2], [chain, parse_chain("mean_shift:2>vignette:1")], 0, "kadid")
    assert [s["name"] for s in rec[0]] == ["vignette", "fog"] and "cx" in rec[0][0]
    assert rec[1][1]["strength"] == 0.15 and not torch.equal(y[0], x[0])
    grid = render_distortion_grid(None, "arniqa", [1, 5], names=["vignette"], size=32)
    assert grid.size[1] == HEADER_HEIGHT + 32 + CAPTION_HEIGHT + PAD
    from synthiqa.datasets.generate import GenerateConfig, plan_jobs

    jobs = plan_jobs("ref.png", "ref", GenerateConfig(out="unused", profile="kadid", mode="grid").resolved())
    assert [j.chain[0].name for j in jobs[-5:]] == ["vignette"] * 5 and jobs[-1].file == "ref_26_05.png"


def test_unregistered_example_leaves_the_profiles_as_they_were():
    assert "vignette" not in list_distortions("kadid") and len(list_distortions("kadid")) == 25


def test_apply_chains_never_writes_into_the_callers_images():
    x = torch.rand(3, 3, 40, 48)
    before = x.clone()
    chains = [parse_chain("mean_shift:4>fog:2"), parse_chain("mean_shift:2"), parse_chain("fog:5")]
    out, _ = apply_chains(x, chains, 0, "kadid")  # mixed groups, whole-batch steps, min-max wrap
    assert torch.equal(x, before) and not torch.equal(out, x)
    whole, _ = apply_chains(x, [parse_chain("fog:3")] * 3, 0, "arniqa")
    assert torch.equal(x, before) and not torch.equal(whole, x)


def test_bench_speed_without_albumentations_says_so(monkeypatch):
    from synthiqa.benchmarks import speed

    monkeypatch.setattr(speed, "peer_availability", lambda: {"albumentations": None, "kornia": None})
    result = speed.run_speed_benchmark(speed.SpeedConfig(size=(48, 32), batch=1, repeats=1,
                                                         only=("gaussian_blur",)))
    row = result.rows[0]
    assert row.synthiqa > 0 and row.albumentations is None and row.kornia is None
    assert result.geomean_ratio("albumentations") is None
    assert any("albumentations is not installed" in line for line in speed.summary_lines(result))


def test_speed_geomean_counts_only_equivalent_peers_in_the_headline():
    from synthiqa.benchmarks import speed

    rows = [speed.SpeedRow("white_noise", 200.0, 100.0, "GaussNoise", True),
            speed.SpeedRow("brighten", 10.0, 1000.0, "RandomGamma", False),
            speed.SpeedRow("fog", 5.0)]
    result = speed.SpeedResult(speed.SpeedConfig(), rows, None)
    assert result.geomean_ratio("albumentations") == pytest.approx(2.0)
    assert result.count("albumentations") == 1 and result.count("albumentations", False) == 2
    assert result.geomean_ratio("albumentations", False) == pytest.approx((2.0 * 0.01) ** 0.5)
    assert speed.format_ratio(0.01, False) == "~0.01x" and speed.format_ratio(2.0) == "2.00x"
    summary = speed.summary_lines(result)[0]
    assert "over the 1 ops it has an equivalent of: 2.00x" in summary and "~" in summary
    assert set(speed.ALBUMENTATIONS_APPROXIMATE) >= {"brighten", "darken", "quantization", "high_sharpen"}
    assert "gaussian_blur" not in speed.ALBUMENTATIONS_APPROXIMATE
    data = result.to_dict()
    assert data["rows"][1]["albumentations_equivalent"] is False
    assert data["geomean_ratio_albumentations_all"] == pytest.approx((2.0 * 0.01) ** 0.5)
