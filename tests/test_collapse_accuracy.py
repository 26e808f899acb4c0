"""NC1 against accuracy: linear probe per layer and the pool correlation (Li et al. §3.2)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from nctk.collapse import correlate, layer_nc1_vs_probe, nc1_vs_transfer, probe_accuracy
from nctk.errors import InputError
from nctk.io import FeatureFile


def _digits(n=360):
    x, y = load_digits(return_X_y=True)
    return x[:n] / 16.0, y[:n]


def test_probe_accuracy_is_the_documented_pipeline():
    x, y = _digits()
    got = probe_accuracy(x, y, seed=3)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=3, stratify=y)
    scaler = StandardScaler().fit(x_tr)
    model = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(x_tr), y_tr)
    assert got == pytest.approx(model.score(scaler.transform(x_te), y_te))
    assert got > 0.85
    assert probe_accuracy(x, y, seed=3) == got  # seeded: deterministic


def test_probe_accuracy_is_chance_on_noise_and_checks_its_split():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 60)
    assert probe_accuracy(rng.normal(size=(240, 5)), y) < 0.5
    with pytest.raises(InputError, match="too few"):
        probe_accuracy(rng.normal(size=(8, 3)), np.repeat(np.arange(4), 2))
    with pytest.raises(InputError, match="at least 2 per class"):
        probe_accuracy(rng.normal(size=(5, 3)), [0, 0, 1, 1, 2])


def test_correlate_uses_minus_nc1_so_the_papers_trend_is_positive():
    nc1 = {"a": 0.5, "b": 1.0, "c": 2.0, "d": 4.0}
    acc = {"a": 0.9, "b": 0.8, "c": 0.75, "d": 0.6}
    got = correlate(nc1, acc)
    x = [-v for v in nc1.values()]
    y = list(acc.values())
    assert got["spearman"] == pytest.approx(1.0)
    assert got["pearson"] == pytest.approx(scipy.stats.pearsonr(x, y).statistic)
    assert got["weighted_tau"] == pytest.approx(scipy.stats.weightedtau(x, y).statistic)


def test_layer_nc1_vs_probe_pairs_each_layer():
    x, y = _digits()
    noisy = x + np.random.default_rng(0).normal(scale=2.0, size=x.shape)
    ff = FeatureFile(name="m", features=x, labels=y, layers={"noisy": noisy})
    got = layer_nc1_vs_probe(ff)
    assert list(got["layers"]) == ["noisy", "penultimate"]
    assert got["layers"]["noisy"]["nc1"] > got["layers"]["penultimate"]["nc1"]
    assert (got["layers"]["noisy"]["probe_accuracy"]
            < got["layers"]["penultimate"]["probe_accuracy"])
    assert got["correlation"]["spearman"] == pytest.approx(1.0)


def test_nc1_vs_transfer_over_a_pool():
    x, y = _digits()
    rng = np.random.default_rng(1)
    pool = [FeatureFile(name=f"m{i}", features=x + rng.normal(scale=s, size=x.shape), labels=y)
            for i, s in enumerate([0.1, 0.6, 1.5])]
    truth = {"m0": 0.9, "m1": 0.7, "m2": 0.5}
    got = nc1_vs_transfer(pool, truth)
    assert list(got["models"]) == ["m0", "m1", "m2"]
    assert got["models"]["m1"]["accuracy"] == 0.7
    assert got["correlation"]["spearman"] == pytest.approx(1.0)
    with pytest.raises(InputError, match="at least 3"):
        nc1_vs_transfer(pool[:2], truth)
    with pytest.raises(InputError, match=r"no accuracy for model\(s\) \['m2'\]"):
        nc1_vs_transfer(pool, {"m0": 0.9, "m1": 0.7})
