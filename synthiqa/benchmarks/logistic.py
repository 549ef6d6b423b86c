"""Monotonic logistic mapping of objective scores onto subjective ones (VQEG 4-parameter, Sheikh 5-parameter).

The fit runs on z-scored predictions (``z = (x - mean) / std``) with ``maxfev >= 1e4``, which removes the
convergence failures of the common ``p0``/default-``maxfev`` recipe. When the fit still fails, the caller
gets ``ok=False`` and the identity mapping, and must report the raw value (``mode='raw_fallback'``).

Both sides are oriented higher-is-better in the harness, so by default the 4PL curve is constrained to be
non-decreasing (``b1 >= b2``): a model that ranks images backwards cannot earn a high fitted PLCC from a
falling curve. ``increasing=None`` fits freely (VQEG/SIQP practice, where the sign follows the data).

* 4PL (VQEG): ``y = (b1 - b2) / (1 + exp(-(z - b3) / |b4|)) + b2``
* 5PL (Sheikh et al. 2006): ``y = b1 * (0.5 - 1 / (1 + exp(b2 * (z - b3)))) + b4 * z + b5``
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

LOGISTIC_KINDS = ("4pl", "5pl")


def logistic4(z: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic; ``b1``/``b2`` are the upper/lower asymptotes, ``b3`` the midpoint."""
    return (b1 - b2) / (1.0 + np.exp(np.clip(-(z - b3) / (abs(b4) + 1e-12), -700, 700))) + b2


def logistic5(z: np.ndarray, b1: float, b2: float, b3: float, b4: float, b5: float) -> np.ndarray:
    """Sheikh et al. (2006) 5-parameter logistic with a linear term."""
    return b1 * (0.5 - 1.0 / (1.0 + np.exp(np.clip(b2 * (z - b3), -700, 700)))) + b4 * z + b5


@dataclass
class LogisticFit:
    """A fitted mapping from raw predictions ``x`` to the subjective scale.

    Attributes:
        kind: ``4pl`` or ``5pl``.
        params: fitted parameters (in z-space), empty when ``ok`` is False.
        x_mean, x_std: z-scoring constants of the predictions the curve was fitted on.
        ok: False when the fit failed; ``predict`` is then the identity on ``x``.
        message: why the fit failed, or ''.
    """

    kind: str
    params: list[float] = field(default_factory=list)
    x_mean: float = 0.0
    x_std: float = 1.0
    ok: bool = True
    message: str = ""

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if not self.ok:
            return x
        z = (x - self.x_mean) / self.x_std
        fn = logistic4 if self.kind == "4pl" else logistic5
        return fn(z, *self.params)


def fit_logistic(x: np.ndarray, y: np.ndarray, kind: str = "4pl", maxfev: int = 20000,
                 increasing: bool | None = True) -> LogisticFit:
    """Fit ``y ≈ f(z(x))`` by least squares; never raises on a failed fit (returns ``ok=False``).

    Args:
        increasing: True constrains the 4PL curve to be non-decreasing (``b1 >= b2``); None leaves it
            free. The 5PL form is always fitted freely.
    """
    if kind not in LOGISTIC_KINDS:
        raise ValueError(f"logistic kind must be one of {LOGISTIC_KINDS}, got {kind!r}")
    if maxfev < 10_000:
        raise ValueError("maxfev must be at least 1e4")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.size < len(kind) + 1:
        return LogisticFit(kind, ok=False, message=f"need more than {kind[0]} points, got {x.size}")
    mean, std = float(x.mean()), float(x.std())
    if not np.isfinite(std) or std == 0.0:
        return LogisticFit(kind, ok=False, message="predictions are constant")
    z = (x - mean) / std
    rising = np.corrcoef(z, y)[0, 1] >= 0 if y.std() > 0 else True
    hi, lo = float(y.max()), float(y.min())
    if kind == "4pl":
        fn, p0 = logistic4, [hi, lo, 0.0, 1.0] if rising else [lo, hi, 0.0, 1.0]
    else:
        span = hi - lo
        fn, p0 = logistic5, [span if rising else -span, 1.0, 0.0, 0.0, float(y.mean())]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            if kind == "4pl" and increasing:
                params = _fit_rising4(z, y, hi, lo, maxfev)
            else:
                params, _ = curve_fit(fn, z, y, p0=p0, maxfev=maxfev)
    except (RuntimeError, ValueError) as exc:
        return LogisticFit(kind, x_mean=mean, x_std=std, ok=False, message=str(exc).splitlines()[0])
    if not np.all(np.isfinite(params)):
        return LogisticFit(kind, x_mean=mean, x_std=std, ok=False, message="non-finite parameters")
    return LogisticFit(kind, [float(p) for p in params], mean, std)


def _fit_rising4(z: np.ndarray, y: np.ndarray, hi: float, lo: float, maxfev: int) -> np.ndarray:
    """4PL with ``b1 = b2 + d``, ``d >= 0`` and ``b4 > 0`` (bounded trust-region least squares)."""

    def rising(t: np.ndarray, b2: float, d: float, b3: float, b4: float) -> np.ndarray:
        return logistic4(t, b2 + d, b2, b3, b4)

    span = max(hi - lo, 1e-6)
    p0 = [lo, span, 0.0, 1.0]
    bounds = ([-np.inf, 0.0, -np.inf, 1e-6], [np.inf, np.inf, np.inf, np.inf])
    (b2, d, b3, b4), _ = curve_fit(rising, z, y, p0=p0, bounds=bounds, max_nfev=maxfev)
    return np.array([b2 + d, b2, b3, b4])
