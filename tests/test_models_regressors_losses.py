"""Regression heads (shapes, gradients, monotonicity, B-splines) and the six CENIQA losses."""

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from synthiqa.errors import ConfigError, SynthiqaError
from synthiqa.models.components.gmm import GaussianMixture
from synthiqa.models.components.losses import (
    LOSS_NAMES,
    LossWeights,
    cluster_loss,
    combine,
    consistency_loss,
    contrastive_loss,
    level_pairs,
    monotonic_loss,
    quality_loss,
    ranking_loss,
)
from synthiqa.models.components.regressors import KANLayer, bspline_basis, create_regressor, list_regressors

D, K, B = 20, 4, 6


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, generator=g), torch.softmax(torch.randn(B, K, generator=g), 1)


@pytest.mark.parametrize("name", ["mlp", "monotonic", "kan", "transformer", "gru", "attention"])
def test_heads_shapes_and_backward(name):
    assert name in list_regressors()
    torch.manual_seed(0)
    head = create_regressor(name, D, K)
    f, p = _inputs()
    f.requires_grad_(True)
    p.requires_grad_(True)
    out = head(f, p)
    assert out.shape == (B,) and torch.isfinite(out).all()
    out.sum().backward()
    assert f.grad.abs().sum() > 0 and p.grad.abs().sum() > 0
    assert any(q.grad is not None and q.grad.abs().sum() > 0 for q in head.parameters())
    head.eval()
    assert head(f.detach()).shape == (B,)  # no posteriors: uniform ones
    with pytest.raises(SynthiqaError):
        head(f.detach(), p.detach()[:, :2])
    with pytest.raises(SynthiqaError):
        head(f.detach()[:, :5], p.detach())


def test_heads_without_clusters_and_bad_options():
    f, _ = _inputs()
    for name in ("mlp", "monotonic", "kan", "transformer", "gru"):
        assert create_regressor(name, D, 0)(f).shape == (B,)
    with pytest.raises(ConfigError):
        create_regressor("attention", D, 0)
    with pytest.raises(ConfigError, match="did you mean"):
        create_regressor("mpl", D, K)
    with pytest.raises(ConfigError):
        create_regressor("mlp", D, K, depth=3)


@pytest.mark.parametrize("decreasing", [False, True])
def test_monotonic_head_is_monotone_in_designated_inputs(decreasing):
    torch.manual_seed(1)
    mono = list(range(0, D, 2))
    head = create_regressor("monotonic", D, K, monotone_inputs=mono, decreasing=decreasing)
    with torch.no_grad():  # random raw weights, far from the initialisation, to test the constraint itself
        for q in head.parameters():
            q.normal_(0.0, 2.0)
    g = torch.Generator().manual_seed(2)
    f = torch.randn(500, D, generator=g) * 3
    p = torch.softmax(torch.randn(500, K, generator=g), 1)
    step = torch.zeros_like(f)
    step[:, mono] = torch.rand(500, len(mono), generator=g) * 2
    base = head(f, p)
    for scale in (0.01, 0.3, 1.0, 5.0):
        diff = head(f + scale * step, p) - base
        diff = -diff if decreasing else diff
        assert diff.min() >= -1e-5
    # the other inputs are free: moving them changes the score both ways
    free_step = torch.zeros_like(f)
    free_step[:, 1::2] = torch.randn(500, D // 2, generator=g)
    free_diff = head(f + free_step, p) - base
    assert free_diff.min() < 0 < free_diff.max()


def test_bspline_basis_partition_of_unity_and_scipy():
    layer = KANLayer(3, 2, grid_size=5, order=3, grid_range=(-1.0, 1.0))
    x = torch.linspace(-1.0, 0.999, 200, dtype=torch.float64)
    basis = bspline_basis(x, layer.knots.double(), 3)
    assert basis.shape == (200, 5 + 3)
    assert torch.allclose(basis.sum(-1), torch.ones(200, dtype=torch.float64), atol=1e-12)
    assert basis.min() >= 0
    ref = BSpline.design_matrix(x.numpy(), layer.knots.double().numpy(), 3).toarray()
    np.testing.assert_allclose(basis.numpy(), ref, atol=1e-12)
    assert bspline_basis(torch.tensor([-9.0, 9.0]), layer.knots, 3).abs().sum() == 0
    out = layer(torch.randn(7, 3))
    assert out.shape == (7, 2)


def test_gmm_posteriors_to_head_end_to_end():
    torch.manual_seed(3)
    feats = torch.randn(64, D) + 4 * torch.randint(0, K, (64, 1)).float()
    gm = GaussianMixture(K).fit(feats)
    f = feats[:B].clone().requires_grad_(True)
    head = create_regressor("attention", D, K)
    score = head(f, gm.predict_proba(f))
    loss = quality_loss(score, torch.rand(B)) + 0.3 * cluster_loss(f, gm.predict_proba(f), gm.means_)
    loss.backward()
    assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- losses
def _finite_nonzero_grad(loss, *tensors):
    loss.backward()
    for t in tensors:
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_quality_loss():
    mos = torch.tensor([0.1, 0.5, 0.9, float("nan")])
    pred = torch.tensor([0.3, 0.2, 0.6, 5.0], requires_grad=True)
    _finite_nonzero_grad(quality_loss(pred, mos), pred)
    assert pred.grad[3] == 0  # NaN target ignored
    assert quality_loss(torch.tensor([0.1, 0.5, 0.9]), mos[:3]) == 0
    assert quality_loss(pred, torch.full((4,), float("nan"))) == 0
    plain = pred.detach()
    torch.testing.assert_close(quality_loss(plain, mos, scale=0.5), 4 * quality_loss(plain, mos))
    with pytest.raises(ConfigError, match="scale"):
        quality_loss(pred, mos, scale=0.0)


def test_contrastive_loss_prefers_type_clusters():
    types = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, -1, 3])
    centres = torch.eye(8)[:4] * 5
    good = centres[types.clamp_min(0)] + 0.1 * torch.randn(10, 8)
    bad = centres[torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 0, 3])] + 0.1 * torch.randn(10, 8)
    assert contrastive_loss(good, types) < contrastive_loss(bad, types)
    emb = torch.randn(10, 8, requires_grad=True)
    _finite_nonzero_grad(contrastive_loss(emb, types), emb)
    assert emb.grad[8].abs().sum() == 0  # ignored label takes no part
    lonely = torch.randn(3, 8, requires_grad=True)
    zero = contrastive_loss(lonely, torch.tensor([0, 1, 2]))  # no positives anywhere
    zero.backward()
    assert zero == 0 and lonely.grad is not None


def test_consistency_loss():
    labels = torch.tensor([0, 2, 1, -1])
    good = torch.nn.functional.one_hot(labels.clamp_min(0), 3).float() * 5
    bad = torch.nn.functional.one_hot((labels.clamp_min(0) + 1) % 3, 3).float() * 5
    assert consistency_loss(good, labels) < consistency_loss(bad, labels)
    logits = torch.randn(4, 3, requires_grad=True)
    _finite_nonzero_grad(consistency_loss(logits, labels), logits)
    assert consistency_loss(logits, torch.full((4,), -1)) == 0


def _ladder():
    """Two scenes, two types, levels 0..3 (level 0 pristine with type -1)."""
    scene = torch.tensor([0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    dist_type = torch.tensor([-1, 0, 0, 0, 1, 1, 1, 0, 0, 0])
    level = torch.tensor([0, 1, 2, 3, 1, 2, 3, 1, 2, 3])
    correct = torch.tensor([1.0, 0.8, 0.6, 0.4, 0.7, 0.5, 0.3, 0.9, 0.6, 0.3])
    return scene, dist_type, level, correct


def test_level_pairs():
    scene, dist_type, level, _ = _ladder()
    pairs = level_pairs(scene, dist_type, level)
    # pristine beats the 6 distorted images of scene 0; 3 ordered pairs per (scene, type) ladder, 3 ladders
    assert int(pairs.sum()) == 6 + 9
    assert int(level_pairs(scene, dist_type, level, pristine_pairs=False).sum()) == 9
    assert not pairs[1, 4] and not pairs[1, 8]  # different type / different scene


@pytest.mark.parametrize("kind", ["hinge", "logistic"])
def test_ranking_loss(kind):
    scene, dist_type, level, correct = _ladder()
    reversed_ = 1.0 - correct
    good = ranking_loss(correct, scene, dist_type, level, kind=kind)
    bad = ranking_loss(reversed_, scene, dist_type, level, kind=kind)
    assert good < bad
    if kind == "hinge":
        assert good == 0 and bad > 0
    q = reversed_.clone().requires_grad_(True)
    _finite_nonzero_grad(ranking_loss(q, scene, dist_type, level, kind=kind), q)
    lone = torch.rand(4, requires_grad=True)
    ones = torch.ones(4, dtype=torch.long)
    zero = ranking_loss(lone, torch.arange(4), ones, ones)  # four scenes: no pair
    zero.backward()
    assert zero == 0 and lone.grad is not None
    with pytest.raises(ConfigError):
        ranking_loss(correct, scene, dist_type, level, kind="listwise")


def test_monotonic_loss():
    scene, dist_type, level, correct = _ladder()
    assert monotonic_loss(correct, scene, dist_type, level) == 0
    q = (1.0 - correct).requires_grad_(True)
    loss = monotonic_loss(q, scene, dist_type, level)
    assert loss > 0
    _finite_nonzero_grad(loss, q)
    assert q.grad[0] == 0  # pristine is not in the monotonic pairs
    flat = torch.full((10,), 0.5)
    assert monotonic_loss(flat, scene, dist_type, level) == 0
    assert monotonic_loss(flat, scene, dist_type, level, margin=0.1) > 0


def test_cluster_loss_prefers_compact_separated_balanced_clusters():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(80) % 8
    means = torch.randn(8, 6, generator=g) * 5
    feats = means[labels] + 0.2 * torch.randn(80, 6, generator=g)
    good_resp = torch.nn.functional.one_hot(labels, 8).float() * 0.97 + 0.03 / 8
    collapsed = torch.nn.functional.one_hot(torch.zeros(80, dtype=torch.long), 8).float() * 0.97 + 0.03 / 8
    diffuse = torch.full((80, 8), 1.0 / 8)
    good = cluster_loss(feats, good_resp, means)
    assert good < cluster_loss(feats, collapsed, means)
    assert good < cluster_loss(feats, diffuse, means)
    assert good < cluster_loss(feats + 3 * torch.randn(80, 6, generator=g), good_resp, means)  # less compact
    assert cluster_loss(feats, good_resp) < cluster_loss(feats, collapsed)  # batch soft means
    f = feats.clone().requires_grad_(True)
    logits = torch.randn(80, 8, generator=g, requires_grad=True)
    _finite_nonzero_grad(cluster_loss(f, torch.softmax(logits, 1), means), f, logits)


def test_loss_weights_and_combine():
    w = LossWeights()
    assert [w.weight(n) for n in LOSS_NAMES] == [1.0, 0.5, 0.5, 0.3, 1.0, 0.1]
    parts = {"quality": torch.tensor(0.2, requires_grad=True), "monotonic": torch.tensor(1.0)}
    total, log = combine(parts, w)
    assert total.item() == pytest.approx(0.2 + 0.1)
    assert log == pytest.approx({"quality": 0.2, "monotonic": 1.0, "total": 0.3})
    total.backward()
    with pytest.raises(ConfigError):
        combine({"qualty": torch.tensor(1.0)})
