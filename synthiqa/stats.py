"""Agreement of predictions with targets as pure functions of arrays: SRCC, KRCC, PLCC, RMSE, cluster purity.

The one implementation of each coefficient. The benchmark harness (``synthiqa.benchmarks.metrics``) builds
its tables on these (logistic fits, bootstrap intervals, per-type rows); the methods use them to select
checkpoints on validation. Inputs are oriented higher-is-better on both sides.
"""

from __future__ import annotations

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
