"""GBC against Bhattacharyya distances written out pair by pair (Pándy et al., CVPR 2022)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import hadamard

import nctk
from nctk.errors import InputError
from nctk.transfer.gbc import gbc


def class_moments(features: np.ndarray, labels: np.ndarray) -> list[tuple]:
    """(mean, population variance floored at 1e-4) per class, in sorted label order."""
    return [(features[labels == c].mean(axis=0),
             np.maximum(features[labels == c].var(axis=0), 1e-4)) for c in np.unique(labels)]


def gaussian_bhattacharyya(mean_a, cov_a, mean_b, cov_b) -> float:
    """Textbook D_B = ⅛ ΔᵀΣ⁻¹Δ + ½ ln(det Σ / √(det Σa det Σb)), Σ = (Σa + Σb)/2."""
    cov = (cov_a + cov_b) / 2
    delta = mean_a - mean_b
    return (delta @ np.linalg.inv(cov) @ delta / 8
            + 0.5 * math.log(np.linalg.det(cov)
                             / math.sqrt(np.linalg.det(cov_a) * np.linalg.det(cov_b))))


def gbc_diagonal_by_pairs(features, labels) -> float:
    moments = class_moments(features, labels)
    return -sum(math.exp(-gaussian_bhattacharyya(ma, np.diag(va), mb, np.diag(vb)))
                for i, (ma, va) in enumerate(moments)
                for j, (mb, vb) in enumerate(moments) if i != j)


def gbc_spherical_reference_by_pairs(features, labels) -> float:
    """The reference's spherical form: scalar variances, log terms of the scalars."""
    total = 0.0
    moments = [(m, v.mean()) for m, v in class_moments(features, labels)]
    for i, (ma, sa) in enumerate(moments):
        for j, (mb, sb) in enumerate(moments):
            if i != j:
                s = (sa + sb) / 2
                distance = (sum((ma - mb) ** 2) / s / 8
                            + 0.5 * (math.log(s) - 0.5 * math.log(sa) - 0.5 * math.log(sb)))
                total -= math.exp(-distance)
    return total


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, 3], [5, 7, 6, 4])
    features = rng.normal(size=(4, 3))[labels] * 2 + rng.normal(size=(22, 3)) * [1, 0.5, 2]
    return features, labels


def test_diagonal_matches_textbook_bhattacharyya(data):
    features, labels = data
    assert gbc(features, labels, gaussian="diagonal") == pytest.approx(
        gbc_diagonal_by_pairs(features, labels), rel=1e-7)


def test_spherical_matches_reference_formula(data):
    features, labels = data
    assert gbc(features, labels) == pytest.approx(
        gbc_spherical_reference_by_pairs(features, labels), rel=1e-7)


def test_spherical_with_equal_variances_is_textbook():
    # When all classes share one isotropic variance the reference's log quirk vanishes.
    base = hadamard(4)[:, 1:] * 0.5
    labels = np.repeat([0, 1, 2], 4)
    features = np.vstack([base + shift for shift in ([0, 0, 0], [1, 2, 0], [0, -1, 3])])
    moments = class_moments(features, labels)
    expected = -sum(math.exp(-gaussian_bhattacharyya(ma, np.eye(3) * va.mean(), mb,
                                                     np.eye(3) * vb.mean()))
                    for i, (ma, va) in enumerate(moments)
                    for j, (mb, vb) in enumerate(moments) if i != j)
    assert gbc(features, labels) == pytest.approx(expected, rel=1e-7)


def test_registered_default_is_spherical(data):
    features, labels = data
    assert nctk.score("gbc", features, labels) == gbc(features, labels, gaussian="spherical")


@pytest.mark.parametrize("gaussian", ["spherical", "diagonal"])
def test_separated_classes_give_zero_and_identical_classes_the_minimum(gaussian):
    rng = np.random.default_rng(1)
    cloud = rng.normal(size=(6, 4))
    labels = np.repeat([0, 1, 2], 6)
    separated = np.vstack([cloud + 1e3 * k for k in range(3)])
    identical = np.vstack([cloud] * 3)
    # exact: each Bhattacharyya coefficient exp(-distance) underflows to 0 at 1e3 apart
    assert gbc(separated, labels, gaussian=gaussian) == 0.0
    assert gbc(identical, labels, gaussian=gaussian) == pytest.approx(-6.0, rel=1e-7)


def test_constant_features_and_single_sample_classes_are_floored():
    features = np.array([[1.0, 5.0], [1.0, 5.0], [1.0, 5.0], [2.0, 5.0]])
    labels = np.array([0, 0, 1, 2])
    assert gbc(features, labels, gaussian="diagonal") == pytest.approx(
        gbc_diagonal_by_pairs(features, labels), rel=1e-7)


def test_pca_dim_reduces_first(data):
    features, labels = data
    centred = features - features.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    reduced = u[:, :2] * s[:2]   # GBC is unchanged by the sign of a component
    for gaussian in ("spherical", "diagonal"):
        assert gbc(features, labels, gaussian=gaussian, pca_dim=2) == pytest.approx(
            gbc(reduced, labels, gaussian=gaussian), rel=1e-7)
    assert gbc(features, labels, pca_dim=50) == pytest.approx(
        gbc(u * s, labels), rel=1e-7)


def test_sample_permutation_and_label_renaming(data):
    features, labels = data
    base = gbc(features, labels, gaussian="diagonal")
    perm = np.random.default_rng(2).permutation(len(labels))
    assert gbc(features[perm], labels[perm], gaussian="diagonal") == pytest.approx(base,
                                                                                  rel=1e-7)
    for renamed in (np.array([3, 30, -1, 8])[labels], np.array(["d", "c", "b", "a"])[labels]):
        assert gbc(features, renamed, gaussian="diagonal") == pytest.approx(base, rel=1e-7)


def test_float32_and_float64_agree(data):
    features, labels = data
    single = features.astype(np.float32)
    for gaussian in ("spherical", "diagonal"):
        assert gbc(single, labels, gaussian=gaussian) == pytest.approx(
            gbc(single.astype(np.float64), labels, gaussian=gaussian), rel=1e-5)


def test_inputs_not_modified(data):
    features, labels = data
    features_copy, labels_copy = features.copy(), labels.copy()
    gbc(features, labels, pca_dim=2)
    np.testing.assert_array_equal(features, features_copy)
    np.testing.assert_array_equal(labels, labels_copy)


@pytest.mark.parametrize("case", ["nan", "inf", "one_class", "length", "gaussian", "pca_dim",
                                  "3d"])
def test_bad_input_is_input_error(data, case):
    features, labels = data
    features = features.copy()
    options = {}
    if case == "nan":
        features[1, 1] = np.nan
    elif case == "inf":
        features[2, 0] = np.inf
    elif case == "one_class":
        labels = np.zeros_like(labels)
    elif case == "length":
        labels = labels[:-2]
    elif case == "gaussian":
        options = {"gaussian": "full"}
    elif case == "pca_dim":
        options = {"pca_dim": 0}
    elif case == "3d":
        features = features[:, :, None]
    with pytest.raises(InputError):
        gbc(features, labels, **options)
