"""Agreement of predictions with targets as pure functions of arrays: SRCC, KRCC, PLCC, RMSE, cluster
purity, and the one overall + per-distortion-type quality table.

The one implementation of each coefficient and of the table. ``quality_table`` cuts the groups (all images,
then each distortion type, a chain counting towards each type it contains) and computes a metric set on
each; the metric set is a parameter, so the methods' test reports (raw ``raw_metric_set``: the
learned-IQA convention, the network regresses the normalised score) and the benchmark harness
(``synthiqa.benchmarks``: logistic-fitted PLCC/RMSE, bootstrap intervals) share the groups and the
coefficients while the protocol chooses the fit. Inputs are oriented higher-is-better on both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats


def _clean(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64).ravel()
    true = np.asarray(true, dtype=np.float64).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"predictions and targets differ in length: {pred.size} vs {true.size}")
    return pred, true


def _degenerate(pred: np.ndarray, true: np.ndarray) -> bool:
    return pred.size < 2 or np.ptp(pred) == 0 or np.ptp(true) == 0


def srcc(pred: np.ndarray, true: np.ndarray) -> float:
    """Spearman rank correlation; NaN when either side is constant or has fewer than 2 values."""
    pred, true = _clean(pred, true)
    return float("nan") if _degenerate(pred, true) else float(stats.spearmanr(pred, true)[0])


def krcc(pred: np.ndarray, true: np.ndarray) -> float:
    """Kendall rank correlation (tau-b); NaN when degenerate."""
    pred, true = _clean(pred, true)
    return float("nan") if _degenerate(pred, true) else float(stats.kendalltau(pred, true)[0])


def plcc(pred: np.ndarray, true: np.ndarray) -> float:
    """Pearson linear correlation; NaN when degenerate."""
    pred, true = _clean(pred, true)
    return float("nan") if _degenerate(pred, true) else float(stats.pearsonr(pred, true)[0])


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Root mean squared error, in the units of ``true``."""
    pred, true = _clean(pred, true)
    return float(np.sqrt(np.mean((pred - true) ** 2))) if pred.size else float("nan")


def cluster_purity(clusters: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of items whose label is the majority label of their cluster (1.0 = every cluster pure)."""
    clusters = np.asarray(clusters)
    labels = np.asarray(labels)
    if clusters.size == 0:
        return float("nan")
    total = 0
    for c in np.unique(clusters):
        _, counts = np.unique(labels[clusters == c], return_counts=True)
        total += int(counts.max())
    return total / clusters.size


#: Fewest images (finite pairs) a per-type row is computed on; smaller rows keep only their ``n``.
MIN_N = 3
PRISTINE = "pristine"

#: A metric set: ``(pred, true) -> {name: value}`` on one group's images.
MetricSet = Callable[[np.ndarray, np.ndarray], dict[str, Any]]


def type_members(value: str | None) -> list[str]:
    """The types (or groups) of a record: one name, or each step of a ``>``-joined chain, once each;
    none for pristine or unlabelled images."""
    if not value or value == PRISTINE:
        return []
    return list(dict.fromkeys(v.strip() for v in value.split(">") if v.strip()))


def raw_metric_set(pred: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    """``srcc``, ``krcc``, ``plcc`` and ``rmse`` on the raw predictions and ``n``, over finite pairs."""
    pred, true = _clean(pred, true)
    ok = np.isfinite(pred) & np.isfinite(true)
    p, t = pred[ok], true[ok]
    return {"srcc": srcc(p, t), "krcc": krcc(p, t), "plcc": plcc(p, t), "rmse": rmse(p, t), "n": int(p.size)}


@dataclass(frozen=True)
class QualityRow:
    """One row of a quality table: ``dist_type`` (``all`` or a type name), ``size`` (images in the group),
    ``n`` (those with a finite target) and ``metrics`` (None for a per-type row with ``n < min_n``)."""

    dist_type: str
    size: int
    n: int
    metrics: dict[str, Any] | None


def quality_table(pred: np.ndarray, true: np.ndarray, types: Sequence[str | None],
                  metric_set: MetricSet = raw_metric_set, min_n: int = MIN_N,
                  overall: MetricSet | None = None) -> list[QualityRow]:
    """The overall row (``all``, always computed) then one row per distortion type in name order.

    Args:
        pred: ``[N]`` predictions, higher is better.
        true: ``[N]`` targets (NaN where unknown), higher is better.
        types: each image's distortion type (or group): a name, a ``>``-joined chain, or None/pristine.
        metric_set: the numbers of a row (``raw_metric_set``, or the harness's logistic-fitted set).
        min_n: fewest finite pairs a per-type row is computed on.
        overall: the overall row's metric set where it differs (the harness bootstraps that row only);
            ``metric_set`` by default.
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if len(types) != pred.size:
        raise ValueError(f"types and predictions differ in length: {len(types)} vs {pred.size}")
    finite = np.isfinite(true)
    rows = [QualityRow("all", int(pred.size), int(finite.sum()), (overall or metric_set)(pred, true))]
    members = [type_members(v) for v in types]
    for name in sorted({m for ms in members for m in ms}):
        mask = np.array([name in ms for ms in members])
        n = int((mask & finite).sum())
        rows.append(QualityRow(name, int(mask.sum()), n, metric_set(pred[mask], true[mask]) if n >= min_n
                               else None))
    return rows


def quality_summary(rows: Sequence[QualityRow]) -> dict[str, Any]:
    """A table as one dict: the overall row's metrics at top level, ``per_type`` (``{name: metrics}``;
    a small row is ``{"n": n, "small": True}``) when there are types."""
    out: dict[str, Any] = dict(rows[0].metrics or {})
    per_type = {r.dist_type: dict(r.metrics) if r.metrics is not None else {"n": r.n, "small": True}
                for r in rows[1:]}
    if per_type:
        out["per_type"] = per_type
    return out
