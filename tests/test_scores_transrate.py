"""TransRate against coding rates computed with an explicit determinant (Huang et al., 2022)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nctk
from nctk.errors import InputError
from nctk.transfer.transrate import coding_rate, transrate


def rate_by_det(a: np.ndarray, eps: float = 1e-4) -> float:
    """½ log det(I_d + AᵀA / (n ε)) on the d×d side, whatever the shape."""
    n, d = a.shape
    return 0.5 * math.log(np.linalg.det(np.eye(d) + a.T @ a / (n * eps)))


def transrate_by_det(features, labels, weights="uniform", center_classes=False, eps=1e-4):
    f = features - features.mean(axis=0)
    classes = sorted(set(labels.tolist()))
    total = rate_by_det(f, eps)
    for c in classes:
        rows = f[labels == c]
        if center_classes:
            rows = rows - rows.mean(axis=0)
        weight = 1 / len(classes) if weights == "uniform" else len(rows) / len(f)
        total -= weight * rate_by_det(rows, eps)
    return total


@pytest.fixture
def data():
    # 4 dimensions; classes of 2 to 5 rows, so both the Gram and the covariance side are used.
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [2, 5, 3])
    features = rng.normal(size=(3, 4))[labels] + 0.3 * rng.normal(size=(10, 4))
    return features, labels


def test_matches_determinant_formula(data):
    features, labels = data
    assert transrate(features, labels) == pytest.approx(transrate_by_det(features, labels),
                                                        rel=1e-7)


@pytest.mark.parametrize(("weights", "center"), [("prior", False), ("uniform", True),
                                                 ("prior", True)])
def test_options_match_determinant_formula(data, weights, center):
    features, labels = data
    expected = transrate_by_det(features, labels, weights, center)
    assert transrate(features, labels, class_weights=weights, center_classes=center) == (
        pytest.approx(expected, rel=1e-7))


def test_custom_eps(data):
    features, labels = data
    assert transrate(features, labels, eps=0.5) == pytest.approx(
        transrate_by_det(features, labels, eps=0.5), rel=1e-7)


@pytest.mark.parametrize("shape", [(3, 7), (7, 3), (5, 5)])
def test_coding_rate_on_either_side(shape):
    a = np.random.default_rng(1).normal(size=shape)
    assert coding_rate(a) == pytest.approx(rate_by_det(a), rel=1e-7)


def test_registered(data):
    features, labels = data
    assert nctk.score("transrate", features, labels) == transrate(features, labels)


def test_translation_invariance_and_constant_features_give_zero(data):
    features, labels = data
    assert transrate(features + np.array([5, -2, 0, 100]), labels) == pytest.approx(
        transrate(features, labels), rel=1e-7)
    assert transrate(np.full((10, 4), 3.0), labels) == 0.0


def test_sample_permutation_and_label_renaming(data):
    features, labels = data
    base = transrate(features, labels)
    perm = np.random.default_rng(2).permutation(len(labels))
    assert transrate(features[perm], labels[perm]) == pytest.approx(base, rel=1e-7)
    for renamed in (np.array([4, 40, 400])[labels], np.array(["c", "a", "b"])[labels]):
        assert transrate(features, renamed) == pytest.approx(base, rel=1e-7)


def test_float32_and_float64_agree(data):
    features, labels = data
    single = features.astype(np.float32)
    assert transrate(single, labels) == pytest.approx(
        transrate(single.astype(np.float64), labels), rel=1e-7)
    assert transrate(single, labels) == pytest.approx(transrate(features, labels), rel=1e-5)


def test_inputs_not_modified(data):
    features, labels = data
    features_copy, labels_copy = features.copy(), labels.copy()
    transrate(features, labels, center_classes=True)
    np.testing.assert_array_equal(features, features_copy)
    np.testing.assert_array_equal(labels, labels_copy)


@pytest.mark.parametrize("case", ["nan", "inf", "one_class", "length", "eps", "weights",
                                  "strings"])
def test_bad_input_is_input_error(data, case):
    features, labels = data
    features = features.copy()
    options = {}
    if case == "nan":
        features[0, 0] = np.nan
    elif case == "inf":
        features[9, 3] = -np.inf
    elif case == "one_class":
        labels = np.full(10, "a")
    elif case == "length":
        labels = np.append(labels, 1)
    elif case == "eps":
        options = {"eps": 0.0}
    elif case == "weights":
        options = {"class_weights": "size"}
    elif case == "strings":
        features = features.astype(str)
    with pytest.raises(InputError):
        transrate(features, labels, **options)
