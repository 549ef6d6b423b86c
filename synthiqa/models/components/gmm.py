"""A Gaussian mixture in torch: batched EM on the data's device, soft assignments usable end to end.

``GaussianMixture`` follows scikit-learn's ``GaussianMixture`` definitions exactly (M-step with
``10 * eps`` added to the component masses, ``reg_covar`` added to the covariance diagonal, convergence
when the mean log-likelihood changes by less than ``tol``, ``score`` / ``bic`` / ``aic`` and the parameter
count), so the same data and the same initial parameters give the same fit. The differences are the
execution (torch, float32 by default, matrix products over the whole batch, or for full covariances over
cache-sized blocks of rows; no Python loop over samples) and two safeguards scikit-learn lacks: data are
centred internally before the quadratic forms (less cancellation in float32) and a full covariance that is
not positive definite gets diagonal jitter instead of an error. Degenerate fits behave as in scikit-learn:
a component that receives no samples keeps weight ~0 and covariance ``reg_covar`` (``warn_on_collapse``
reports such collapse; it is not reseeded).

Shapes: ``x`` is ``[N, D]`` (N samples, D features), ``K = n_components``. Log-likelihoods are natural logs
of the density (nats), per sample.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from synthiqa.errors import ConfigError, SynthiqaError

_LOG_2PI = math.log(2.0 * math.pi)
COVARIANCE_TYPES = ("diag", "full")
INIT_METHODS = ("kmeans++", "random")
# full-covariance E-step: values per block of rows (cache-sized on CPU, large on accelerators)
_BLOCK_ELEMENTS = {"cpu": 1 << 18, "other": 1 << 24}
_M_BLOCK_ELEMENTS = {"cpu": 1 << 16, "other": 1 << 26}  # full-covariance M-step, per block of rows


class ClusterCollapseWarning(UserWarning):
    """Fewer mixture components hold a share of the data than were asked for."""


class GaussianMixture(nn.Module):
    """Gaussian mixture fitted by EM in torch; parameters are buffers (saved in ``state_dict``).

    Args:
        n_components: K, number of components (>= 1).
        covariance_type: ``"diag"`` (``covariances_`` is ``[K, D]``) or ``"full"`` (``[K, D, D]``).
        reg_covar: added to every covariance diagonal (units of the features squared), >= 0.
        max_iter: most EM iterations per ``fit``.
        tol: convergence threshold on the change of the mean log-likelihood per sample (nats).
        init: ``"kmeans++"`` (k-means++ seeding, then up to ``kmeans_iter`` Lloyd steps, then one
            M-step on the hard labels), ``"random"`` (random responsibilities, as scikit-learn's
            ``init_params="random"``), or a ``[K, D]`` tensor/array of initial means (weights and
            covariances from the hard assignment to the nearest given mean).
        kmeans_iter: most Lloyd iterations for ``"kmeans++"``.
        seed: seed of the CPU generator used by the initialisation.
        dtype: ``torch.float32`` (fast) or ``torch.float64`` (scikit-learn's precision).

    Fitted buffers: ``weights_ [K]`` (sum 1), ``means_ [K, D]``, ``covariances_``, ``precisions_cholesky_``
    (same shape as ``covariances_``; for full, ``P`` with ``P @ P.T`` the precision matrix).
    Attributes after ``fit``: ``converged_``, ``n_iter_``, ``lower_bound_`` (mean log-likelihood, nats).
    """

    weights_: torch.Tensor
    means_: torch.Tensor
    covariances_: torch.Tensor
    precisions_cholesky_: torch.Tensor
    shift_: torch.Tensor

    def __init__(
        self,
        n_components: int = 8,
        covariance_type: str = "diag",
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        tol: float = 1e-3,
        init: str | torch.Tensor | np.ndarray = "kmeans++",
        kmeans_iter: int = 20,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if int(n_components) < 1:
            raise ConfigError(f"n_components must be >= 1, got {n_components}")
        if covariance_type not in COVARIANCE_TYPES:
            raise ConfigError(f"covariance_type must be one of {', '.join(COVARIANCE_TYPES)}, "
                              f"got {covariance_type!r}")
        if reg_covar < 0:
            raise ConfigError(f"reg_covar must be >= 0, got {reg_covar}")
        if int(max_iter) < 1:
            raise ConfigError(f"max_iter must be >= 1, got {max_iter}")
        if dtype not in (torch.float32, torch.float64):
            raise ConfigError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if isinstance(init, str):
            if init not in INIT_METHODS:
                raise ConfigError(f"init must be one of {', '.join(INIT_METHODS)} "
                                  f"or a [K, D] array of means, got {init!r}")
            self.init_means: torch.Tensor | None = None
        else:
            self.init_means = torch.as_tensor(np.asarray(init) if not torch.is_tensor(init) else init)
            if self.init_means.ndim != 2 or self.init_means.shape[0] != int(n_components):
                raise ConfigError(f"init means must have shape [{n_components}, D], "
                                  f"got {tuple(self.init_means.shape)}")
        self.n_components = int(n_components)
        self.covariance_type = covariance_type
        self.reg_covar = float(reg_covar)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.init = init if isinstance(init, str) else "means"
        self.kmeans_iter = int(kmeans_iter)
        self.seed = int(seed)
        self.dtype = dtype
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "shift_"):
            self.register_buffer(name, torch.empty(0, dtype=dtype))
        self.converged_ = False
        self.n_iter_ = 0
        self.lower_bound_ = -math.inf

    # ------------------------------------------------------------------ state
    @property
    def fitted(self) -> bool:
        return self.means_.numel() > 0

    @property
    def n_features(self) -> int:
        return int(self.means_.shape[1]) if self.fitted else 0

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        # Buffers start empty; take the saved shapes so that a fitted mixture loads into a fresh module.
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "shift_"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, dtype=self.dtype, device=self.means_.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (f"n_components={self.n_components}, covariance_type={self.covariance_type!r}, "
                f"n_features={self.n_features}, dtype={self.dtype}")

    def _check_x(self, x: torch.Tensor | np.ndarray, fitting: bool = False) -> torch.Tensor:
        if not torch.is_tensor(x):
            x = torch.as_tensor(np.asarray(x))
        if x.ndim != 2:
            raise SynthiqaError(f"GaussianMixture expects features of shape [N, D], got {tuple(x.shape)}")
        if fitting:
            if x.shape[0] < self.n_components:
                raise SynthiqaError(f"GaussianMixture: {x.shape[0]} samples cannot fit "
                                    f"{self.n_components} components")
            if not bool(torch.isfinite(x).all()):
                raise SynthiqaError("GaussianMixture: features contain NaN or infinite values")
        elif not self.fitted:
            raise SynthiqaError("GaussianMixture is not fitted; call fit(x) first")
        elif x.shape[1] != self.n_features:
            raise SynthiqaError(f"GaussianMixture was fitted on {self.n_features} features, got {x.shape[1]}")
        # the buffers' dtype wins over ``dtype`` if the module was converted with ``.to(dtype)``
        return x.to(self.means_.dtype if self.fitted and not fitting else self.dtype)

    # ------------------------------------------------------------ EM steps (x already centred by shift_)
    def _m_step(self, xc: torch.Tensor, resp: torch.Tensor, xc2: torch.Tensor | None = None,
                means_c: torch.Tensor | None = None) -> None:
        """Weights, means and covariances from responsibilities ``resp [N, K]`` (rows sum to 1).

        ``means_c [K, D]`` (centred) fixes the means instead of estimating them; covariances are taken
        around them.
        """
        nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps
        avg_x = (resp.T @ xc) / nk[:, None]
        means_c = avg_x if means_c is None else means_c
        if self.covariance_type == "diag":
            xc2 = xc * xc if xc2 is None else xc2
            cov = (resp.T @ xc2) / nk[:, None] - 2.0 * means_c * avg_x + means_c * means_c + self.reg_covar
            # float32 cancellation can leave tiny negatives where a component has (almost) no spread
            cov = cov.clamp_min(max(self.reg_covar, torch.finfo(self.dtype).tiny))
            prec_chol = cov.rsqrt()
        else:
            d = xc.shape[1]
            # sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T by blocks of rows, in two reused buffers
            n = xc.shape[0]
            rows = max(1, _M_BLOCK_ELEMENTS["cpu" if xc.device.type == "cpu" else "other"] // d)
            diff, weighted = xc.new_empty(min(rows, n), d), xc.new_empty(min(rows, n), d)
            cov = xc.new_zeros(self.n_components, d, d)
            for start in range(0, n, rows):
                blk, r_blk = xc[start : start + rows], resp[start : start + rows]
                m = blk.shape[0]
                for k in range(self.n_components):
                    torch.sub(blk, means_c[k], out=diff[:m])
                    torch.mul(diff[:m], r_blk[:, k, None], out=weighted[:m])
                    cov[k].addmm_(weighted[:m].T, diff[:m])
            cov = cov / nk[:, None, None] + self.reg_covar * torch.eye(d, dtype=cov.dtype, device=cov.device)
            cov, prec_chol = _full_precision_cholesky(cov, self.reg_covar)
        self.weights_ = nk / nk.sum()
        self.means_ = means_c + self.shift_
        self.covariances_ = cov
        self.precisions_cholesky_ = prec_chol

    def _log_gaussian(self, xc: torch.Tensor, xc2: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, K]`` log N(x_n | mu_k, Sigma_k) in nats from centred ``xc = x - shift_`` (differentiable).

        ``xc2 = xc * xc`` may be passed (diag) to reuse it across EM iterations.
        """
        means_c = self.means_ - self.shift_
        d = xc.shape[1]
        k = self.n_components
        pc = self.precisions_cholesky_
        if self.covariance_type == "diag":
            prec = pc * pc
            xc2 = xc * xc if xc2 is None else xc2
            maha = (xc2 @ prec.T - 2.0 * (xc @ (means_c * prec).T) + (means_c * means_c * prec).sum(1))
            maha = maha.clamp_min(0.0)
            log_det = torch.log(pc).sum(1)
        else:
            # |(x - mu_k) P_k|^2 for all k with one matrix product per block of rows: [rows, D] @ [D, K*D]
            p_all = pc.permute(1, 0, 2).reshape(d, k * d)
            mu_p = torch.einsum("kd,kde->ke", means_c, pc)
            n = xc.shape[0]
            rows = max(1, _BLOCK_ELEMENTS["cpu" if xc.device.type == "cpu" else "other"] // (k * d))
            if torch.is_grad_enabled() and (xc.requires_grad or pc.requires_grad):
                maha = torch.cat([((blk @ p_all).view(-1, k, d) - mu_p).square().sum(-1)
                                  for blk in xc.split(rows)])
            else:  # in place, in one reused buffer
                maha = xc.new_empty(n, k)
                buf = xc.new_empty(min(rows, n), k * d)
                for start in range(0, n, rows):
                    blk = xc[start : start + rows]
                    y = torch.mm(blk, p_all, out=buf[: blk.shape[0]]).view(-1, k, d)
                    torch.sum(y.sub_(mu_p).square_(), -1, out=maha[start : start + blk.shape[0]])
            log_det = torch.log(torch.diagonal(pc, dim1=-2, dim2=-1)).sum(1)
        return -0.5 * (d * _LOG_2PI + maha) + log_det

    def _log_resp(self, xc: torch.Tensor,
                  xc2: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(x_n) [N], log responsibilities [N, K])`` from centred ``xc``."""
        weighted = self._log_gaussian(xc, xc2) + torch.log(self.weights_)
        norm = torch.logsumexp(weighted, dim=1)
        return norm, weighted - norm[:, None]

    # ------------------------------------------------------------------ initialisation
    def initialize(self, x: torch.Tensor | np.ndarray, resp: torch.Tensor | None = None) -> GaussianMixture:
        """Set the parameters from the ``init`` strategy (or from responsibilities ``resp [N, K]``), no EM."""
        x = self._check_x(x, fitting=True)
        with torch.no_grad(), _no_autocast(x):
            self.shift_ = x.mean(0)
            xc = x - self.shift_
            n, k = x.shape[0], self.n_components
            if resp is not None:
                resp = torch.as_tensor(resp, dtype=self.dtype, device=x.device)
                if resp.shape != (n, k):
                    raise SynthiqaError(f"GaussianMixture: resp must have shape [{n}, {k}], "
                                        f"got {tuple(resp.shape)}")
                self._m_step(xc, resp / resp.sum(1, keepdim=True).clamp_min(torch.finfo(self.dtype).tiny))
                return self
            gen = torch.Generator().manual_seed(self.seed)
            if self.init == "random":
                r = torch.rand(n, k, generator=gen, dtype=self.dtype).to(x.device)
                self._m_step(xc, r / r.sum(1, keepdim=True))
                return self
            if self.init == "means":
                if self.init_means.shape[1] != x.shape[1]:
                    raise SynthiqaError(f"GaussianMixture: init means have {self.init_means.shape[1]} "
                                        f"features, data have {x.shape[1]}")
                centers = self.init_means.to(device=x.device, dtype=self.dtype) - self.shift_
                labels = _nearest(xc, centers)
            else:
                labels, centers = _kmeans(xc, k, self.kmeans_iter, gen)
            one_hot = nn.functional.one_hot(labels, k).to(self.dtype)
            self._m_step(xc, one_hot, means_c=centers if self.init == "means" else None)
        return self

    # ------------------------------------------------------------------ fitting
    def fit(self, x: torch.Tensor | np.ndarray, resp: torch.Tensor | None = None,
            warm_start: bool = False) -> GaussianMixture:
        """Fit by EM on ``x [N, D]`` (on ``x``'s device; gradients are not tracked). Returns ``self``.

        Start: ``warm_start=True`` on a fitted mixture continues from the current parameters (the previous
        means, weights and covariances: refitting every few epochs); ``resp [N, K]`` starts from one
        M-step on those responsibilities; otherwise from ``init``.
        """
        x = self._check_x(x, fitting=True)
        with torch.no_grad(), _no_autocast(x):
            if warm_start and self.fitted:
                if x.shape[1] != self.n_features:
                    raise SynthiqaError(f"GaussianMixture: warm start on {x.shape[1]} features, "
                                        f"fitted on {self.n_features}")
                self._to(x.device)
            else:
                self.initialize(x, resp)
            xc = x - self.shift_
            xc2 = xc * xc if self.covariance_type == "diag" else None
            lower = -math.inf
            self.converged_ = False
            for it in range(1, self.max_iter + 1):
                prev = lower
                log_norm, log_resp = self._log_resp(xc, xc2)
                self._m_step(xc, log_resp.exp(), xc2)
                lower = float(log_norm.mean())
                self.n_iter_ = it
                if abs(lower - prev) < self.tol:
                    self.converged_ = True
                    break
            self.lower_bound_ = lower
        if not self.converged_:
            warnings.warn(f"GaussianMixture(K={self.n_components}) did not converge in {self.max_iter} "
                          f"iterations (tol={self.tol}); raise max_iter or tol", RuntimeWarning, stacklevel=2)
        return self

    def _to(self, device: torch.device) -> None:
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "shift_"):
            setattr(self, name, getattr(self, name).to(device=device, dtype=self.dtype))

    # ------------------------------------------------------------------ inference
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``[N]`` log-density of each sample under the mixture (nats); differentiable w.r.t. ``x``."""
        xx = self._check_x(x)
        with _no_autocast(xx):
            weighted = self._log_gaussian(xx - self.shift_) + torch.log(self.weights_)
            return torch.logsumexp(weighted, dim=1).to(_out_dtype(x))

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, K]`` posterior responsibilities (rows sum to 1); differentiable w.r.t. ``x``."""
        xx = self._check_x(x)
        with _no_autocast(xx):
            return self._log_resp(xx - self.shift_)[1].exp().to(_out_dtype(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Soft assignments ``[N, K]``, as ``predict_proba``."""
        return self.predict_proba(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``[N]`` index of the most probable component (int64)."""
        xx = self._check_x(x)
        with _no_autocast(xx):
            return self._log_resp(xx - self.shift_)[1].argmax(1)

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> float:
        """Mean log-likelihood per sample (nats), as scikit-learn's ``score``."""
        return float(self.log_prob(self._check_x(x)).double().mean())

    def n_parameters(self) -> int:
        """Free parameters (scikit-learn's count): means, covariances, ``K - 1`` weights."""
        k, d = self.n_components, self.n_features
        cov = k * d if self.covariance_type == "diag" else k * d * (d + 1) // 2
        return int(cov + k * d + k - 1)

    def bic(self, x: torch.Tensor) -> float:
        """Bayesian information criterion on ``x`` (lower is better): ``-2 N score + p log N``."""
        n = int(x.shape[0])
        return -2.0 * self.score(x) * n + self.n_parameters() * math.log(n)

    def aic(self, x: torch.Tensor) -> float:
        """Akaike information criterion on ``x`` (lower is better): ``-2 N score + 2 p``."""
        return -2.0 * self.score(x) * int(x.shape[0]) + 2.0 * self.n_parameters()

    @torch.no_grad()
    def precisions(self) -> torch.Tensor:
        """Precision matrices: ``[K, D]`` (diag) or ``[K, D, D]`` (full)."""
        pc = self.precisions_cholesky_
        if self.covariance_type == "diag":
            return pc * pc
        prec = pc @ pc.transpose(-1, -2)
        return 0.5 * (prec + prec.transpose(-1, -2))

    def sklearn_init(self) -> dict[str, np.ndarray]:
        """Current parameters as scikit-learn ``GaussianMixture`` keyword arguments (float64 arrays).

        ``GaussianMixture(n_components=K, covariance_type=..., **gm.sklearn_init())`` then starts its EM
        from exactly the state this mixture is in (call after ``initialize`` to compare the two fits).
        """
        if not self.fitted:
            raise SynthiqaError("GaussianMixture is not initialised; call initialize(x) or fit(x) first")
        w = self.weights_.double().cpu().numpy()
        return {"weights_init": w / w.sum(), "means_init": self.means_.double().cpu().numpy(),
                "precisions_init": self.precisions().double().cpu().numpy()}


def _no_autocast(x: torch.Tensor) -> torch.autocast:
    """Mixture arithmetic (squared distances, log-determinants) stays in the mixture's dtype under AMP."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def _out_dtype(x: torch.Tensor | np.ndarray) -> torch.dtype:
    return x.dtype if torch.is_tensor(x) and x.is_floating_point() else torch.float32


def _full_precision_cholesky(cov: torch.Tensor, reg_covar: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cholesky of ``cov [K, D, D]`` with growing diagonal jitter where it fails; returns (cov, P).

    ``P`` is upper triangular with ``P @ P.T = inverse(cov)`` (scikit-learn's ``precisions_cholesky_``).
    """
    chol, info = torch.linalg.cholesky_ex(cov)
    if bool((info > 0).any()):
        d = cov.shape[-1]
        eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
        scale = torch.diagonal(cov, dim1=-2, dim2=-1).mean(-1).clamp_min(torch.finfo(cov.dtype).tiny)
        jitter = max(reg_covar, 1e-6) * scale
        for _ in range(8):
            bad = (info > 0).to(cov.dtype)
            cov = cov + (bad * jitter)[:, None, None] * eye
            chol, info = torch.linalg.cholesky_ex(cov)
            if not bool((info > 0).any()):
                break
            jitter = jitter * 10
        else:
            raise SynthiqaError("GaussianMixture: a covariance stays singular even with jitter; "
                                "use fewer components, covariance_type='diag' or a larger reg_covar")
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device).expand_as(chol)
    prec_chol = torch.linalg.solve_triangular(chol, eye, upper=False).transpose(-1, -2)
    return cov, prec_chol


def _sq_dist(x: torch.Tensor, centers: torch.Tensor, x_sq: torch.Tensor | None = None) -> torch.Tensor:
    """``[N, C]`` squared Euclidean distances (clamped at 0); ``x_sq [N, 1]`` may pass the rows' norms."""
    x_sq = (x * x).sum(1, keepdim=True) if x_sq is None else x_sq
    return (x_sq - 2.0 * (x @ centers.T) + (centers * centers).sum(1)).clamp_min(0.0)


def _nearest(x: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """``[N]`` index of the nearest centre (the rows' own norms do not change the argmin)."""
    return ((centers * centers).sum(1) - 2.0 * (x @ centers.T)).argmin(1)


def _kmeans(x: torch.Tensor, k: int, n_iter: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means++ seeding (greedy, ``2 + log k`` trials per centre) then Lloyd steps.

    Returns ``(labels [N], centers [k, D])``.
    """
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=gen))
    centers = [x[first]]
    x_sq = (x * x).sum(1, keepdim=True)
    closest = _sq_dist(x, x[first : first + 1], x_sq)[:, 0].double()
    for _ in range(1, k):
        pot = closest.sum()
        if float(pot) <= 0:  # fewer distinct points than centres: reuse random points
            idx = torch.randint(n, (trials,), generator=gen).to(x.device)
        else:
            draws = torch.rand(trials, generator=gen, dtype=torch.float64).to(x.device) * pot
            idx = torch.searchsorted(torch.cumsum(closest, 0), draws).clamp_max(n - 1)
        cand = torch.minimum(closest[None], _sq_dist(x, x[idx], x_sq).T.double())
        best = int(cand.sum(1).argmin())
        closest = cand[best]
        centers.append(x[idx[best]])
    c = torch.stack(centers)
    labels = _nearest(x, c)
    for _ in range(n_iter):
        one_hot = nn.functional.one_hot(labels, k).to(x.dtype)
        counts = one_hot.sum(0)
        c = torch.where(counts[:, None] > 0, (one_hot.T @ x) / counts.clamp_min(1)[:, None], c)
        new = _nearest(x, c)
        if bool((new == labels).all()):
            break
        labels = new
    return labels, c


def select_by_bic(x: torch.Tensor | np.ndarray, k_range: Iterable[int] = range(4, 13),
                  covariance_type: str = "diag", **options: Any) -> tuple[GaussianMixture, dict[int, float]]:
    """Fit one mixture per K in ``k_range`` and keep the lowest BIC.

    ``options`` go to ``GaussianMixture`` (``reg_covar``, ``max_iter``, ``seed``, ``dtype`` ...).
    Returns ``(best fitted mixture, {K: BIC})``.
    """
    ks = sorted({int(k) for k in k_range})
    if not ks:
        raise ConfigError("select_by_bic: k_range is empty")
    n = int(x.shape[0])
    if ks[0] < 1 or ks[-1] > n:
        raise ConfigError(f"select_by_bic: k_range must lie in 1..{n} (the number of samples), "
                          f"got {ks[0]}..{ks[-1]}")
    table: dict[int, float] = {}
    best: GaussianMixture | None = None
    for k in ks:
        gm = GaussianMixture(k, covariance_type=covariance_type, **options).fit(x)
        table[k] = gm.bic(x)
        if best is None or table[k] < table[best.n_components]:
            best = gm
    assert best is not None
    return best, table


# ---------------------------------------------------------------------- collapse
def cluster_fractions(resp: torch.Tensor) -> torch.Tensor:
    """``[K]`` share of samples whose most probable component is k (hard assignment of ``resp [N, K]``)."""
    if resp.ndim != 2 or resp.shape[0] == 0:
        raise SynthiqaError(f"cluster_fractions expects responsibilities [N, K] with N > 0, "
                            f"got {tuple(resp.shape)}")
    counts = torch.bincount(resp.detach().argmax(1), minlength=resp.shape[1])
    return counts.double() / resp.shape[0]


def active_clusters(resp: torch.Tensor, min_fraction: float = 0.05) -> int:
    """Number of components that hold at least ``min_fraction`` of the samples (hard assignment)."""
    return int((cluster_fractions(resp) >= min_fraction).sum())


def warn_on_collapse(resp: torch.Tensor, min_fraction: float = 0.05, min_active: int | None = None,
                     context: str = "") -> int:
    """Count active clusters and warn (``ClusterCollapseWarning``) if fewer than ``min_active``.

    ``min_active`` defaults to ``ceil(0.75 K)`` (6 of 8). Returns the number of active clusters.
    """
    k = resp.shape[1]
    need = math.ceil(0.75 * k) if min_active is None else int(min_active)
    fractions = cluster_fractions(resp)
    active = int((fractions >= min_fraction).sum())
    if active < need:
        shares = ", ".join(f"{100 * float(f):.1f}%" for f in fractions)
        where = f"{context}: " if context else ""
        warnings.warn(f"{where}cluster collapse: {active} of {k} clusters hold >= {100 * min_fraction:.0f}% "
                      f"of the samples (want >= {need}); shares {shares}",
                      ClusterCollapseWarning, stacklevel=2)
    return active
