"""PARC against explicit RDMs and scipy's Spearman correlation (Bolya et al., NeurIPS 2021)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist

import nctk
from nctk.errors import InputError
from nctk.sampling import proportional
from nctk.transfer.parc import _spearman_with_binary, parc


def parc_by_rdms(features: np.ndarray, labels: np.ndarray, dim: int = 32) -> float:
    """PCA (SVD; each component's largest loading made positive), z-score, RDMs, Spearman."""
    centred = features - features.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(dim, np.linalg.matrix_rank(centred))   # components that carry variance
    signs = np.sign(vt[np.arange(k), np.argmax(np.abs(vt[:k]), axis=1)])
    reduced = u[:, :k] * s[:k] * signs
    scaled = (reduced - reduced.mean(axis=0)) / reduced.std(axis=0)
    classes = sorted(set(labels.tolist()))
    onehot = np.array([[float(label == c) for c in classes] for label in labels.tolist()])
    n = len(labels)
    feature_rdm = [1 - np.corrcoef(scaled[i], scaled[j])[0, 1]
                   for i in range(n) for j in range(i + 1, n)]
    label_rdm = [1 - np.corrcoef(onehot[i], onehot[j])[0, 1]
                 for i in range(n) for j in range(i + 1, n)]
    np.testing.assert_allclose(feature_rdm, pdist(scaled, "correlation"), atol=1e-7)
    return 100 * stats.spearmanr(feature_rdm, label_rdm).statistic


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, 3], [6, 9, 7, 8])
    features = rng.normal(size=(4, 40))[labels] + 1.5 * rng.normal(size=(30, 40))
    return features, labels


def test_matches_explicit_rdms_and_spearman(data):
    features, labels = data
    assert parc(features, labels) == pytest.approx(parc_by_rdms(features, labels), rel=1e-7)


def test_spearman_with_ties_uses_average_ranks():
    rng = np.random.default_rng(6)
    values = rng.integers(0, 6, size=300).astype(float)   # many ties
    indicator = rng.random(300) < 0.3 + values / 20
    assert _spearman_with_binary(values, indicator) == pytest.approx(
        stats.spearmanr(values, indicator).statistic, rel=1e-7)


def test_dimension_option_and_cap(data):
    features, labels = data
    assert parc(features, labels, dim=5) == pytest.approx(parc_by_rdms(features, labels, 5),
                                                          rel=1e-7)
    few = features[:, :6]   # d < 32: every component is kept
    assert parc(few, labels) == pytest.approx(parc_by_rdms(few, labels), rel=1e-7)


def test_registered(data):
    features, labels = data
    assert nctk.score("parc", features, labels) == parc(features, labels)


def test_clustered_features_score_high_and_random_features_near_zero(data):
    _, labels = data
    rng = np.random.default_rng(3)
    clustered = 10 * rng.normal(size=(4, 3))[labels] + 0.1 * rng.normal(size=(30, 3))
    unrelated = rng.normal(size=(30, 40))
    assert parc(clustered, labels) > 50
    assert abs(parc(unrelated, labels)) < 10


def test_sample_permutation_and_label_renaming(data):
    features, labels = data
    base = parc(features, labels)
    perm = np.random.default_rng(2).permutation(len(labels))
    assert parc(features[perm], labels[perm]) == pytest.approx(base, rel=1e-7)
    for renamed in (np.array([9, 0, 90, 900])[labels], np.array(["w", "x", "a", "b"])[labels]):
        assert parc(features, renamed) == pytest.approx(base, rel=1e-7)


def test_large_inputs_use_the_seeded_subsample(data):
    features, labels = data
    keep = proportional(labels, 20, 5)
    assert parc(features, labels, max_samples=20, seed=5) == pytest.approx(
        parc(features[keep], labels[keep], max_samples=None), rel=1e-7)
    assert parc(features, labels, max_samples=30) == parc(features, labels, max_samples=None)


def test_float32_and_float64_agree(data):
    features, labels = data
    single = features.astype(np.float32)
    assert parc(single, labels) == pytest.approx(parc(single.astype(np.float64), labels),
                                                 rel=1e-7)
    assert parc(single, labels) == pytest.approx(parc(features, labels), rel=1e-5)


def test_inputs_not_modified(data):
    features, labels = data
    features_copy, labels_copy = features.copy(), labels.copy()
    parc(features, labels, max_samples=20)
    np.testing.assert_array_equal(features, features_copy)
    np.testing.assert_array_equal(labels, labels_copy)


@pytest.mark.parametrize("case", ["nan", "inf", "one_class", "length", "one_dim",
                                  "all_pairs_differ", "max_samples", "constant_sample"])
def test_bad_input_is_input_error(data, case):
    features, labels = data
    features = features.copy()
    options = {}
    if case == "nan":
        features[4, 4] = np.nan
    elif case == "inf":
        features[7, 0] = np.inf
    elif case == "one_class":
        labels = np.zeros_like(labels)
    elif case == "length":
        labels = labels[:10]
    elif case == "one_dim":
        features = features[:, :1]
    elif case == "all_pairs_differ":   # every sample its own class
        features, labels = features[:5], np.arange(5)
    elif case == "max_samples":
        options = {"max_samples": 2}
    elif case == "constant_sample":    # two features, one sample on the mean: no correlation
        features = np.array([[1.0, 1.0], [-1.0, -1.0], [0.0, 0.0], [1.0, -1.0], [-1.0, 1.0]])
        labels = np.array([0, 0, 1, 1, 1])
    with pytest.raises(InputError):
        parc(features, labels, **options)
