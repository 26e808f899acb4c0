"""DISCO against the official route re-enacted: PCA, SVD of the scores, reconstruction of
each spectral group, an identity-covariance Gaussian posterior per group."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import nctk
from nctk.errors import InputError
from nctk.transfer.disco import disco_groups, disco_score
from scores_core_data import blobs


@pytest.fixture(scope="module")
def data():
    return blobs(n=200, d=40, classes=5, spread=1.5, seed=9)


def ncc_by_hand(features, codes):
    """The reference's Ncc_score: log N(x; mu_c, I) + log(n_c / N), softmax, true class."""
    n = len(codes)
    logits = np.stack([multivariate_normal.logpdf(features, features[codes == c].mean(0))
                       + np.log(np.mean(codes == c)) for c in range(codes.max() + 1)], axis=1)
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return p[np.arange(n), codes].mean()


def disco_by_hand(x, y, pca_dim=128, groups=8):
    _, codes = np.unique(y, return_inverse=True)
    k = min(pca_dim, x.shape[1], len(x) - 1)
    centred = x - x.mean(0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    scores = u[:, :k] * s[:k]                        # exact PCA scores
    u2, s2, vt2 = np.linalg.svd(scores, full_matrices=False)
    groups = min(groups, k)
    size = k // groups
    parts = []
    for g in range(groups):
        part = slice(g * size, (g + 1) * size)
        reconstruction = u2[:, part] @ np.diag(s2[part]) @ vt2[part]
        parts.append((s2[part].sum() / s2.sum(), ncc_by_hand(reconstruction, codes)))
    return parts


def test_groups_match_the_reference_route(data):
    x, y = data
    got = disco_groups(x, y, pca_dim=32, groups=8)
    want = disco_by_hand(x, y, pca_dim=32, groups=8)
    assert len(got) == 8
    for g, (ratio, ncc) in zip(got, want, strict=True):
        assert g["ratio"] == pytest.approx(ratio, rel=1e-7)
        assert g["ncc"] == pytest.approx(ncc, rel=1e-7)
    assert disco_score(x, y, pca_dim=32) == pytest.approx(sum(r * c for r, c in want),
                                                          rel=1e-7)


def test_default_dimension_is_capped_by_d_and_n(data):
    x, y = data
    want = disco_by_hand(x, y)  # k = min(128, 40, 199) = 40: 8 groups of 5
    got = disco_groups(x, y)
    assert [g["ratio"] for g in got] == pytest.approx([r for r, _ in want], rel=1e-7)
    assert [g["ncc"] for g in got] == pytest.approx([c for _, c in want], rel=1e-7)
    few = disco_groups(x[:6], y[:6])  # k = 5 < 8 groups: one component per group
    assert len(few) == 5


def test_remainder_components_are_in_no_group_but_in_the_total(data):
    x, y = data
    got = disco_groups(x, y, pca_dim=35)  # 8 groups of 4, 3 components left over
    assert len(got) == 8 and sum(g["ratio"] for g in got) < 1
    full = disco_groups(x, y, pca_dim=32)  # the ratios share the spectrum of k components
    assert sum(g["ratio"] for g in full) == pytest.approx(1.0, rel=1e-7)


def test_invariant_to_sample_order_and_label_names(data):
    x, y = data
    want = disco_score(x, y)
    perm = np.random.default_rng(4).permutation(len(y))
    assert disco_score(x[perm], y[perm]) == pytest.approx(want, rel=1e-7)
    assert disco_score(x, np.array(list("vwxyz"))[y]) == pytest.approx(want, rel=1e-7)


def test_limits():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    collapsed = 100 * np.eye(3)[y] + 1e-9 * rng.normal(size=(60, 3))
    # one group holding the whole spectrum: every sample sits on its class mean. Exact by
    # construction: the one ratio divides a sum by itself, and the posteriors' margins
    # (~1e4 in the logits) make each true-class probability 1.0 in float64
    assert disco_score(collapsed, y, groups=1) == 1.0
    # one component per group: the third carries no variance, hence no weight. A singular
    # value is the square root of an eigenvalue known to ~eps |lambda_1| only, so a zero
    # ratio comes out as ~sqrt(eps) ~ 1e-8 (6e-9 with one thread here): 1e-7, not less
    groups = disco_groups(collapsed, y)
    assert [g["ratio"] for g in groups] == pytest.approx([0.5, 0.5, 0.0], abs=1e-7)
    assert 0 < disco_score(collapsed, y) <= 1 + 1e-7
    with pytest.raises(InputError, match="constant"):
        disco_score(np.ones((10, 4)), np.arange(10) % 2)


@pytest.mark.parametrize("option, value", [("pca_dim", 0), ("groups", -1), ("groups", 1.5)])
def test_bad_options(data, option, value):
    x, y = data
    with pytest.raises(InputError, match=option):
        nctk.score("disco", x, y, **{option: value})
