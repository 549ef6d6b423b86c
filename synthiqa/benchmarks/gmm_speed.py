"""Fit time and agreement of synthiqa's torch ``GaussianMixture`` against scikit-learn's.

For each data size (N samples x D features, synthetic anisotropic blobs with ``n_components`` true
clusters), covariance type and torch dtype: synthiqa initialises (k-means++ seeding + Lloyd steps, timed
separately as ``init_s``), scikit-learn receives exactly that state (``weights_init``, ``means_init``,
``precisions_init``, so it skips its own k-means), and both run EM with the same ``max_iter`` and ``tol``.
scikit-learn always computes in float64. Reported: wall time of each EM fit (the fastest of ``repeats``
runs), iterations, the speed-up per EM iteration (iteration counts can differ by one or two in float32),
and the mean log-likelihood and BIC of both fits with their relative differences.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from synthiqa.atomic import atomic_write_text
from synthiqa.devices import resolve_device
from synthiqa.errors import ConfigError
from synthiqa.models.components.gmm import COVARIANCE_TYPES, GaussianMixture

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class GMMSpeedConfig:
    """What to time: ``sizes`` are (N, D) pairs; ``threads`` caps torch and BLAS threads (None: defaults)."""

    sizes: tuple[tuple[int, int], ...] = ((20_000, 32), (20_000, 128), (200_000, 32), (200_000, 128))
    n_components: int = 8
    covariance_types: tuple[str, ...] = ("diag", "full")
    dtypes: tuple[str, ...] = ("float32", "float64")
    device: str = "cpu"
    max_iter: int = 100
    tol: float = 1e-3
    repeats: int = 1
    threads: int | None = None
    seed: int = 0


@dataclass
class GMMSpeedRow:
    """One (size, covariance, dtype) comparison. Times in seconds, log-likelihoods in nats per sample."""

    n: int
    d: int
    covariance_type: str
    dtype: str
    device: str
    init_s: float
    torch_s: float
    sklearn_s: float
    torch_iter: int
    sklearn_iter: int
    torch_loglik: float
    sklearn_loglik: float
    torch_bic: float
    sklearn_bic: float

    @property
    def speedup_per_iter(self) -> float:
        return (self.sklearn_s / self.sklearn_iter) / max(self.torch_s / self.torch_iter, 1e-12)

    @property
    def loglik_rel_diff(self) -> float:
        return abs(self.torch_loglik - self.sklearn_loglik) / abs(self.sklearn_loglik)

    @property
    def bic_rel_diff(self) -> float:
        return abs(self.torch_bic - self.sklearn_bic) / abs(self.sklearn_bic)


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """``"20000x32,200000x128"`` -> ((20000, 32), (200000, 128)); one-line error otherwise."""
    sizes = []
    for part in text.split(","):
        try:
            n, d = (int(v) for v in part.strip().lower().split("x"))
        except ValueError:
            raise ConfigError(f"--sizes: {part.strip()!r} is not NxD (e.g. 20000x32)") from None
        if n < 1 or d < 1:
            raise ConfigError(f"--sizes: {part.strip()!r} must have N, D >= 1")
        sizes.append((n, d))
    return tuple(sizes)


def make_blobs_data(n: int, d: int, k: int, seed: int) -> np.ndarray:
    """``[n, d]`` float64: ``k`` overlapping Gaussian clusters, then a random linear mix of the axes.

    Centres are drawn with standard deviation ``2 / sqrt(d)`` per axis (about 2.8 cluster widths apart),
    per-axis scales in [0.9, 1.1]: the clusters overlap, as learned image features do, so EM needs
    tens of iterations rather than the one or two of well separated blobs.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    centres = rng.normal(0.0, 2.0 / np.sqrt(d), (k, d))
    scales = rng.uniform(0.9, 1.1, (k, d))
    x = centres[labels] + rng.standard_normal((n, d)) * scales[labels]
    mix = np.eye(d) + 0.2 * rng.standard_normal((d, d)) / np.sqrt(d)
    return x @ mix


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _check(config: GMMSpeedConfig) -> None:
    for cov in config.covariance_types:
        if cov not in COVARIANCE_TYPES:
            raise ConfigError(f"--cov: {cov!r} is not one of {', '.join(COVARIANCE_TYPES)}")
    for dt in config.dtypes:
        if dt not in DTYPES:
            raise ConfigError(f"--dtype: {dt!r} is not one of {', '.join(DTYPES)}")
    resolve_device(config.device)  # one-line error for an unknown device or CUDA without a GPU
    for n, _ in config.sizes:
        if n < config.n_components:
            raise ConfigError(f"--sizes: N={n} is smaller than --k {config.n_components}")


def run_gmm_speed(config: GMMSpeedConfig, progress: Callable[[str], None] | None = None) -> list[GMMSpeedRow]:
    """Time and compare both fits for every configuration; see the module docstring."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture as SkGaussianMixture
    from threadpoolctl import threadpool_limits

    _check(config)
    rows: list[GMMSpeedRow] = []
    old_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        with threadpool_limits(limits=config.threads), warnings.catch_warnings():
            warnings.simplefilter("ignore", (ConvergenceWarning, RuntimeWarning))
            for n, d in config.sizes:
                x = make_blobs_data(n, d, config.n_components, config.seed)
                for cov in config.covariance_types:
                    for dt in config.dtypes:
                        if progress is not None:
                            progress(f"N={n} D={d} {cov} {dt}")
                        rows.append(_one(x, cov, dt, config, SkGaussianMixture))
    finally:
        torch.set_num_threads(old_threads)
    return rows


def _one(x: np.ndarray, cov: str, dt: str, config: GMMSpeedConfig, sk_class: type) -> GMMSpeedRow:
    xt = torch.tensor(x, dtype=DTYPES[dt], device=config.device)
    gm = GaussianMixture(config.n_components, covariance_type=cov, max_iter=config.max_iter, tol=config.tol,
                         seed=config.seed, dtype=DTYPES[dt])
    init_s = torch_s = sklearn_s = float("inf")
    for _ in range(max(1, config.repeats)):
        _sync(config.device)
        t0 = time.perf_counter()
        gm.initialize(xt)
        _sync(config.device)
        init_s = min(init_s, time.perf_counter() - t0)
        sk = sk_class(config.n_components, covariance_type=cov, max_iter=config.max_iter, tol=config.tol,
                      **gm.sklearn_init())
        t0 = time.perf_counter()
        gm.fit(xt, warm_start=True)
        _sync(config.device)
        torch_s = min(torch_s, time.perf_counter() - t0)
        t0 = time.perf_counter()
        sk.fit(x)
        sklearn_s = min(sklearn_s, time.perf_counter() - t0)
    n, d = x.shape
    return GMMSpeedRow(n=n, d=d, covariance_type=cov, dtype=dt, device=config.device, init_s=init_s,
                       torch_s=torch_s, sklearn_s=sklearn_s, torch_iter=gm.n_iter_, sklearn_iter=sk.n_iter_,
                       torch_loglik=gm.score(xt), sklearn_loglik=float(sk.score(x)), torch_bic=gm.bic(xt),
                       sklearn_bic=float(sk.bic(x)))


def write_gmm_speed_json(rows: Sequence[GMMSpeedRow], config: GMMSpeedConfig, path: str) -> None:
    """Config and rows (with the derived ratios) as JSON, written atomically."""
    out = {"config": asdict(config), "torch_version": torch.__version__,
           "rows": [{**asdict(r), "speedup_per_iter": r.speedup_per_iter,
                     "loglik_rel_diff": r.loglik_rel_diff, "bic_rel_diff": r.bic_rel_diff} for r in rows]}
    atomic_write_text(path, json.dumps(out, indent=2))
