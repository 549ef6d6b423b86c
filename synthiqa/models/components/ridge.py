"""Ridge regression on frozen features with ARNIQA's alpha search (``test.py: alpha_grid_search``).

Each image carries several feature rows (crops); every crop is a training sample with its image's score,
and an image's prediction is the mean over its crops. The alpha is the one of ``ALPHAS`` with the highest
**median validation SRCC** over reference-disjoint splits. All alphas of a split are solved from one SVD
of the centred training matrix, which gives exactly scikit-learn's ``Ridge(alpha, fit_intercept=True)``
solution for each. With a validation part (the ``intra`` protocol's split), ``validation_alpha`` picks
the alpha with the highest SRCC on that split's validation images, as the published ridge protocol does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from synthiqa.errors import DatasetError

#: ARNIQA's grid: ``np.geomspace(1e-3, 1e3, 100)``.
ALPHAS = np.geomspace(1e-3, 1e3, 100)


@dataclass
class RidgeModel:
    """A fitted ridge: ``predict(x) = x @ coef + intercept``."""

    coef: np.ndarray
    intercept: float
    alpha: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Per-crop predictions of ``[N, D]`` features, or per-image means of ``[N, C, D]`` ones."""
        x = np.asarray(features, dtype=np.float64)
        pred = x @ self.coef + self.intercept
        return pred.mean(1) if x.ndim == 3 else pred


def _flatten(features: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[N, C, D]`` crops and ``[N]`` image scores -> ``[N*C, D]`` rows with repeated scores."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    if x.ndim == 2:
        return x, y
    return x.reshape(-1, x.shape[-1]), np.repeat(y, x.shape[1])


def _svd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD of a finite matrix: LAPACK's divide-and-conquer driver (``gesdd``, NumPy's), and where it
    fails to converge, which it can on finite ill-conditioned matrices, the slower QR driver (``gesvd``)."""
    try:
        return np.linalg.svd(x, full_matrices=False)
    except np.linalg.LinAlgError:
        return scipy.linalg.svd(x, full_matrices=False, lapack_driver="gesvd")


def ridge_path(features: np.ndarray, targets: np.ndarray, alphas: Sequence[float]) -> list[RidgeModel]:
    """Ridge fits (with intercept) for every alpha; ``features`` ``[N, D]`` or ``[N, C, D]`` (crops)."""
    x, y = _flatten(features, targets)
    if x.shape[0] < 2:
        raise DatasetError(f"ridge regression needs at least 2 samples, got {x.shape[0]}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise DatasetError("ridge regression: the features or scores are not finite (NaN or inf)")
    x_mean, y_mean = x.mean(0), y.mean()
    u, s, vt = _svd(x - x_mean)
    uty = u.T @ (y - y_mean)
    models = []
    for alpha in alphas:
        coef = vt.T @ (s / (s**2 + float(alpha)) * uty)
        models.append(RidgeModel(coef, float(y_mean - x_mean @ coef), float(alpha)))
    return models


@dataclass
class ColumnScale:
    """Per-column standardisation ``(x - mean) / std`` learnt on training features (rows of ``[N, D]`` or
    crops of ``[N, C, D]``); columns with no spread keep a std of 1."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> ColumnScale:
        x = np.asarray(features, dtype=np.float64)
        x = x.reshape(-1, x.shape[-1])
        std = x.std(0)
        return cls(x.mean(0), np.where(std > 0, std, 1.0))

    def apply(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, dtype=np.float64) - self.mean) / self.std

    def fold(self, model: RidgeModel) -> RidgeModel:
        """The ridge fitted on standardised features as one on the raw features (same predictions)."""
        coef = model.coef / self.std
        return RidgeModel(coef, float(model.intercept - self.mean @ coef), model.alpha)


def fit_ridge(features: np.ndarray, targets: np.ndarray, alpha: float) -> RidgeModel:
    """One ridge fit (see ``ridge_path``)."""
    return ridge_path(features, targets, [alpha])[0]


@dataclass
class AlphaSearch:
    """Result of ``alpha_grid_search``: the chosen alpha and the median val SRCC of every alpha."""

    alpha: float
    alphas: np.ndarray
    median_srcc: np.ndarray

    @property
    def best_srcc(self) -> float:
        return float(np.nanmax(self.median_srcc))


def alpha_grid_search(features: np.ndarray, targets: np.ndarray,
                      folds: Sequence[tuple[np.ndarray, np.ndarray]],
                      alphas: Sequence[float] = ALPHAS) -> AlphaSearch:
    """ARNIQA's search: for each fold fit every alpha on the train images' crops, predict the val images
    (mean over crops), SRCC against their scores; pick the alpha with the highest median over folds
    (the smallest such alpha on ties)."""
    from scipy.stats import spearmanr

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    alphas_arr = np.asarray(alphas, dtype=np.float64)
    table = np.full((len(folds), len(alphas_arr)), np.nan)
    for f, (train, val) in enumerate(folds):
        if len(train) < 2 or len(val) < 2:
            continue
        for a, model in enumerate(ridge_path(x[train], y[train], alphas_arr)):
            pred = model.predict(x[val])
            if np.ptp(pred) > 0 and np.ptp(y[val]) > 0:
                table[f, a] = spearmanr(pred, y[val]).statistic
    if np.isnan(table).all():
        raise DatasetError("alpha search: no fold had two distinct validation scores")
    median = np.nanmedian(np.where(np.isnan(table).all(0, keepdims=True), -np.inf, table), axis=0)
    best = int(np.argmax(median))
    return AlphaSearch(float(alphas_arr[best]), alphas_arr, median)


def validation_alpha(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                     alphas: Sequence[float] = ALPHAS) -> AlphaSearch:
    """The alpha whose ridge fitted on the training images has the highest SRCC on the validation images
    (the smallest such alpha on ties); features ``[N, D]`` or ``[N, C, D]``."""
    x = np.concatenate([np.asarray(train_x, dtype=np.float64), np.asarray(val_x, dtype=np.float64)])
    y = np.concatenate([np.asarray(train_y, dtype=np.float64), np.asarray(val_y, dtype=np.float64)])
    n = len(train_x)
    return alpha_grid_search(x, y, [(np.arange(n), np.arange(n, len(x)))], alphas)
