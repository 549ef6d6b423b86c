"""Regression heads for CENIQA: image features plus cluster posteriors to one quality score.

Every head has the same call: ``head(features [B, D], posteriors [B, K] | None) -> scores [B]``. The
posteriors are passed separately (not concatenated by the caller) because heads use them differently:
as extra inputs (``mlp``, ``monotonic``, ``kan``), as a token (``transformer``), as the initial state
(``gru``) or as the prior of an attention over per-cluster experts (``attention``). ``posteriors=None``
stands for "no cluster information" and is replaced by the uniform ``1 / K``; a head built with
``n_clusters=0`` takes no posteriors at all (``attention`` needs ``n_clusters >= 1``).

Scores are unbounded real numbers on the scale of the training target (``score_norm`` in [0, 1],
higher is better); no output squashing. ``create_regressor(name, in_dim, n_clusters=8, **options)``
builds a registered head; all defaults are small (tens of thousands of weights for ``D = 128``).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from synthiqa.errors import ConfigError, SynthiqaError

_REGRESSORS: dict[str, type[Regressor]] = {}


def register_regressor(name: str) -> Callable[[type[Regressor]], type[Regressor]]:
    """Class decorator: register a regression head under ``name``."""

    def deco(cls: type[Regressor]) -> type[Regressor]:
        _REGRESSORS[name] = cls
        cls.name = name
        return cls

    return deco


def list_regressors() -> list[str]:
    return sorted(_REGRESSORS)


def create_regressor(name: str, in_dim: int, n_clusters: int = 8, **options: Any) -> Regressor:
    """Build the head ``name`` for ``in_dim`` features and ``n_clusters`` posteriors; one-line errors."""
    if name not in _REGRESSORS:
        close = difflib.get_close_matches(name, list(_REGRESSORS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown regressor {name!r}{hint}; known: {', '.join(list_regressors())}")
    if int(in_dim) < 1 or int(n_clusters) < 0:
        raise ConfigError(f"regressor {name!r}: in_dim must be >= 1 and n_clusters >= 0, "
                          f"got {in_dim}, {n_clusters}")
    try:
        return _REGRESSORS[name](int(in_dim), int(n_clusters), **options)
    except TypeError as exc:
        raise ConfigError(f"regressor {name!r}: bad option ({exc})") from None


class Regressor(nn.Module):
    """Base of the heads: input checks and the uniform fallback for missing posteriors."""

    name = ""

    def __init__(self, in_dim: int, n_clusters: int) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.n_clusters = n_clusters

    def _inputs(self, features: torch.Tensor,
                posteriors: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked ``(features [B, D], posteriors [B, K])``; ``K = 0`` gives an empty ``[B, 0]``."""
        if features.ndim != 2 or features.shape[1] != self.in_dim:
            raise SynthiqaError(f"{self.name} regressor expects features [B, {self.in_dim}], "
                                f"got {tuple(features.shape)}")
        b = features.shape[0]
        if posteriors is None:
            k = self.n_clusters
            return features, features.new_full((b, k), 1.0 / k if k else 0.0)
        if posteriors.shape != (b, self.n_clusters):
            raise SynthiqaError(f"{self.name} regressor expects posteriors [{b}, {self.n_clusters}], "
                                f"got {tuple(posteriors.shape)}")
        return features, posteriors.to(features.dtype)


def _mlp(sizes: Sequence[int], dropout: float) -> nn.Sequential:
    """Linear layers with GELU and dropout between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.GELU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


def _chunk(features: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """``[B, D] -> [B, n_tokens, ceil(D / n_tokens)]``, zero-padding the last chunk."""
    b, d = features.shape
    size = math.ceil(d / n_tokens)
    return F.pad(features, (0, size * n_tokens - d)).view(b, n_tokens, size)


@register_regressor("mlp")
class MLPRegressor(Regressor):
    """Plain MLP on ``[features, posteriors]`` (concatenated), GELU, dropout."""

    def __init__(self, in_dim: int, n_clusters: int = 8, hidden: Sequence[int] = (128, 64),
                 dropout: float = 0.1) -> None:
        super().__init__(in_dim, n_clusters)
        self.net = _mlp([in_dim + n_clusters, *hidden, 1], dropout)

    def forward(self, features: torch.Tensor, posteriors: torch.Tensor | None = None) -> torch.Tensor:
        f, p = self._inputs(features, posteriors)
        return self.net(torch.cat([f, p], 1)).squeeze(1)


class MonotoneLinear(nn.Module):
    """Linear layer with weights ``softplus(raw)`` >= 0, hence non-decreasing in every input."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.raw = nn.Parameter(torch.empty(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        # softplus(raw) starts near 1 / in_dim so that activations keep their scale across layers
        nn.init.normal_(self.raw, mean=math.log(math.expm1(1.0 / in_dim)), std=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, F.softplus(self.raw), self.bias)


def _convex_concave(h: torch.Tensor) -> torch.Tensor:
    """Non-decreasing activation: softplus on the first half of the units, its point reflection on the rest.

    Mixing a convex and a concave monotone activation lets a non-negative network represent monotone
    functions that are neither convex nor concave (Runje & Shankaranarayana, 2023).
    """
    half = h.shape[-1] // 2
    return torch.cat([F.softplus(h[..., :half]), -F.softplus(-h[..., half:])], -1)


@register_regressor("monotonic")
class MonotonicRegressor(Regressor):
    """MLP whose score is monotone non-decreasing in the designated feature columns.

    ``monotone_inputs`` (default: every feature column; posteriors are never monotone) lists the indices of
    ``features`` the score may only increase with. The first layer applies non-negative weights
    (``softplus`` of raw weights) to those columns and free weights to the other columns and to the
    posteriors; all later layers have non-negative weights and non-decreasing activations, so the
    partial derivative of the score with respect to every monotone input is >= 0 everywhere. With
    ``decreasing=True`` the score is non-increasing in those inputs instead (for severity-like features).
    """

    def __init__(self, in_dim: int, n_clusters: int = 8, hidden: Sequence[int] = (64, 32),
                 monotone_inputs: Sequence[int] | None = None, decreasing: bool = False) -> None:
        super().__init__(in_dim, n_clusters)
        mono = list(range(in_dim)) if monotone_inputs is None else sorted({int(i) for i in monotone_inputs})
        if any(i < 0 or i >= in_dim for i in mono):
            raise ConfigError(f"monotonic regressor: monotone_inputs must lie in 0..{in_dim - 1}")
        if not hidden:
            raise ConfigError("monotonic regressor: hidden needs at least one layer size")
        free = [i for i in range(in_dim) if i not in set(mono)]
        self.register_buffer("mono_idx", torch.tensor(mono, dtype=torch.long), persistent=False)
        self.register_buffer("free_idx", torch.tensor(free, dtype=torch.long), persistent=False)
        self.sign = -1.0 if decreasing else 1.0
        self.mono_in = MonotoneLinear(len(mono), hidden[0]) if mono else None
        n_free = len(free) + n_clusters
        self.free_in = nn.Linear(n_free, hidden[0], bias=False) if n_free else None
        self.layers = nn.ModuleList(MonotoneLinear(a, b)
                                    for a, b in zip(hidden[:-1], hidden[1:], strict=True))
        self.out = MonotoneLinear(hidden[-1], 1)

    def forward(self, features: torch.Tensor, posteriors: torch.Tensor | None = None) -> torch.Tensor:
        f, p = self._inputs(features, posteriors)
        h = 0.0
        if self.mono_in is not None:
            h = self.mono_in(self.sign * f.index_select(1, self.mono_idx))
        if self.free_in is not None:
            h = h + self.free_in(torch.cat([f.index_select(1, self.free_idx), p], 1))
        h = _convex_concave(h)
        for layer in self.layers:
            h = _convex_concave(layer(h))
        return self.out(h).squeeze(1)


def bspline_basis(x: torch.Tensor, knots: torch.Tensor, order: int) -> torch.Tensor:
    """B-spline basis of ``order`` (3 = cubic) on ascending ``knots [M]``, by the Cox-de Boor recursion.

    ``x [...]`` -> ``[..., M - 1 - order]``. On ``[knots[order], knots[M - 1 - order])`` the basis values
    are non-negative and sum to 1 (partition of unity); outside ``[knots[0], knots[-1])`` they are 0.
    """
    x = x.unsqueeze(-1)
    b = ((x >= knots[:-1]) & (x < knots[1:])).to(x.dtype)
    for p in range(1, order + 1):
        left = (x - knots[: -(p + 1)]) / (knots[p:-1] - knots[: -(p + 1)])
        right = (knots[p + 1 :] - x) / (knots[p + 1 :] - knots[1:-p])
        b = left * b[..., :-1] + right * b[..., 1:]
    return b


class KANLayer(nn.Module):
    """Kolmogorov-Arnold layer: ``y_j = sum_i w_ij silu(x_i) + sum_i sum_c c_ijc B_c(x_i)``.

    Each edge ``i -> j`` is a learnable univariate function: a base activation (SiLU) plus a cubic
    B-spline on ``grid_size`` uniform intervals over ``grid_range`` (extended by ``order`` knots on both
    sides, ``grid_size + order`` basis functions). Inputs outside the grid keep only the base term.
    """

    def __init__(self, in_dim: int, out_dim: int, grid_size: int = 8, order: int = 3,
                 grid_range: tuple[float, float] = (-2.0, 2.0)) -> None:
        super().__init__()
        lo, hi = grid_range
        if grid_size < 1 or order < 0 or not hi > lo:
            raise ConfigError(f"KAN layer: need grid_size >= 1, order >= 0, grid_range lo < hi; got "
                              f"{grid_size}, {order}, {grid_range}")
        h = (hi - lo) / grid_size
        knots = lo + h * torch.arange(-order, grid_size + order + 1, dtype=torch.float32)
        self.register_buffer("knots", knots)
        self.order = order
        self.base = nn.Linear(in_dim, out_dim)
        self.coef = nn.Parameter(torch.randn(out_dim, in_dim, grid_size + order) * (0.1 / math.sqrt(in_dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        basis = bspline_basis(x, self.knots.to(x.dtype), self.order)  # [B, in, G + order]
        return self.base(F.silu(x)) + torch.einsum("bic,oic->bo", basis, self.coef)


@register_regressor("kan")
class KANRegressor(Regressor):
    """Kolmogorov-Arnold network on ``[features, posteriors]``: LayerNorm, then KAN layers.

    Inputs are layer-normalised so that they fall on the spline grid (``grid_range`` default [-2, 2]);
    a LayerNorm also precedes every hidden KAN layer.
    """

    def __init__(self, in_dim: int, n_clusters: int = 8, hidden: Sequence[int] = (16,), grid_size: int = 8,
                 order: int = 3, grid_range: tuple[float, float] = (-2.0, 2.0)) -> None:
        super().__init__(in_dim, n_clusters)
        sizes = [in_dim + n_clusters, *hidden, 1]
        self.norms = nn.ModuleList(nn.LayerNorm(a) for a in sizes[:-1])
        self.layers = nn.ModuleList(KANLayer(a, b, grid_size, order, tuple(grid_range))
                                    for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    def forward(self, features: torch.Tensor, posteriors: torch.Tensor | None = None) -> torch.Tensor:
        f, p = self._inputs(features, posteriors)
        h = torch.cat([f, p], 1)
        for norm, layer in zip(self.norms, self.layers, strict=True):
            h = layer(norm(h))
        return h.squeeze(1)


@register_regressor("transformer")
class TransformerRegressor(Regressor):
    """Small Transformer encoder over tokens: ``[CLS, posterior token, n_tokens feature chunks]``.

    The feature vector is cut into ``n_tokens`` equal chunks (zero-padded), each projected to ``d_model``
    with a learned position embedding; the posteriors are projected to one more token. The score is read
    from the CLS token.
    """

    def __init__(self, in_dim: int, n_clusters: int = 8, n_tokens: int = 8, d_model: int = 64,
                 n_heads: int = 4, n_layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__(in_dim, n_clusters)
        self.n_tokens = max(1, min(int(n_tokens), in_dim))
        chunk = math.ceil(in_dim / self.n_tokens)
        self.embed = nn.Linear(chunk, d_model)
        self.post = nn.Linear(n_clusters, d_model) if n_clusters else None
        n_pos = self.n_tokens + 1 + (1 if n_clusters else 0)
        self.pos = nn.Parameter(torch.randn(1, n_pos, d_model) * 0.02)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 2 * d_model, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 1)

    def forward(self, features: torch.Tensor, posteriors: torch.Tensor | None = None) -> torch.Tensor:
        f, p = self._inputs(features, posteriors)
        tokens = [self.cls.expand(f.shape[0], -1, -1)]
        if self.post is not None:
            tokens.append(self.post(p).unsqueeze(1))
        tokens.append(self.embed(_chunk(f, self.n_tokens)))
        h = self.encoder(torch.cat(tokens, 1) + self.pos)
        return self.head(self.norm(h[:, 0])).squeeze(1)


@register_regressor("gru")
class GRURegressor(Regressor):
    """GRU over the feature vector read as a sequence of ``n_tokens`` chunks.

    The posteriors set the initial hidden state (a linear map of ``[B, K]``); the score is a linear
    read-out of the last hidden state.
    """

    def __init__(self, in_dim: int, n_clusters: int = 8, n_tokens: int = 8, hidden: int = 64) -> None:
        super().__init__(in_dim, n_clusters)
        self.n_tokens = max(1, min(int(n_tokens), in_dim))
        self.gru = nn.GRU(math.ceil(in_dim / self.n_tokens), hidden, batch_first=True)
        self.init_state = nn.Linear(n_clusters, hidden) if n_clusters else None
        self.head = nn.Linear(hidden, 1)

    def forward(self, features: torch.Tensor, posteriors: torch.Tensor | None = None) -> torch.Tensor:
        f, p = self._inputs(features, posteriors)
        h0 = torch.tanh(self.init_state(p)).unsqueeze(0).contiguous() if self.init_state is not None else None
        _, h = self.gru(_chunk(f, self.n_tokens), h0)
        return self.head(h[-1]).squeeze(1)


@register_regressor("attention")
class ClusterAttentionRegressor(Regressor):
    """Cluster-conditioned attention over ``K`` per-cluster expert heads.

    A shared trunk maps features to ``h``; expert ``k`` scores ``s_k = w_k . h + b_k``. The experts are
    mixed with attention weights ``a = softmax(log p + q(h) . e_k / sqrt(d))``: the cluster posteriors
    ``p`` act as the prior, learned cluster keys ``e_k`` let the features refine it. With one-hot
    posteriors the score is that cluster's expert; with uniform ones, pure feature attention.
    """

    def __init__(self, in_dim: int, n_clusters: int = 8, hidden: int = 64, key_dim: int = 16,
                 dropout: float = 0.1) -> None:
        super().__init__(in_dim, n_clusters)
        if n_clusters < 1:
            raise ConfigError("attention regressor needs n_clusters >= 1 (one expert per cluster)")
        self.trunk = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.experts = nn.Linear(hidden, n_clusters)
        self.query = nn.Linear(hidden, key_dim)
        self.keys = nn.Parameter(torch.randn(n_clusters, key_dim) / math.sqrt(key_dim))

    def attention(self, features: torch.Tensor, posteriors: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, K]`` weights given to each cluster's expert (rows sum to 1)."""
        f, p = self._inputs(features, posteriors)
        h = self.trunk(f)
        return self._weights(h, p)

    def _weights(self, h: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        logits = self.query(h) @ self.keys.T / math.sqrt(self.keys.shape[1])
        return torch.softmax(torch.log(p.clamp_min(1e-8)) + logits, dim=1)

    def forward(self, features: torch.Tensor, posteriors: torch.Tensor | None = None) -> torch.Tensor:
        f, p = self._inputs(features, posteriors)
        h = self.trunk(f)
        return (self._weights(h, p) * self.experts(h)).sum(1)
