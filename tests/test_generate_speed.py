"""synthiqa bench generate: reference preparation, the baseline script's task, the result arithmetic."""

import math

import cv2
import numpy as np
import pytest

from synthiqa.benchmarks import generate_speed as gs


def test_references_are_prepared_and_the_baseline_writes_per_image_plus_one_pngs(tmp_path):
    pytest.importorskip("albumentations")
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        cv2.imwrite(str(src / f"{name}.png"), rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    config = gs.GenerateBenchConfig(ref_dir=str(src), per_image=3, max_side=64)
    assert gs.prepare_references(config, tmp_path / "refs") == 2
    ref = cv2.imread(str(tmp_path / "refs" / "a.png"))
    assert ref.shape == (48, 64, 3)
    out = tmp_path / "out"
    out.mkdir()
    rows = gs._baseline_task((str(tmp_path / "refs" / "a.png"), str(out), 3, 0))
    assert [r[0] for r in rows] == [f"a__{i:04d}.png" for i in range(4)]
    assert all(cv2.imread(str(out / name)).shape == ref.shape for name, _ in rows)
    assert (cv2.imread(str(out / "a__0000.png")) == ref).all()


def test_ratio_needs_both_rows_and_rss_is_read_from_proc():
    result = gs.GenerateBenchResult(gs.GenerateBenchConfig(), 2, [gs.BenchRow("s", 10, 2.0),
                                                                  gs.BenchRow("b", 10, 4.0)])
    assert result.ratio == pytest.approx(2.0)
    result.rows[1] = gs.BenchRow("b", error="albumentations is not installed")
    assert result.ratio is None and math.isnan(result.rows[1].images_per_second)
    import os

    kb = gs._rss_tree_kb(os.getpid())
    assert kb is None or kb > 0


def test_sides_alternate_and_report_their_median_run(monkeypatch, tmp_path):
    calls = []
    times = {"synthiqa": iter([3.0, 1.0, 2.0]), "baseline": iter([5.0, 4.0, 9.0])}

    def fake_child(args):
        calls.append(args[0])
        assert args[0] == "baseline" or args[-3:] == ["level", "cpu", "local"]
        return {"images": 12, "seconds": next(times[args[0]])}, 100.0 + len(calls)

    monkeypatch.setattr(gs, "_run_child", fake_child)
    monkeypatch.setattr(gs, "prepare_references", lambda config, folder: 2)
    result = gs.run_generate_benchmark(gs.GenerateBenchConfig(per_image=5, repeat=3))
    assert calls == ["synthiqa", "baseline"] * 3
    ours, base = result.rows
    assert (ours.seconds, base.seconds) == (2.0, 5.0) and ours.runs == [3.0, 1.0, 2.0]
    assert (ours.peak_rss_mb, base.peak_rss_mb) == (105.0, 106.0)
    assert result.ratio == pytest.approx(2.5)
    with pytest.raises(gs.ConfigError, match="--repeat"):
        gs.run_generate_benchmark(gs.GenerateBenchConfig(repeat=0))


def test_engine_ray_times_the_two_engines_alternating(monkeypatch):
    calls = []

    def fake_child(args):
        calls.append(args[-1])
        return {"images": 12, "seconds": 3.0 if args[-1] == "ray" else 2.0, "driver_rss_mb": 50.0}, 100.0

    monkeypatch.setattr(gs, "_run_child", fake_child)
    monkeypatch.setattr(gs, "prepare_references", lambda config, folder: 2)
    result = gs.run_generate_benchmark(gs.GenerateBenchConfig(repeat=2, engine="ray"))
    assert calls == ["ray", "local"] * 2
    names = ["synthiqa generate --engine ray", "synthiqa generate --engine local"]
    assert [r.name for r in result.rows] == names
    assert result.ratio == pytest.approx(2 / 3) and result.rows[0].driver_rss_mb == 50.0
    with pytest.raises(gs.ConfigError, match="--engine"):
        gs.run_generate_benchmark(gs.GenerateBenchConfig(engine="spark"))
