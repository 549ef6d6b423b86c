"""Benchmark metrics agree with scipy/scikit-learn; the logistic fit recovers known curves."""

import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from synthiqa.benchmarks.logistic import fit_logistic, logistic4, logistic5
from synthiqa.benchmarks.metrics import (
    bootstrap_ci,
    cluster_metrics,
    cluster_purity,
    krcc,
    plcc,
    quality_metrics,
    rmse,
    srcc,
)


@pytest.fixture
def scores():
    rng = np.random.default_rng(3)
    true = rng.uniform(0, 1, 200)
    pred = np.tanh(3 * true) + rng.normal(0, 0.1, 200)
    return pred, true


def test_correlations_match_scipy(scores):
    pred, true = scores
    assert srcc(pred, true) == pytest.approx(stats.spearmanr(pred, true)[0], abs=1e-12)
    assert krcc(pred, true) == pytest.approx(stats.kendalltau(pred, true)[0], abs=1e-12)
    assert plcc(pred, true) == pytest.approx(stats.pearsonr(pred, true)[0], abs=1e-12)
    assert rmse(pred, true) == pytest.approx(np.sqrt(np.mean((pred - true) ** 2)), abs=1e-12)


def test_degenerate_inputs_give_nan_not_errors():
    assert np.isnan(srcc([1, 1, 1], [1, 2, 3]))
    assert np.isnan(plcc([1.0], [2.0]))
    with pytest.raises(ValueError):
        srcc([1, 2], [1, 2, 3])


@pytest.mark.parametrize("params", [(4.0, 1.0, 0.3, 0.7), (1.0, 5.0, -0.5, 0.4)])
def test_logistic4_recovers_known_parameters(params):
    rng = np.random.default_rng(0)
    x = rng.uniform(-30, 50, 400)
    mean, std = x.mean(), x.std()
    y = logistic4((x - mean) / std, *params)
    fit = fit_logistic(x, y, "4pl", increasing=None if params[0] < params[1] else True)
    assert fit.ok
    b1, b2, b3, b4 = fit.params
    np.testing.assert_allclose([b1, b2, b3, abs(b4)], params, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fit.predict(x), y, atol=1e-6)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_constrained_fit_does_not_reward_backward_rankings():
    rng = np.random.default_rng(2)
    true = rng.uniform(0, 1, 300)
    backward = -true + rng.normal(0, 0.05, 300)
    free, _ = quality_metrics(backward, true, logistic="4pl")
    fit = fit_logistic(backward, true, "4pl")
    assert fit.ok and fit.params[0] >= fit.params[1]
    fitted_plcc = {(v.metric, v.mode): v.value for v in free}[("plcc", "4pl")]
    assert not fitted_plcc > 0.2  # a falling curve would give about +0.99
    assert fit_logistic(backward, true, "4pl", increasing=None).params[0] < 0.5


def test_logistic5_recovers_known_curve():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, 300)
    params = (2.0, 1.5, 0.2, 0.1, 3.0)
    y = logistic5((x - x.mean()) / x.std(), *params)
    fit = fit_logistic(x, y, "5pl")
    assert fit.ok
    np.testing.assert_allclose(fit.predict(x), y, atol=1e-5)


def test_failed_fit_falls_back_to_raw_with_warning_and_mode():
    x = np.ones(6)
    y = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values, fit = quality_metrics(x, y, logistic="4pl")
    assert not fit.ok
    assert any("fit failed" in str(w.message) for w in caught)
    modes = {(v.metric, v.mode) for v in values}
    assert ("plcc", "raw_fallback") in modes and ("plcc", "raw") in modes


def test_quality_metrics_modes_and_fitted_plcc(scores):
    pred, true = scores
    values, fit = quality_metrics(pred, true, logistic="4pl", n_boot=200, seed=5)
    table = {(v.metric, v.mode): v for v in values}
    assert set(table) == {("srcc", "raw"), ("krcc", "raw"), ("plcc", "raw"), ("rmse", "raw"),
                          ("plcc", "4pl"), ("rmse", "4pl")}
    assert table[("plcc", "4pl")].value == pytest.approx(stats.pearsonr(fit.predict(pred), true)[0])
    assert table[("rmse", "4pl")].value < table[("rmse", "raw")].value
    v = table[("srcc", "raw")]
    assert v.ci_low < v.value < v.ci_high
    again, _ = quality_metrics(pred, true, logistic="4pl", n_boot=200, seed=5)
    assert [a.ci_low for a in again] == [a.ci_low for a in values]


def test_bootstrap_interval_covers_and_is_seeded(scores):
    pred, true = scores
    lo, hi = bootstrap_ci(plcc, pred, true, n_boot=300, seed=1)
    assert lo < plcc(pred, true) < hi
    assert (lo, hi) == bootstrap_ci(plcc, pred, true, n_boot=300, seed=1)
    assert (lo, hi) != bootstrap_ci(plcc, pred, true, n_boot=300, seed=2)


def test_cluster_metrics_match_sklearn_and_purity_by_hand():
    clusters = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    labels = np.array(["a", "a", "b", "b", "b", "c", "c", "a", "c"])
    assert cluster_purity(clusters, labels) == pytest.approx((2 + 2 + 3) / 9)
    out = cluster_metrics(clusters, labels)
    assert out["nmi"] == pytest.approx(normalized_mutual_info_score(labels, clusters))
    assert out["ari"] == pytest.approx(adjusted_rand_score(labels, clusters))
    perfect = cluster_metrics(np.array([5, 5, 7]), np.array(["x", "x", "y"]))
    assert perfect == {"purity": 1.0, "nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}
