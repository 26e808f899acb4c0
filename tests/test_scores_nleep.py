"""NLEEP: PCA (> 80 % energy), Gaussian mixture, then LEEP on its responsibilities."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import hadamard
from sklearn.mixture import GaussianMixture

import nctk
from nctk.errors import InputError
from nctk.sampling import proportional
from nctk.transfer import get_method
from nctk.transfer.leep import nleep, pca_keeping_energy, unit_scale


def numpy_pca_keeping_energy(x: np.ndarray, energy: float) -> np.ndarray:
    centred = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    ratios = np.cumsum(s**2) / np.sum(s**2)
    k = next(i + 1 for i, r in enumerate(ratios) if r > energy)
    return u[:, :k] * s[:k]


def leep_of_assignment_by_loops(theta: np.ndarray, labels: list, log: bool) -> float:
    n, k = theta.shape
    classes = sorted(set(labels))
    joint = {(y, g): sum(theta[i, g] for i in range(n) if labels[i] == y) / n
             for y in classes for g in range(k)}
    total = 0.0
    for i in range(n):
        likelihood = sum(theta[i, g] * joint[labels[i], g] / sum(joint[y, g] for y in classes)
                         for g in range(k))
        total += math.log(likelihood) if log else likelihood
    return total / n


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4.0, size=(3, 6))
    labels = np.repeat([0, 1, 2], 20)
    features = centres[labels] + rng.normal(size=(60, 6)) * [3, 2, 1, 0.5, 0.2, 0.1]
    return features, labels


@pytest.mark.parametrize("log", [True, False])
def test_matches_independent_pipeline(data, log):
    features, labels = data
    reduced = numpy_pca_keeping_energy(features, 0.8)
    theta = GaussianMixture(n_components=15, random_state=0).fit(reduced).predict_proba(reduced)
    expected = leep_of_assignment_by_loops(theta, labels.tolist(), log)
    assert nleep(features, labels, log=log) == pytest.approx(expected, rel=1e-6)
    assert expected < 0 if log else 0 < expected <= 1


@pytest.mark.parametrize(("variances", "kept"), [
    ([0.7, 0.15, 0.1, 0.05], 2),     # 0.7 < 0.8 < 0.85
    ([0.5, 0.25, 0.15, 0.1], 3),     # 0.75 < 0.8 < 0.9
    ([0.9, 0.05, 0.03, 0.02], 1),
])
def test_pca_keeps_fewest_components_above_80_percent(variances, kept):
    # Orthogonal zero-mean ±1 columns (Hadamard), scaled: exact explained-variance ratios.
    x = hadamard(8)[:, 1:5] * np.sqrt(variances)
    reduced = pca_keeping_energy(x)
    assert reduced.shape == (8, kept)
    np.testing.assert_allclose(np.abs(reduced), np.abs(numpy_pca_keeping_energy(x, 0.8)),
                               atol=1e-7)


def test_registered_for_features(data):
    features, labels = data
    assert get_method("nleep").input == "features"
    assert nctk.score("nleep", features, labels) == nleep(features, labels)


def test_seeded_deterministic_and_float_ratio_cast(data):
    features, labels = data
    assert nleep(features, labels, ratio=2.0, seed=3) == nleep(features, labels, ratio=2, seed=3)


def test_separated_classes_with_one_component_each_give_zero():
    # One tight cluster per class and ratio 1: each component is one class.
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1, 2], 10)
    features = 100.0 * np.eye(3)[labels] + 0.01 * rng.normal(size=(30, 3))
    assert nleep(features, labels, ratio=1) == pytest.approx(0.0, abs=1e-7)


def test_sample_permutation_and_label_renaming(data):
    # The mixture depends on the row order in general; on separated clusters it does not.
    features, labels = data
    base = nleep(features, labels, ratio=1)
    perm = np.random.default_rng(1).permutation(len(labels))
    assert nleep(features[perm], labels[perm], ratio=1) == pytest.approx(base, rel=1e-6)
    assert nleep(features, np.array(["z", "a", "q"])[labels], ratio=1) == pytest.approx(
        base, rel=1e-7)
    assert nleep(features, np.array([5, 50, -5])[labels], ratio=1) == pytest.approx(
        base, rel=1e-7)


def test_float32_and_float64_agree(data):
    features, labels = data
    single = features.astype(np.float32)
    assert nleep(single, labels) == pytest.approx(nleep(single.astype(np.float64), labels),
                                                  rel=1e-5)


def test_inputs_not_modified(data):
    features, labels = data
    features_copy, labels_copy = features.copy(), labels.copy()
    nleep(features, labels)
    np.testing.assert_array_equal(features, features_copy)
    np.testing.assert_array_equal(labels, labels_copy)


@pytest.mark.parametrize("case", ["nan", "inf", "one_class", "length", "too_few", "ratio",
                                  "constant"])
def test_bad_input_is_input_error(data, case):
    features, labels = data
    features = features.copy()
    options = {}
    if case == "nan":
        features[3, 3] = np.nan
    elif case == "inf":
        features[0, 5] = np.inf
    elif case == "one_class":
        labels = np.ones_like(labels)
    elif case == "length":
        labels = labels[1:]
    elif case == "too_few":   # 60 samples < 3 classes x 25 components
        options = {"ratio": 25}
    elif case == "ratio":
        options = {"ratio": 0.1}
    elif case == "constant":
        features = np.ones_like(features)
    with pytest.raises(InputError):
        nleep(features, labels, **options)


@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_feature_scale_does_not_matter(data, scale):
    # the mixture's absolute covariance floor made 1e30 features fail (ValueError) and
    # 1e-30 ones uninformative; the reduced features are now brought to unit scale
    features, labels = data
    base = nleep(features, labels)
    for dtype in (np.float64, np.float32):
        assert nleep((features * scale).astype(dtype), labels) == pytest.approx(base, rel=1e-5)


def test_large_inputs_use_a_seeded_proportional(data):
    features, labels = data
    big = np.repeat(features, 5, axis=0) + np.random.default_rng(3).normal(
        scale=0.1, size=(300, 6))
    big_labels = np.repeat(labels, 5)
    got = nleep(big, big_labels, max_samples=60, seed=4)
    rows = proportional(np.unique(big_labels, return_inverse=True)[1], 60, 4)
    assert got == nleep(big[rows], big_labels[rows], max_samples=None, seed=4)
    assert nleep(big, big_labels, max_samples=None) != got
    with pytest.raises(InputError, match="max_samples"):
        nleep(big, big_labels, max_samples=2)


@pytest.mark.parametrize("scale", [1.0, 1e30, 1e-30, 3.7])
def test_unit_scale_is_an_exact_power_of_two(scale):
    # the docstring's "exact (a power of two changes no digit)": every entry is the input
    # times one power of two, and the mean column variance lands in [1, 4)
    x = np.random.default_rng(2).normal(size=(50, 6)) * scale
    got = unit_scale(x)
    ratio = got / x
    exponent = np.log2(ratio[0, 0])
    assert exponent == round(exponent)
    np.testing.assert_array_equal(got, np.ldexp(x, int(exponent)))
    assert 1 <= got.var(axis=0).mean() < 4
