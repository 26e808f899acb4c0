"""NCTI against a textbook computation, scikit-learn's LDA, and its own invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

import nctk
from nctk.errors import InputError
from nctk.transfer.ncti import (
    NctiTerms,
    combine_pool,
    independent_terms,
    ncti_terms,
    vc_bounds,
)
from scores_core_data import blobs


def _softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def textbook_ncti(x: np.ndarray, y: np.ndarray) -> dict:
    """NCTI written directly from the formulas (exact SVD PCA, Gaussian LDA posteriors)."""
    classes, y = np.unique(y, return_inverse=True)
    n, d = x.shape
    c = len(classes)
    k = min(64, d, n - 1)
    xc = x - x.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    z = xc @ vt[:k].T
    top = (s[:32] ** 2 / (n - 1)).sum()
    counts = np.bincount(y)
    priors = counts / n
    means = np.stack([z[y == j].mean(0) for j in range(c)])
    resid = z - means[y]
    within = resid.T @ resid
    r = min(c - 1, k)
    svd_path = math.exp(-top) <= 1e-10
    if svd_path:
        sigma = within / (n - c)
        centre = z.mean(0)
        between = sum(counts[j] * np.outer(means[j] - centre, means[j] - centre)
                      for j in range(c))
        _, vecs = scipy.linalg.eigh(between, sigma)
        proj = (z - centre) @ vecs[:, ::-1][:, :r]
    else:
        alpha = math.exp(-top)

        def shr(m):
            return (1 - alpha) * m + alpha * np.trace(m) / k * np.eye(k)

        sigma = shr(within / n)
        _, vecs = scipy.linalg.eigh(shr(z.T @ z / n) - sigma, sigma)
        proj = z @ vecs[:, ::-1][:, :r]
    inv = np.linalg.inv(sigma)
    diff = z[:, None, :] - means[None, :, :]
    logits = -0.5 * np.einsum("ncd,de,nce->nc", diff, inv, diff) + np.log(priors)
    post = _softmax(logits)
    proj = proj - proj.mean(0)
    return {"seli": np.linalg.norm(proj, "nuc"), "ncc": post[np.arange(n), y].mean(),
            "vc": math.log(sum(np.linalg.norm(post[y == j], "nuc") for j in range(c))),
            "svd_path": svd_path}


CASES = {
    "svd_path": dict(n=400, d=90, classes=6, spread=1.5),
    "svd_many_classes": dict(n=500, d=80, classes=70, spread=4.0),
    "eigen_path": dict(n=400, d=90, classes=6, spread=1.5, scale=0.03),
    "small_d": dict(n=200, d=12, classes=5, spread=2.0),
}


@pytest.mark.parametrize("case", CASES)
def test_matches_textbook(case):
    x, y = blobs(**CASES[case])
    got = ncti_terms(x, y)
    want = textbook_ncti(x, y)
    assert got.svd_path == want["svd_path"] == (case != "eigen_path")
    for term in ("seli", "ncc", "vc"):
        assert getattr(got, term) == pytest.approx(want[term], rel=1e-7)
    assert 0 < got.ncc < 1


def test_eigen_path_matches_sklearn_lda():
    x, y = blobs(n=400, d=90, classes=6, spread=1.5, scale=0.03, seed=3)
    got = ncti_terms(x, y)
    assert not got.svd_path
    z = PCA(64, svd_solver="full").fit_transform(x)
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=got.alpha).fit(z, y)
    proj = lda.transform(z)
    post = lda.predict_proba(z)
    assert got.seli == pytest.approx(np.linalg.norm(proj - proj.mean(0), "nuc"), rel=1e-7)
    assert got.ncc == pytest.approx(post[np.arange(len(y)), y].mean(), rel=1e-7)


def test_svd_path_projection_matches_sklearn_up_to_its_denominator():
    # scikit-learn 1.9.1 whitens with W / N instead of W / (N - C) (spec §2.4), which
    # scales the projection by sqrt(N / (N - C)).
    x, y = blobs(n=300, d=80, classes=30, spread=1.0, seed=4)
    got = ncti_terms(x, y)
    assert got.svd_path
    z = PCA(64, svd_solver="full").fit_transform(x)
    proj = LinearDiscriminantAnalysis(solver="svd").fit_transform(z, y)
    n, c = len(y), 30
    want = np.linalg.norm(proj - proj.mean(0), "nuc") * math.sqrt((n - c) / n)
    assert got.seli == pytest.approx(want, rel=1e-7)


def test_svd_path_seli_closed_form():
    # On the svd path L^T L = (N - C) I + diag(between eigenvalues) in the LDA basis.
    x, y = blobs(n=300, d=40, classes=5, seed=5)
    got = ncti_terms(x, y)
    n, c = len(y), 5
    assert got.seli_within == pytest.approx(got.lda_dim * math.sqrt(n - c), rel=1e-7)


def test_invariances():
    x, y = blobs(n=250, d=70, classes=5, spread=1.5, seed=6)
    base = ncti_terms(x, y)
    perm = np.random.default_rng(0).permutation(len(y))
    names = np.array(["cat", "dog", "eel", "fox", "gnu"])[y]
    gapped = np.array([3, 10, 42, 7, 1000])[y]
    rotation = np.linalg.qr(np.random.default_rng(1).standard_normal((70, 70)))[0]
    for xx, yy in [(x[perm], y[perm]), (x, names), (x, gapped), (x @ rotation, y),
                   (x + 5.0, y)]:
        other = ncti_terms(xx, yy)
        for term in ("seli", "ncc", "vc"):
            assert getattr(other, term) == pytest.approx(getattr(base, term), rel=1e-7)


def test_float32_and_torch_agree_and_input_untouched():
    x, y = blobs(n=300, d=70, classes=6, spread=1.5, seed=7)
    x32 = x.astype(np.float32)
    keep = x32.copy()
    ref = ncti_terms(x32.astype(np.float64), y)
    t32 = ncti_terms(x32, y)
    tt = ncti_terms(torch.from_numpy(x32.astype(np.float64)), torch.from_numpy(y))
    for term in ("seli", "ncc", "vc"):
        assert getattr(t32, term) == pytest.approx(getattr(ref, term), rel=1e-5)
        assert getattr(tt, term) == pytest.approx(getattr(ref, term), rel=1e-7)
    np.testing.assert_array_equal(x32, keep)


def test_pool_combination_is_min_max():
    raw = {"a": {"seli": 10.0, "ncc": 0.5, "vc": 3.0}, "b": {"seli": 30.0, "ncc": 0.9,
           "vc": 2.0}, "c": {"seli": 20.0, "ncc": 0.7, "vc": 4.0}}
    scores, comps = combine_pool(raw)
    assert scores["a"] == pytest.approx(0.0 + 0.0 - 0.5)
    assert scores["b"] == pytest.approx(1.0 + 1.0 - 0.0)
    assert scores["c"] == pytest.approx(0.5 + 0.5 - 1.0)
    assert comps["c"]["vc_norm"] == 1.0 and comps["c"]["vc"] == 4.0
    weighted, _ = combine_pool(raw, w_seli=2.0, w_ncc=0.0, w_vc=0.5)
    assert weighted["c"] == pytest.approx(2 * 0.5 - 0.5 * 1.0)


def test_degenerate_pool_gets_midpoint():
    raw = {"a": {"seli": 1.0, "ncc": 0.5, "vc": 3.0}, "b": {"seli": 1.0, "ncc": 0.7, "vc": 3.0}}
    scores, comps = combine_pool(raw)
    assert comps["a"]["seli_norm"] == comps["b"]["vc_norm"] == 0.5
    assert scores == {"a": pytest.approx(0.5 + 0.0 - 0.5), "b": pytest.approx(0.5 + 1.0 - 0.5)}
    single, _ = combine_pool({"only": raw["a"]})
    assert single["only"] == pytest.approx(0.5)
    with pytest.raises(InputError, match="weights"):
        combine_pool(raw, w_vc=float("nan"))


def test_rank_through_registry_reports_components():
    x, y = blobs(n=200, d=70, classes=4, spread=1.0, seed=8)
    noisy = x + 3.0 * np.random.default_rng(2).standard_normal(x.shape)
    result = nctk.rank({"clean": x, "noisy": noisy}, y, "ncti")
    assert result.ranking == ["clean", "noisy"]
    comp = result.components["clean"]
    assert {"seli", "ncc", "vc", "seli_norm", "ncc_norm", "vc_norm", "svd_path",
            "alpha"} <= set(comp)
    assert comp["svd_path"] == 1.0


def test_pool_independent_bounds_and_collapse_limit():
    x, y = blobs(n=300, d=30, classes=5, spread=1.0, seed=9)
    rng = np.random.default_rng(3)
    for xx, yy in [(x, y), (x, rng.permutation(y)), (x * 1e-3, y)]:
        t = independent_terms(ncti_terms(xx, yy))
        assert all(0.0 <= v <= 1.0 for v in t.values())
        assert -1.0 <= nctk.score("ncti", xx, yy) <= 2.0
    means = rng.standard_normal((5, 30)) * 10
    near = means[y] + 1e-6 * rng.standard_normal((300, 30))
    t = independent_terms(ncti_terms(near, y))
    assert t["seli"] > 0.999 and t["ncc"] == pytest.approx(1.0) and t["vc"] < 1e-6
    assert nctk.score("ncti", near, y) == pytest.approx(2.0, abs=1e-3)
    shuffled = independent_terms(ncti_terms(x, rng.permutation(y)))
    assert shuffled["seli"] < independent_terms(ncti_terms(x, y))["seli"]


def _posterior_vc(blocks: list[np.ndarray]) -> float:
    return math.log(sum(np.linalg.norm(b, "nuc") for b in blocks))


def test_vc_bounds_are_true_bounds_and_uniform_posteriors_are_not_collapsed():
    counts = np.array([32, 8, 12, 3])  # divisible by C = 4, or below it: v_max is reached
    c = len(counts)
    v_min, v_nc, v_max = vc_bounds(counts)
    rng = np.random.default_rng(0)
    uniform = [np.full((n, c), 1 / c) for n in counts]
    collapsed = [np.eye(c)[np.full(n, j)] for j, n in enumerate(counts)]
    spread = [np.eye(c)[np.arange(n) % c] for n in counts]
    assert _posterior_vc(uniform) == pytest.approx(v_min, rel=1e-7)
    assert _posterior_vc(collapsed) == pytest.approx(v_nc, rel=1e-7)
    assert _posterior_vc(spread) == pytest.approx(v_max, rel=1e-7)
    for _ in range(200):  # random row-stochastic posteriors stay inside the bounds
        blocks = [rng.dirichlet(np.full(c, rng.uniform(0.05, 5)), size=n) for n in counts]
        assert v_min - 1e-7 * abs(v_min) <= _posterior_vc(blocks) <= v_max + 1e-7 * abs(v_max)

    def normalised(blocks):
        terms = NctiTerms(seli=1.0, ncc=0.5, vc=_posterior_vc(blocks), seli_within=0.5,
                          alpha=1e-10, svd_path=True, pca_dim=3, lda_dim=3,
                          class_counts=counts)
        return independent_terms(terms)["vc"]

    assert normalised(collapsed) == pytest.approx(0.0, abs=1e-7)
    assert normalised(uniform) == pytest.approx(1.0)  # no information is not collapse
    assert normalised(spread) <= 1.0


def test_small_n_reduces_pca_dimension():
    x, y = blobs(n=40, d=100, classes=4, seed=10)
    got = ncti_terms(x, y)
    assert got.pca_dim == 39  # W has rank <= N - C = 36: the svd path drops 3 directions
    assert got.svd_path and 0 < got.ncc <= 1 and math.isfinite(got.vc) and got.seli > 0
    assert ncti_terms(x[:, :10], y).pca_dim == 10


def test_bad_input():
    x, y = blobs(n=100, d=10, classes=3)
    bad = x.copy()
    bad[3, 4] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        ncti_terms(bad, y)
    with pytest.raises(InputError, match="class"):
        ncti_terms(x, np.zeros(100, int))
    with pytest.raises(InputError, match="rows"):
        ncti_terms(x, y[:-1])
    means = np.eye(3, 10)
    with pytest.raises(InputError, match="within-class variation"):
        ncti_terms(means[y] * 100, y)
    with pytest.raises(InputError, match="pca_dim"):
        ncti_terms(x, y, pca_dim=0)
