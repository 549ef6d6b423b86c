"""IQA metrics as pure functions of arrays: correlations, errors, cluster agreement, bootstrap intervals.

The coefficients themselves are ``synthiqa.stats`` (shared with the methods); this module adds the
logistic-fitted values, bootstrap intervals and cluster agreement tables.

Conventions (see ``spec/evaluation.md`` §1.1): SRCC and KRCC on raw scores; PLCC and RMSE both raw and
after a logistic fit (``benchmarks.logistic``). Every value carries a ``mode``:

* ``raw``: computed on the predictions as they are;
* ``4pl`` / ``5pl``: after the logistic fit on the same test set;
* ``raw_fallback``: the logistic fit failed (a warning is issued) and the raw value is reported instead.

Inputs are expected oriented so that higher is better on both sides (``IQARecord.score_norm`` and
predictor outputs); RMSE is on the scale of the target (``score_norm`` in [0, 1] in the harness).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from synthiqa.benchmarks.logistic import LogisticFit, fit_logistic
from synthiqa.stats import _clean, cluster_purity, krcc, plcc, rmse, srcc


@dataclass(frozen=True)
class MetricValue:
    """One number of a results table: metric name, how it was computed, value and 95% interval."""

    metric: str
    mode: str
    value: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap_ci(
    stat: Callable[[np.ndarray, np.ndarray], float],
    pred: np.ndarray,
    true: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(pred, true)`` over resampled pairs (seeded, reproducible)."""
    pred, true = _clean(pred, true)
    if n_boot <= 0 or pred.size < 3:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, pred.size, size=(n_boot, pred.size))
    values = np.array([stat(pred[i], true[i]) for i in idx])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def _fast_srcc(pred: np.ndarray, true: np.ndarray) -> float:
    return plcc(stats.rankdata(pred), stats.rankdata(true))


def quality_metrics(
    pred: np.ndarray,
    true: np.ndarray,
    logistic: str | None = "4pl",
    n_boot: int = 0,
    seed: int = 0,
) -> tuple[list[MetricValue], LogisticFit | None]:
    """SRCC/KRCC (raw), PLCC/RMSE raw and after the logistic fit, with optional bootstrap intervals.

    The bootstrap of the fitted PLCC/RMSE keeps the curve fitted on the full test set fixed (no refit
    per resample), so it measures sampling spread of the test images, not of the fit.

    Returns:
        the metric values and the logistic fit (None when ``logistic`` is None).
    """
    pred, true = _clean(pred, true)
    fns = {"srcc": _fast_srcc, "krcc": krcc, "plcc": plcc, "rmse": rmse}

    def one(name: str, mode: str, x: np.ndarray, boot_seed: int) -> MetricValue:
        value = fns[name](x, true) if name != "srcc" else srcc(x, true)
        lo, hi = bootstrap_ci(fns[name], x, true, n_boot, boot_seed) if n_boot else (np.nan, np.nan)
        return MetricValue(name, mode, value, lo, hi)

    out = [one(name, "raw", pred, seed + i) for i, name in enumerate(("srcc", "krcc", "plcc", "rmse"))]
    fit = None
    if logistic is not None:
        fit = fit_logistic(pred, true, kind=logistic)
        if fit.ok:
            mapped, mode = fit.predict(pred), logistic
        else:
            warnings.warn(f"logistic {logistic} fit failed ({fit.message}); reporting raw PLCC/RMSE",
                          RuntimeWarning, stacklevel=2)
            mapped, mode = pred, "raw_fallback"
        out += [one("plcc", mode, mapped, seed + 10), one("rmse", mode, mapped, seed + 11)]
    return out, fit


def cluster_metrics(clusters: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Purity, normalised mutual information and adjusted Rand index of clusters against labels."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    clusters = np.asarray(clusters)
    labels = np.asarray(labels).astype(str)
    return {
        "purity": cluster_purity(clusters, labels),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
    }


__all__ = ["MetricValue", "bootstrap_ci", "cluster_metrics", "cluster_purity", "krcc", "plcc",
           "quality_metrics", "rmse", "srcc"]
