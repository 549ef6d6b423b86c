"""The one overall + per-type quality table (``synthiqa.stats.quality_table``): hand-computed numbers,
and every caller (``synthiqa evaluate``, the suite rows, CENIQA/TRCNN and ARNIQA test reports) reports it."""

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from synthiqa.benchmarks.evaluation import evaluate_predictions
from synthiqa.benchmarks.suite import _quality_rows
from synthiqa.datasets.records import IQARecord
from synthiqa.models.arniqa.method import _metrics as arniqa_metrics
from synthiqa.models.inference import Outputs, evaluate_outputs
from synthiqa.stats import quality_summary, quality_table, raw_metric_set

# blur: images 0-2 (2 is a blur>noise chain), noise: 2-4, jpeg: one image (a small row), 6 is pristine.
TYPES = ["blur", "blur", "blur>noise", "noise", "noise", "jpeg", "pristine"]
PRED = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
TRUE = np.array([1.0, 3.0, 2.0, 1.0, 0.0, 6.0, 7.0])
# blur: pred 1 2 3 vs true 1 3 2; noise: pred 3 4 5 vs true 2 1 0 (worked by hand).
BLUR = {"srcc": 0.5, "krcc": 1 / 3, "plcc": 0.5, "rmse": math.sqrt(2 / 3), "n": 3}
NOISE = {"srcc": -1.0, "krcc": -1.0, "plcc": -1.0, "rmse": math.sqrt(35 / 3), "n": 3}


def _records() -> list[IQARecord]:
    return [IQARecord(image=Path(f"{i}.png"), score=float(t), score_norm=float(t), dist_type=d)
            for i, (t, d) in enumerate(zip(TRUE, TYPES, strict=True))]


def _close(got: dict, want: dict) -> None:
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_table_matches_hand_computed_numbers():
    rows = quality_table(PRED, TRUE, TYPES)
    assert [r.dist_type for r in rows] == ["all", "blur", "jpeg", "noise"]
    assert [r.size for r in rows] == [7, 3, 1, 3]
    _close(rows[1].metrics, BLUR)
    _close(rows[3].metrics, NOISE)
    assert rows[2].metrics is None and rows[2].n == 1  # under MIN_N: only its n
    overall = rows[0].metrics
    assert overall["n"] == 7
    assert overall["srcc"] == pytest.approx(stats.spearmanr(PRED, TRUE)[0])
    assert overall["krcc"] == pytest.approx(stats.kendalltau(PRED, TRUE)[0])
    assert overall["rmse"] == pytest.approx(np.sqrt(np.mean((PRED - TRUE) ** 2)))


def test_table_counts_finite_targets_and_checks_lengths():
    true = TRUE.copy()
    true[0] = np.nan
    rows = quality_table(PRED, true, TYPES)
    assert rows[0].n == 6 and rows[0].size == 7 and rows[0].metrics["n"] == 6
    assert rows[1].n == 2 and rows[1].metrics is None
    with pytest.raises(ValueError, match="differ in length"):
        quality_table(PRED, TRUE, TYPES[:-1])


def test_summary_shape():
    summary = quality_summary(quality_table(PRED, TRUE, TYPES))
    assert summary["per_type"]["jpeg"] == {"n": 1, "small": True}
    _close(summary["per_type"]["blur"], BLUR)
    assert summary["srcc"] == quality_table(PRED, TRUE, TYPES)[0].metrics["srcc"]


def test_evaluate_command_table_is_the_one_table():
    result = evaluate_predictions(_records(), PRED, logistic=None)
    _close(result["per_type"]["blur"], BLUR)
    _close(result["per_type"]["noise"], NOISE)
    assert result["per_type"]["jpeg"] == {"n": 1, "small": True}
    _close(result, raw_metric_set(PRED, TRUE))


def test_suite_rows_are_the_one_table():
    rows = _quality_rows(PRED, _records(), None, 0, 0, "test")
    got = {(r["dist_type"], r["metric"]): r["value"] for r in rows}
    assert {t for t, _ in got} == {"all", "blur", "noise"}  # the small jpeg row is left out
    for name, want in (("blur", BLUR), ("noise", NOISE)):
        for metric in ("srcc", "krcc", "plcc", "rmse"):
            assert got[(name, metric)] == pytest.approx(want[metric], abs=1e-12)
    assert {r["n"] for r in rows if r["dist_type"] == "blur"} == {3}


def test_model_reports_are_the_one_table():
    names = sorted({t for t in TYPES if t != "pristine"})
    ids = np.array([names.index(t) if t in names else -1 for t in TYPES])
    out = Outputs(PRED, None, np.zeros((7, 2)), {"score": TRUE, "type": ids})
    want = quality_summary(quality_table(PRED, TRUE, TYPES))
    for got in (evaluate_outputs(out, names), arniqa_metrics(PRED, _records())):
        _close(got["per_type"]["blur"], BLUR)
        _close(got["per_type"]["noise"], NOISE)
        assert got["per_type"]["jpeg"] == want["per_type"]["jpeg"]
        _close(got, {k: v for k, v in want.items() if k != "per_type"})
