"""nctk.collapse: every measure against direct formulas written out in this file, known
limits (exact collapse, isotropic noise around a simplex ETF), invariances, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from nctk.collapse import (
    NCCAgreement,
    from_stats,
    layer_profile,
    measure,
    numerical_rank_from_stats,
)
from nctk.errors import InputError
from nctk.io import FeatureFile
from nctk.stats import ClassStats

CORE = ("nc1", "nc1_trace_ratio", "cdnv", "numerical_rank", "etf_error", "equinorm",
        "equiangularity", "equiangularity_shifted", "ncc_accuracy")


def _simplex_etf(k, d, radius, seed=0):
    """(K, d) class means on a simplex ETF of the given radius, randomly rotated into R^d."""
    etf = np.eye(k) - 1.0 / k
    etf /= np.linalg.norm(etf, axis=1, keepdims=True)
    basis = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, k)))[0]
    return radius * etf @ basis.T


def _digits():
    x, y = load_digits(return_X_y=True)
    keep = y < 6
    return x[keep][:400] / 16.0, y[keep][:400]


def _blobs(n=240, d=8, k=4, seed=1):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n // k)
    x = rng.normal(size=(k, d))[y] * 2 + rng.normal(size=(n, d)) * rng.uniform(0.3, 1.5, d)
    return x, y


# ---------------------------------------------------------------- direct formulas
def _direct(x, y, w=None):
    """rhubarbwu/Papyan/Li et al. formulas written out naively (loops, d x d pinv)."""
    classes = np.unique(y)
    k, (n, d) = len(classes), x.shape
    means = np.array([x[y == c].mean(0) for c in classes])
    m_g = means.mean(0)
    sigma_w = np.zeros((d, d))
    for c, mu in zip(classes, means, strict=True):
        for row in x[y == c]:
            sigma_w += np.outer(row - mu, row - mu)
    sigma_w /= n
    sigma_b = sum(np.outer(mu - m_g, mu - m_g) for mu in means) / k
    out = {"nc1": np.trace(sigma_w @ np.linalg.pinv(sigma_b, rtol=d * np.finfo(float).eps)) / k,
           "nc1_trace_ratio": np.trace(sigma_w) / np.trace(sigma_b)}
    var = [np.mean([np.sum((row - mu) ** 2) for row in x[y == c]])
           for c, mu in zip(classes, means, strict=True)]
    out["cdnv"] = np.mean([(var[i] + var[j]) / (2 * np.sum((means[i] - means[j]) ** 2))
                           for i in range(k) for j in range(k) if i != j])
    out["numerical_rank"] = np.mean([np.linalg.norm(x[y == c], "fro") ** 2
                                     / np.linalg.norm(x[y == c], 2) ** 2 for c in classes])
    centred = means - m_g
    gram = centred @ centred.T
    etf = (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)
    out["etf_error"] = np.linalg.norm(gram / np.linalg.norm(gram) - etf)
    norms = np.linalg.norm(centred, axis=1)
    out["equinorm"] = norms.std() / norms.mean()
    cosines = [centred[i] @ centred[j] / (norms[i] * norms[j])
               for i, j in itertools.combinations(range(k), 2)]
    out["equiangularity"] = np.std(cosines)
    out["equiangularity_shifted"] = np.mean(np.abs(np.array(cosines) + 1 / (k - 1)))
    ncc = np.array([np.argmin([np.sum((row - mu) ** 2) for mu in means]) for row in x])
    codes = np.searchsorted(classes, y)
    out["ncc_accuracy"] = np.mean(ncc == codes)
    if w is not None:
        cross = w @ centred.T
        out["nc3_self_duality"] = np.linalg.norm(cross / np.linalg.norm(cross) - etf)
        out["nc3_papyan"] = np.linalg.norm(w / np.linalg.norm(w)
                                           - centred / np.linalg.norm(centred))
        linear = np.argmax(x @ w.T, axis=1)
        out["nc4_agreement"] = np.mean(linear == ncc)
        out["classifier_accuracy"] = np.mean(linear == codes)
    return out


@pytest.mark.parametrize("data", [_digits, _blobs])
def test_measure_matches_direct_formulas(data):
    x, y = data()
    w = np.random.default_rng(3).normal(size=(len(np.unique(y)), x.shape[1]))
    got = measure(x, y, classifier=w)
    want = _direct(x, y, w)
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-7, abs=1e-7), key
        assert type(got[key]) is float


def test_nc1_cutoff_drops_the_roundoff_directions_of_sigma_b():
    # d > K: Sigma_B has rank K-1; a pinv keeping its round-off eigenvalues explodes
    k, d = 3, 30
    x, y = _blobs(d=d, k=k)
    x = x + 100.0
    means = np.array([x[y == c].mean(0) for c in range(k)])
    centred = means - means.mean(0)
    sigma_b = centred.T @ centred / k
    sigma_w = sum((x[y == c] - means[c]).T @ (x[y == c] - means[c]) for c in range(k)) / len(y)
    sloppy = np.trace(sigma_w @ np.linalg.pinv(sigma_b, rtol=1e-20)) / k  # not a tolerance
    assert np.linalg.matrix_rank(sigma_b, rtol=d * np.finfo(float).eps) == k - 1
    got = measure(x, y)["nc1"]
    assert got == pytest.approx(_direct(x, y)["nc1"], rel=1e-7)
    assert abs(sloppy - got) > 1e3 * got


# ---------------------------------------------------------------- known limits
def test_exact_collapse_on_a_simplex_etf_gives_zero():
    k, d = 5, 12
    means = _simplex_etf(k, d, radius=3.0)
    y = np.repeat(np.arange(k), 4)
    x = means[y] + 7.0  # a shifted ETF: the measures centre on the mean of class means
    w = means * 0.5
    got = measure(x, y, classifier=(w, -w @ np.full(d, 7.0)))  # b = -W m_G
    for key in ("nc1", "nc1_trace_ratio", "cdnv", "etf_error", "equinorm", "equiangularity",
                "equiangularity_shifted", "nc3_self_duality", "nc3_papyan"):
        assert got[key] == pytest.approx(0.0, abs=1e-7), key
    assert got["numerical_rank"] == pytest.approx(1.0, abs=1e-7)
    assert got["ncc_accuracy"] == 1.0
    assert got["nc4_agreement"] == 1.0


def test_isotropic_noise_around_an_etf_matches_closed_forms():
    # Means on a simplex ETF of radius r (||mu_k - m_G|| = r, cos = -1/(K-1)), noise
    # N(0, s^2 I_d). Then Sigma_W -> s^2 I and Sigma_B has K-1 equal eigenvalues
    # r^2/(K-1) (its trace is r^2), so NC1 = (1/K) s^2 (K-1) (K-1)/r^2. Each Var_k -> d s^2
    # and ||mu_i - mu_j||^2 = 2 r^2 (1 + 1/(K-1)) = 2 r^2 K/(K-1), so
    # CDNV = 2 d s^2 / (2 * 2 r^2 K/(K-1)) = d s^2 (K-1) / (2 K r^2).
    k, d, n, r, s = 4, 10, 5000, 5.0, 0.7
    rng = np.random.default_rng(7)
    y = np.repeat(np.arange(k), n)
    x = _simplex_etf(k, d, r)[y] + rng.normal(scale=s, size=(k * n, d))
    got = measure(x, y)
    assert got["nc1"] == pytest.approx(s**2 * (k - 1) ** 2 / (k * r**2), rel=0.03)
    assert got["cdnv"] == pytest.approx(d * s**2 * (k - 1) / (2 * k * r**2), rel=0.03)
    assert got["nc1_trace_ratio"] == pytest.approx(d * s**2 / r**2, rel=0.03)


def test_numerical_rank_limits():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    rank_one = np.outer(rng.normal(size=400), rng.normal(size=6))
    assert measure(rank_one + 0 * y[:, None], y)["numerical_rank"] == pytest.approx(1.0)
    spread = rng.normal(size=(400, 6))
    assert 4.0 < measure(spread, y)["numerical_rank"] <= 6.0


# ---------------------------------------------------------------- invariances
def test_invariant_to_sample_order_label_names_and_rotation():
    x, y = _digits()
    ref = measure(x, y)
    perm = np.random.default_rng(0).permutation(len(y))
    renamed = np.array(["f", "e", "d", "c", "b", "a"])[y]
    q = np.linalg.qr(np.random.default_rng(1).normal(size=(x.shape[1], x.shape[1])))[0]
    for got in (measure(x[perm], y[perm]), measure(x, renamed), measure(x, y * 10 + 3),
                measure(x @ q, y)):
        for key in CORE:
            assert got[key] == pytest.approx(ref[key], rel=1e-7, abs=1e-7), key


def test_translation_changes_only_the_uncentred_numerical_rank():
    x, y = _blobs()
    ref, moved = measure(x, y), measure(x + 5.0, y)
    for key in ("nc1", "nc1_trace_ratio", "cdnv", "etf_error", "equinorm", "equiangularity"):
        assert moved[key] == pytest.approx(ref[key], rel=1e-7), key
    assert moved["numerical_rank"] < ref["numerical_rank"]  # uncentred, as Li et al. write it


def test_float32_and_float64_agree():
    x, y = _digits()
    x = x + np.random.default_rng(0).normal(scale=0.05, size=x.shape)
    x32 = x.astype(np.float32)
    a, b = measure(x32, y), measure(x32.astype(np.float64), y)
    c = measure(x, y)
    for key in CORE:
        assert a[key] == pytest.approx(b[key], rel=1e-7, abs=1e-7), key
        assert a[key] == pytest.approx(c[key], rel=1e-5), key


def test_numpy_and_torch_inputs_agree():
    x, y = _blobs()
    ref = measure(x, y)
    got = measure(torch.tensor(x, dtype=torch.float32), torch.tensor(y))
    for key in CORE:
        assert got[key] == pytest.approx(ref[key], rel=1e-5), key


def test_caller_arrays_are_not_modified():
    x, y = _blobs()
    w = np.ones((4, 8))
    copies = (x.copy(), y.copy(), w.copy())
    measure(x, y, classifier=w)
    for before, after in zip(copies, (x, y, w), strict=True):
        np.testing.assert_array_equal(before, after)


# ---------------------------------------------------------------- streaming path
def test_streaming_stats_and_second_pass_give_the_same_measures():
    x, y = _digits()
    w = np.random.default_rng(3).normal(size=(6, x.shape[1]))
    ref = measure(x, y, classifier=w)
    shards = [ClassStats(6, x.shape[1], per_class_cov=True) for _ in range(3)]
    for i, start in enumerate(range(0, len(y), 50)):
        shards[i % 3].update(x[start:start + 50], y[start:start + 50])
    stats = shards[0].merge(shards[1]).merge(shards[2])
    got = from_stats(stats, classifier=w)
    for key in ("nc1", "cdnv", "etf_error", "nc3_self_duality", "numerical_rank"):
        assert got[key] == pytest.approx(ref[key], rel=1e-7), key
    assert numerical_rank_from_stats(stats, chunk=4) == pytest.approx(ref["numerical_rank"],
                                                                      rel=1e-7)
    # two passes, each keeping the scatter of half of the classes only
    halves = [ClassStats(6, x.shape[1], per_class_cov=part) for part in ([0, 2, 4], [1, 3, 5])]
    for half in halves:
        for start in range(0, len(y), 70):
            half.update(x[start:start + 70], y[start:start + 70])
    assert numerical_rank_from_stats(*halves) == pytest.approx(ref["numerical_rank"], rel=1e-7)
    with pytest.raises(InputError, match=r"class\(es\) \[1, 3, 5\]"):
        numerical_rank_from_stats(halves[0])
    with pytest.raises(InputError, match="twice"):
        numerical_rank_from_stats(stats, halves[0])
    second = NCCAgreement(stats.compute().means, w)
    for start in range(0, len(y), 64):
        second.merge(NCCAgreement(stats.compute().means, w).update(
            x[start:start + 64], y[start:start + 64]))
    for key, value in second.compute().items():
        assert value == pytest.approx(ref[key]), key
    # every field of measure(), in its order: those needing a second pass NaN without it
    full = from_stats(stats, classifier=w, agreement=second)
    assert list(full) == list(ref) and list(got) == list(ref)
    for key in ref:
        assert full[key] == pytest.approx(ref[key], rel=1e-7), key
    assert np.isnan([got["ncc_accuracy"], got["nc4_agreement"], got["classifier_accuracy"]]).all()
    bare = from_stats(stats.compute())
    assert list(bare) == list(measure(x, y)) and np.isnan(bare["numerical_rank"])


def test_layer_profile_order_and_error_location():
    x, y = _blobs()
    ff = FeatureFile(name="m", features=x, labels=y,
                     layers={"b2": x[:, :5], "b1": x[:, 3:]}, path="m.npz")
    profile = layer_profile(ff)
    assert list(profile) == ["b2", "b1", "penultimate"]
    assert profile["penultimate"] == measure(x, y)
    bad = FeatureFile(name="m", features=x, labels=y,
                      layers={"b1": np.vstack([x[:-1], [[np.nan] * 8]])}, path="m.npz")
    with pytest.raises(InputError, match=r"^m\.npz: array 'layer:b1': contains 8 non-finite"):
        layer_profile(bad)
    reserved = FeatureFile(name="m", features=x, labels=y, layers={"penultimate": x})
    with pytest.raises(InputError, match="reserved"):
        layer_profile(reserved)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("x, y, classifier, message", [
    (np.ones((4, 3)), [0, 0, 0, 0], None, "has 1 class"),
    (np.arange(15.0).reshape(5, 3), [0, 0, 1, 1, 2], None, "has 1 sample"),
    (np.ones((4, 3)), [0, 0, 1], None, "has 3 entries but the features have 4 rows"),
    (np.array([[0, 1.0, np.inf], [1, 2, 3], [4, 5, 6], [7, 8, 9]]), [0, 0, 1, 1], None,
     "non-finite"),
    (np.arange(12.0).reshape(4, 3), [0, 0, 1, 1], np.ones((2, 4)), "classifier.*shape"),
    (np.arange(12.0).reshape(4, 3), [0, 0, 1, 1], np.ones((3, 3)), "classifier.*shape"),
    (np.arange(12.0).reshape(4, 3), [0, 0, 1, 1], (np.ones((2, 3)), np.ones(3)), "bias"),
    (np.arange(12.0).reshape(4, 3), [0.5, 0, 1, 1], None, "non-integer"),
])
def test_bad_input_raises_input_error(x, y, classifier, message):
    with pytest.raises(InputError, match=message):
        measure(x, y, classifier=classifier)


def test_from_stats_needs_two_samples_per_class():
    stats = ClassStats(2, 3).update(np.arange(9.0).reshape(3, 3), [0, 1, 1])
    with pytest.raises(InputError, match="need at least 2"):
        from_stats(stats)
