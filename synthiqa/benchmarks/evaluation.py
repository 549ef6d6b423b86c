"""``synthiqa evaluate``: a model's scores on a dataset, with the benchmark harness's metric set.

Overall: SRCC and KRCC on the raw scores, PLCC and RMSE raw and after the logistic fit (``4pl`` by
default; the mode is stored), against the dataset's normalised score in [0, 1]. Per distortion type and
per distortion group: the same numbers for every type with at least ``min_n`` images; a chain counts
towards each type (and group) it contains, so a chains set gives one row per type, not one per chain.
Rows under ``min_n`` keep their ``n`` and are marked ``small`` (their correlations are not computed).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from synthiqa.benchmarks.metrics import quality_metrics
from synthiqa.datasets.records import IQARecord
from synthiqa.models.inference import cluster_summary
from synthiqa.stats import MIN_N, quality_summary, quality_table, type_members


def metric_set(pred: np.ndarray, true: np.ndarray, logistic: str | None = "4pl") -> dict[str, Any]:
    """``srcc``, ``krcc``, ``plcc`` / ``rmse`` (raw), ``plcc_fit`` / ``rmse_fit`` and ``fit_mode`` (the
    logistic's kind, ``raw_fallback`` when it failed), ``n``; finite pairs only."""
    ok = np.isfinite(pred) & np.isfinite(true)
    with warnings.catch_warnings():  # a failed fit is recorded as fit_mode raw_fallback
        warnings.simplefilter("ignore", RuntimeWarning)
        values, _ = quality_metrics(pred[ok], true[ok], logistic)
    out: dict[str, Any] = {"n": int(ok.sum())}
    for v in values:
        key = v.metric if v.mode == "raw" else f"{v.metric}_fit"
        out[key] = float(v.value)
        if v.mode != "raw":
            out["fit_mode"] = v.mode
    out["mse"] = out["rmse"] ** 2
    return out


def evaluate_predictions(records: Sequence[IQARecord], pred: np.ndarray, clusters: np.ndarray | None = None,
                         logistic: str | None = "4pl", min_n: int = MIN_N) -> dict[str, Any]:
    """The quality table (``synthiqa.stats.quality_table``) with ``metric_set``: overall metrics, then
    ``per_type`` and ``per_group`` and, with ``clusters``, the active clusters and their purity against
    the distortion groups (single-group images)."""
    true = np.array([math.nan if r.score_norm is None else r.score_norm for r in records], dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    fitted = functools.partial(metric_set, logistic=logistic)
    result = quality_summary(quality_table(pred, true, [r.dist_type for r in records], fitted, min_n))
    result["min_n"] = int(min_n)
    per_group = quality_summary(quality_table(pred, true, [r.dist_group for r in records], fitted, min_n,
                                              overall=lambda p, t: {})).get("per_type")
    if per_group:
        result["per_group"] = per_group
    if clusters is not None:
        groups = [type_members(r.dist_group) for r in records]
        names = sorted({g[0] for g in groups if len(g) == 1})
        ids = np.array([names.index(g[0]) if len(g) == 1 else -1 for g in groups])
        posteriors = np.eye(int(clusters.max()) + 1)[clusters] if len(clusters) else None
        result.update(cluster_summary(posteriors, ids))
    return result


__all__ = ["MIN_N", "evaluate_predictions", "metric_set"]
