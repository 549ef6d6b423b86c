"""The torch Gaussian mixture against scikit-learn, BIC selection, differentiability and collapse checks."""

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from synthiqa.errors import ConfigError, SynthiqaError
from synthiqa.models.components.gmm import (
    ClusterCollapseWarning,
    GaussianMixture,
    active_clusters,
    cluster_fractions,
    select_by_bic,
    warn_on_collapse,
)


def _blobs(kind: str) -> tuple[np.ndarray, int]:
    """Three small synthetic datasets: separated isotropic, anisotropic (correlated), overlapping."""
    if kind == "separated":
        x, _ = make_blobs(600, n_features=4, centers=5, cluster_std=0.6, center_box=(-15, 15), random_state=1)
        return x, 5
    if kind == "anisotropic":
        x, _ = make_blobs(800, n_features=3, centers=3, cluster_std=[0.5, 1.5, 1.0], random_state=2)
        return x @ np.array([[0.6, -0.6, 0.2], [-0.4, 0.8, 0.1], [0.3, 0.2, 1.1]]) + 40.0, 3
    x, _ = make_blobs(700, n_features=6, centers=4, cluster_std=2.5, center_box=(-5, 5), random_state=3)
    return x, 4


@pytest.mark.parametrize("kind", ["separated", "anisotropic", "overlapping"])
@pytest.mark.parametrize("cov", ["diag", "full"])
def test_matches_sklearn_from_same_init(kind, cov):
    x, k = _blobs(kind)
    xt = torch.tensor(x, dtype=torch.float32)
    gm = GaussianMixture(k, covariance_type=cov, seed=0).initialize(xt)
    sk = SkGaussianMixture(k, covariance_type=cov, max_iter=100, tol=1e-3, **gm.sklearn_init()).fit(x)
    gm.fit(xt, warm_start=True)
    assert gm.converged_ and sk.converged_
    assert gm.n_parameters() == sk._n_parameters()
    assert gm.score(xt) == pytest.approx(sk.score(x), rel=0.01)
    assert gm.bic(xt) == pytest.approx(sk.bic(x), rel=0.01)
    assert gm.aic(xt) == pytest.approx(sk.aic(x), rel=0.01)
    # the per-sample log-likelihood and the labels agree too, not only the means
    ll = gm.log_prob(xt).double().numpy()
    assert np.abs(ll - sk.score_samples(x)).max() < 1e-2 * np.abs(sk.score_samples(x)).mean()
    assert (gm.predict(xt).numpy() == sk.predict(x)).mean() > 0.99


def test_float64_is_sklearn_to_rounding():
    x, k = _blobs("overlapping")
    xt = torch.tensor(x, dtype=torch.float64)
    gm = GaussianMixture(k, covariance_type="full", dtype=torch.float64).initialize(xt)
    sk = SkGaussianMixture(k, covariance_type="full", **gm.sklearn_init()).fit(x)
    gm.fit(xt, warm_start=True)
    assert gm.n_iter_ == sk.n_iter_
    assert gm.score(xt) == pytest.approx(sk.score(x), rel=1e-9)
    np.testing.assert_allclose(gm.means_.numpy(), sk.means_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(gm.covariances_.numpy(), sk.covariances_, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_select_by_bic_finds_true_k(cov):
    x, k = _blobs("separated")
    best, table = select_by_bic(torch.tensor(x, dtype=torch.float32), range(2, 9), covariance_type=cov)
    assert best.n_components == k == min(table, key=table.get)
    assert set(table) == set(range(2, 9))


def test_predict_proba_is_differentiable():
    x, k = _blobs("overlapping")
    gm = GaussianMixture(k).fit(torch.tensor(x, dtype=torch.float32))
    pts = torch.tensor(x[:32], dtype=torch.float32, requires_grad=True)
    resp = gm.predict_proba(pts)
    assert resp.shape == (32, k)
    assert torch.allclose(resp.sum(1), torch.ones(32), atol=1e-5)
    (resp[:, 0].sum() - gm.log_prob(pts).mean()).backward()
    assert torch.isfinite(pts.grad).all() and pts.grad.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixture arithmetic stays float32 under AMP
        assert torch.allclose(gm.predict_proba(pts), resp, atol=1e-6)


def test_inits_warm_start_and_state_dict_round_trip():
    x, k = _blobs("separated")
    xt = torch.tensor(x, dtype=torch.float32)
    ref = GaussianMixture(k, covariance_type="full").fit(xt)
    # warm start from the fitted state: already converged, same fit
    warm = GaussianMixture(k, covariance_type="full")
    warm.load_state_dict(ref.state_dict())
    assert torch.allclose(warm.log_prob(xt), ref.log_prob(xt))
    warm.fit(xt, warm_start=True)
    assert warm.n_iter_ <= 2 and warm.score(xt) == pytest.approx(ref.score(xt), rel=1e-4)
    # responsibilities and given means as starts reach the same optimum on separated blobs
    from_resp = GaussianMixture(k, covariance_type="full").fit(xt, resp=ref.predict_proba(xt))
    given = GaussianMixture(k, covariance_type="full", init=ref.means_.clone()).initialize(xt)
    assert torch.allclose(given.means_, ref.means_, atol=1e-4)  # kept, covariances taken around them
    assert torch.allclose(given.covariances_, ref.covariances_, rtol=0.05, atol=0.02)
    from_means = GaussianMixture(k, covariance_type="full", init=ref.means_.clone()).fit(xt)
    rnd = GaussianMixture(k, covariance_type="diag", init="random", max_iter=300).fit(xt)
    for other in (from_resp, from_means):
        assert other.score(xt) == pytest.approx(ref.score(xt), rel=1e-3)
    assert math.isfinite(rnd.score(xt))


def test_jitter_rescues_singular_full_covariance():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 2))
    x = np.concatenate([base, base[:, :1] * 2.0], 1)  # rank 2 in 3 dimensions
    gm = GaussianMixture(2, covariance_type="full", reg_covar=0.0).fit(torch.tensor(x, dtype=torch.float32))
    assert math.isfinite(gm.score(torch.tensor(x, dtype=torch.float32)))


def test_bad_input_gives_one_line_errors():
    with pytest.raises(ConfigError):
        GaussianMixture(3, covariance_type="tied")
    with pytest.raises(SynthiqaError):
        GaussianMixture(3).predict(torch.zeros(4, 2))
    with pytest.raises(SynthiqaError):
        GaussianMixture(10).fit(torch.zeros(5, 2))
    with pytest.raises(SynthiqaError):
        GaussianMixture(2).fit(torch.tensor([[0.0, float("nan")], [1.0, 2.0], [3.0, 4.0]]))
    gm = GaussianMixture(2).fit(torch.randn(50, 3))
    with pytest.raises(SynthiqaError):
        gm.predict_proba(torch.randn(4, 5))


def test_active_clusters_and_collapse_warning():
    labels = torch.tensor([0] * 90 + [1] * 6 + [2] * 4)
    resp = torch.nn.functional.one_hot(labels, 8).float() * 0.9 + 0.1 / 8
    expected = torch.tensor([0.9, 0.06, 0.04] + [0.0] * 5, dtype=torch.float64)
    assert torch.allclose(cluster_fractions(resp), expected)
    assert active_clusters(resp) == 2
    assert active_clusters(resp, min_fraction=0.01) == 3
    with pytest.warns(ClusterCollapseWarning, match="2 of 8"):
        assert warn_on_collapse(resp, context="epoch 3") == 2
    balanced = torch.nn.functional.one_hot(torch.arange(80) % 8, 8).float()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_on_collapse(balanced) == 8
