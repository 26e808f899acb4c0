"""benchmarks/rule_selection.py: the vectorised weighted tau its bootstraps use, against
scipy's, on draws with repeated models and tied scores."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from benchmark_scripts import benchmark_module


@pytest.fixture(scope="module")
def selection():
    with benchmark_module("rule_selection") as module:
        yield module


def test_batch_weighted_tau_is_scipys(selection):
    """Every row equals scipy.stats.weightedtau (its defaults) to 1e-12, ties in x, in y
    and in both (a model drawn twice) included; a constant row is NaN in both."""
    rng = np.random.default_rng(0)
    for trial in range(200):
        m = int(rng.integers(2, 30))
        x = rng.integers(0, 5, m).astype(float) if trial % 3 == 0 else rng.normal(size=m)
        y = rng.integers(0, 4, m).astype(float) if trial % 2 == 0 else rng.normal(size=m)
        draw = rng.integers(0, m, size=(3, m))
        got = selection.batch_weighted_tau(x[draw], y[draw])
        want = [stats.weightedtau(x[d], y[d]).statistic for d in draw]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-7, equal_nan=True)
    constant = selection.batch_weighted_tau(np.ones((1, 5)), np.arange(5.0)[None])
    assert np.isnan(constant[0]) and np.isnan(stats.weightedtau(np.ones(5),
                                                                np.arange(5.0)).statistic)


def test_a_perfect_and_a_reversed_ranking(selection):
    x = np.arange(6.0)[None]
    assert selection.batch_weighted_tau(x, 2 * x + 1)[0] == pytest.approx(1.0, abs=1e-7)
    assert selection.batch_weighted_tau(x, -x)[0] == pytest.approx(-1.0, abs=1e-7)


def test_bootstrap_taus_resample_the_same_models_in_every_target(selection):
    rng = np.random.default_rng(1)
    pairs = [(rng.normal(size=8), rng.normal(size=8)) for _ in range(3)]
    draws = selection.bootstrap_draws(8, 50, seed=4)
    got = selection.bootstrap_taus(pairs, draws)
    assert got.shape == (50, 3)
    want = [[stats.weightedtau(x[d], y[d]).statistic for x, y in pairs] for d in draws]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7, equal_nan=True)
