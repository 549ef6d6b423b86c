"""The six CENIQA losses and their weighting, and SIND's scene-aligned loss.

Labels come from the generated manifest: ``scene`` (reference id), ``dist_type`` (distortion type id,
``-1`` for pristine or unknown), ``level`` (0 = pristine, 1..5 increasing severity), ``mos`` (normalised
quality in [0, 1], higher is better; NaN where unknown). All label tensors are ``[B]`` integers (or floats
for ``mos``) on the same device as the predictions.

Every loss returns a scalar tensor. Where a batch holds nothing the loss can use (no labelled sample,
no valid pair), it returns ``0`` still attached to the graph, so ``backward`` works and adds no gradient.

SIND (``scale_shift_align`` / ``sind_loss``): per domain of the batch, the affine map ``a*p + b`` of the
predictions that best fits the labels (closed-form least squares, differentiable) is applied before an L1
loss; with alignment off the loss is plain L1. The slope is kept >= 0 so that an inverted ranking is never a
perfect fit, and a small unaligned L1 term (``anchor_weight``) keeps scores on the label scale (design
choices of this implementation, stated here because the loss alone is sign- and offset-free).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from synthiqa.errors import ConfigError

LOSS_NAMES = ("contrast", "consistency", "ranking", "cluster", "quality", "monotonic")


def _zero(*tensors: torch.Tensor) -> torch.Tensor:
    """A scalar 0 connected to the graph of ``tensors`` (gradient 0)."""
    return sum(t.sum() * 0.0 for t in tensors)  # type: ignore[return-value]


def quality_loss(pred: torch.Tensor, mos: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Mean squared error between predicted scores ``pred [B]`` and normalised MOS ``mos [B]`` (in [0, 1]),
    in units of ``scale`` (the training targets' standard deviation: the loss is then the MSE of the
    standardised target, about 1 for a constant prediction, whatever the label's spread).

    Samples whose ``mos`` is NaN (unlabelled) are ignored.
    """
    if not scale > 0:
        raise ConfigError(f"quality_loss: scale must be > 0, got {scale}")
    valid = torch.isfinite(mos)
    if not bool(valid.any()):
        return _zero(pred)
    return F.mse_loss(pred[valid], mos[valid].to(pred.dtype)) / scale**2


def contrastive_loss(embeddings: torch.Tensor, dist_type: torch.Tensor, temperature: float = 0.1,
                     ignore_index: int = -1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al., 2020) over distortion-type labels.

    ``embeddings [B, E]`` are L2-normalised inside; cosine similarities are divided by ``temperature``.
    For each anchor, samples of the same type are positives and all other samples are negatives:
    ``-mean_p log(exp(s_ap) / sum_{a' != a} exp(s_aa'))``, averaged over anchors that have at least one
    positive. Samples labelled ``ignore_index`` take no part at all.
    """
    keep = dist_type != ignore_index
    z, y = F.normalize(embeddings[keep], dim=1), dist_type[keep]
    n = z.shape[0]
    if n < 2:
        return _zero(embeddings)
    sim = z @ z.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, -math.inf)
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (y[:, None] == y[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    anchors = n_pos > 0
    if not bool(anchors.any()):
        return _zero(embeddings)
    pos_log_prob = log_prob.masked_fill(~pos, 0.0).sum(1)
    return -(pos_log_prob[anchors] / n_pos[anchors]).mean()


def consistency_loss(logits: torch.Tensor, dist_type: torch.Tensor, ignore_index: int = -1) -> torch.Tensor:
    """Cross-entropy of a distortion-type classifier: ``logits [B, C]``, ``dist_type [B]`` in 0..C-1.

    Samples labelled ``ignore_index`` (pristine or unknown) are ignored.
    """
    valid = dist_type != ignore_index
    if not bool(valid.any()):
        return _zero(logits)
    return F.cross_entropy(logits[valid], dist_type[valid].long())


def level_pairs(scene: torch.Tensor, dist_type: torch.Tensor, level: torch.Tensor,
                pristine_pairs: bool = True) -> torch.Tensor:
    """``[B, B]`` boolean mask, True at ``(i, j)`` where sample i must score higher than sample j.

    That is: same scene, ``level_i < level_j``, and either the same distortion type or (with
    ``pristine_pairs``) sample i pristine (``level_i == 0``, best of its scene, any type).
    """
    same_scene = scene[:, None] == scene[None, :]
    less_severe = level[:, None] < level[None, :]
    same_type = (dist_type[:, None] == dist_type[None, :]) & (dist_type[:, None] >= 0)
    if pristine_pairs:
        same_type = same_type | (level[:, None] == 0)
    return same_scene & less_severe & same_type


def ranking_loss(scores: torch.Tensor, scene: torch.Tensor, dist_type: torch.Tensor, level: torch.Tensor,
                 margin: float = 0.05, kind: str = "hinge", temperature: float = 0.05) -> torch.Tensor:
    """Pairwise ranking by distortion level on the same reference (``level_pairs`` with pristine pairs).

    For each ordered pair with ``d = q_i - q_j`` (``q_i`` the less distorted): ``kind="hinge"`` gives
    ``relu(margin - d)`` (0 once every pair is ordered with the margin); ``kind="logistic"`` gives
    ``softplus((margin - d) / temperature) * temperature`` (RankNet-style, never exactly 0).
    Mean over pairs; ``scores [B]`` on the quality scale (higher is better).
    """
    if kind not in ("hinge", "logistic"):
        raise ConfigError(f"ranking_loss: kind must be 'hinge' or 'logistic', got {kind!r}")
    pairs = level_pairs(scene, dist_type, level, pristine_pairs=True)
    if not bool(pairs.any()):
        return _zero(scores)
    i, j = pairs.nonzero(as_tuple=True)
    gap = margin - (scores[i] - scores[j])
    if kind == "hinge":
        return F.relu(gap).mean()
    return (F.softplus(gap / temperature) * temperature).mean()


def monotonic_loss(scores: torch.Tensor, scene: torch.Tensor, dist_type: torch.Tensor, level: torch.Tensor,
                   margin: float = 0.0) -> torch.Tensor:
    """Penalty on quality rising with severity: ``relu(q_j - q_i + margin)`` averaged over pairs.

    Pairs: same scene and same distortion type (pristine not included) with ``level_j > level_i``.
    With ``margin = 0`` only actual violations cost anything, unlike ``ranking_loss`` which asks for a gap.
    """
    pairs = level_pairs(scene, dist_type, level, pristine_pairs=False)
    if not bool(pairs.any()):
        return _zero(scores)
    i, j = pairs.nonzero(as_tuple=True)
    return F.relu(scores[j] - scores[i] + margin).mean()


def cluster_loss(features: torch.Tensor, resp: torch.Tensor, means: torch.Tensor | None = None,
                 balance_weight: float = 1.0, sharpen_weight: float = 0.1) -> torch.Tensor:
    """Compact, separated and balanced clusters from soft assignments.

    Inputs: ``features [B, D]``, responsibilities ``resp [B, K]`` (rows sum to 1, e.g. the mixture's
    differentiable ``predict_proba``), cluster centres ``means [K, D]`` (the mixture's means, or None for
    the batch's soft means ``sum_n r_nk f_n / sum_n r_nk``). The loss is

    ``compact / separation + balance_weight * (log K - H(mean_n r_n)) + sharpen_weight * mean_n H(r_n)``

    with ``compact = mean_n sum_k r_nk |f_n - mu_k|^2`` (intra-cluster spread), ``separation`` the mean
    squared distance between distinct centres, and ``H`` the entropy (nats). The ratio is scale-free (the
    features cannot shrink to cheat it); the balance term is 0 when the batch uses all K clusters equally
    and ``log K`` when it uses one, which is what keeps the clusters from collapsing; the sharpening term
    favours confident assignments.
    """
    k = resp.shape[1]
    r = resp.to(features.dtype)
    if means is None:
        means = (r.T @ features) / r.sum(0).clamp_min(1e-8)[:, None]
    means = means.to(features.dtype)
    sq = (features * features).sum(1, keepdim=True) - 2.0 * features @ means.T + (means * means).sum(1)
    compact = (r * sq.clamp_min(0.0)).sum(1).mean()
    if k > 1:
        centre_sq = (means[:, None] - means[None]).square().sum(-1)
        separation = centre_sq.sum() / (k * (k - 1))
        spread = compact / (separation + 1e-8)
    else:
        spread = compact * 0.0
    log_r = torch.log(r.clamp_min(1e-12))
    mean_r = r.mean(0)
    balance = math.log(k) + (mean_r * torch.log(mean_r.clamp_min(1e-12))).sum()
    sharpness = -(r * log_r).sum(1).mean()
    return spread + balance_weight * balance + sharpen_weight * sharpness


@dataclass
class LossWeights:
    """Weights of the six losses (CENIQA's published defaults); serialise with ``dataclasses.asdict``."""

    lambda_contrast: float = 1.0
    lambda_consistency: float = 0.5
    lambda_ranking: float = 0.5
    lambda_cluster: float = 0.3
    lambda_quality: float = 1.0
    lambda_monotonic: float = 0.1

    def weight(self, name: str) -> float:
        if name not in LOSS_NAMES:
            raise ConfigError(f"unknown loss {name!r}; known: {', '.join(LOSS_NAMES)}")
        return float(getattr(self, f"lambda_{name}"))


def combine(parts: dict[str, torch.Tensor],
            weights: LossWeights | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the loss ``parts`` present (keys from ``LOSS_NAMES``); absent losses count 0.

    Returns ``(total, log)`` where ``log`` holds each part's unweighted value and ``"total"`` as floats.
    """
    w = weights or LossWeights()
    if not parts:
        raise ConfigError("combine: no loss parts given")
    total = sum(w.weight(name) * value for name, value in parts.items())
    log = {name: float(value.detach()) for name, value in parts.items()}
    log["total"] = float(total.detach())
    return total, log  # type: ignore[return-value]


def scale_shift_align(pred: torch.Tensor, target: torch.Tensor, domains: torch.Tensor,
                      nonnegative: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Predictions mapped by each domain's least-squares affine fit to the labels.

    For the items of domain ``d``: ``a = cov(p, y) / var(p)``, ``b = mean(y) - a mean(p)`` (the
    solution of ``min_{a,b} sum (a p_i + b - y_i)^2``), returned as ``a p + b``; differentiable in ``p``.
    A domain with constant predictions (or one item) gets ``a = 0``, i.e. its label mean.

    Args:
        pred, target: ``[B]`` predictions and labels.
        domains: ``[B]`` integer domain ids.
        nonnegative: clamp the slope at 0 (an inverted ranking then cannot fit).
        eps: added to the variance.
    """
    p, y = pred.float(), target.float()
    _, inv = torch.unique(domains, return_inverse=True)
    g = int(inv.max()) + 1
    count = torch.zeros(g, device=p.device).index_add_(0, inv, torch.ones_like(p))
    mean_p = torch.zeros(g, device=p.device).index_add_(0, inv, p) / count
    mean_y = torch.zeros(g, device=p.device).index_add_(0, inv, y) / count
    dp, dy = p - mean_p[inv], y - mean_y[inv]
    var = torch.zeros(g, device=p.device).index_add_(0, inv, dp * dp)
    cov = torch.zeros(g, device=p.device).index_add_(0, inv, dp * dy)
    a = cov / (var + eps)
    if nonnegative:
        a = a.clamp_min(0.0)
    return a[inv] * dp + mean_y[inv]


def sind_loss(pred: torch.Tensor, target: torch.Tensor, domains: torch.Tensor | None, align: bool = True,
              anchor_weight: float = 0.1) -> torch.Tensor:
    """SIND's loss: L1 between the per-domain aligned predictions and the labels, plus ``anchor_weight``
    times the unaligned L1; plain L1 when ``align`` is False. Items with a NaN label are ignored."""
    ok = torch.isfinite(target)
    if not bool(ok.any()):
        return pred.sum() * 0.0
    p, y = pred[ok].float(), target[ok].float()
    plain = F.l1_loss(p, y)
    if not align or domains is None:
        return plain
    aligned = scale_shift_align(p, y, domains[ok])
    return F.l1_loss(aligned, y) + anchor_weight * plain
