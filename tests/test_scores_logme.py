"""LogME (both variants) against per-column transcriptions of the published iterations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nctk
from nctk.errors import InputError
from scores_core_data import blobs


def textbook_fixed_point(f: np.ndarray, y: np.ndarray) -> float:
    """arXiv 2110.10545 fixed-point evidence, one target column at a time (spec §4), on
    the thin SVD of f with all min(N, D) singular values (the reference's N <= D branch,
    for every shape): zero singular values stay in, adding log(alpha) each."""
    _, y = np.unique(y, return_inverse=True)
    n, d = f.shape
    u, s, _ = np.linalg.svd(np.asarray(f, dtype=np.float64), full_matrices=False)
    sigma = s**2
    out = []
    for k in range(y.max() + 1):
        t = (y == k).astype(float)
        z2 = (u.T @ t) ** 2
        r0 = t @ t - z2.sum()
        alpha = beta = 1.0
        for _ in range(11):
            tau = alpha / beta
            gamma = (sigma / (sigma + tau)).sum()
            m2 = (sigma * z2 / (sigma + tau) ** 2).sum()
            rho2 = (z2 * tau**2 / (sigma + tau) ** 2).sum() + r0
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (rho2 + 1e-5)
            if abs(alpha / beta - tau) / tau <= 1e-3:
                break
        ev = (d / 2 * math.log(alpha) + n / 2 * math.log(beta)
              - 0.5 * np.log(alpha + beta * sigma).sum() - beta / 2 * rho2 - alpha / 2 * m2
              - n / 2 * math.log(2 * math.pi))
        out.append(ev / n)
    return float(np.mean(out))


def textbook_icml(f: np.ndarray, y: np.ndarray) -> float:
    """The ICML 2021 iteration with a direct (alpha I + beta F^T F) solve per round."""
    _, y = np.unique(y, return_inverse=True)
    n, d = f.shape
    gram = f.T @ f
    s = np.linalg.eigvalsh(gram)
    out = []
    for k in range(y.max() + 1):
        t = (y == k).astype(float)
        alpha = beta = lam = 1.0
        for _ in range(11):
            gamma = (beta * s / (alpha + beta * s)).sum()
            m = np.linalg.solve(alpha * np.eye(d) + beta * gram, beta * f.T @ t)
            m_sq = m @ m
            alpha = gamma / (m_sq + 1e-5)
            res = ((t - f @ m) ** 2).sum()
            beta = (n - gamma) / (res + 1e-5)
            if abs(alpha / beta - lam) / lam < 0.01:
                break
            lam = alpha / beta
        ev = (d / 2 * math.log(alpha) + n / 2 * math.log(beta)
              - 0.5 * np.log(alpha + beta * s).sum() - beta / 2 * (res + 1e-5)
              - alpha / 2 * (m_sq + 1e-5) - n / 2 * math.log(2 * math.pi))
        out.append(ev / n)
    return float(np.mean(out))


@pytest.mark.parametrize(("n", "d"), [(300, 20), (40, 60)])
def test_fixed_point_matches_textbook(n, d):
    x, y = blobs(n=n, d=d, classes=4, spread=2.0, seed=n)
    assert nctk.score("logme", x, y) == pytest.approx(textbook_fixed_point(x, y), rel=1e-7)


@pytest.mark.parametrize(("n", "d"), [(300, 20), (40, 60)])
def test_icml_matches_textbook(n, d):
    x, y = blobs(n=n, d=d, classes=4, spread=2.0, seed=n)
    got = nctk.score("logme", x, y, variant="icml")
    assert got == pytest.approx(textbook_icml(x, y), rel=1e-7)


def rank_deficient(dtype) -> tuple[np.ndarray, np.ndarray]:
    """1000 x 512 ReLU-like features of rank 448: 64 dead units."""
    x, y = blobs(n=1000, d=448, classes=10, spread=2.0, seed=1)
    mix = np.random.default_rng(0).standard_normal((448, 448)) / 20
    x = np.hstack([np.maximum(x @ mix, 0), np.zeros((1000, 64))])
    return x.astype(dtype), y


def test_rank_deficient_features_keep_the_null_directions():
    x32, y = rank_deficient(np.float32)
    x64 = x32.astype(np.float64)
    got32, got64 = nctk.score("logme", x32, y), nctk.score("logme", x64, y)
    assert got32 == pytest.approx(got64, rel=1e-6, abs=1e-6)
    assert got64 == pytest.approx(textbook_fixed_point(x64, y), rel=1e-7)
    # and close to the ICML iteration, which uses all D eigenvalues (0.5141 vs 0.5139)
    assert got64 == pytest.approx(nctk.score("logme", x64, y, variant="icml"), rel=1e-3)
    dependent = np.hstack([x64[:, :448], x64[:, :64] + x64[:, 64:128]])  # rank 448 again
    assert nctk.score("logme", dependent.astype(np.float32), y) == pytest.approx(
        nctk.score("logme", dependent, y), rel=1e-6, abs=1e-6)
    assert nctk.score("logme", dependent, y) == pytest.approx(
        textbook_fixed_point(dependent, y), rel=1e-7)


@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_extreme_scales_give_finite_scores(scale):
    x, y = blobs(n=300, d=20, classes=4, spread=1.5, seed=3)
    for dtype in (np.float32, np.float64):
        got = nctk.score("logme", (x * scale).astype(dtype), y)
        assert np.isfinite(got)
    # at 1e-30 the iteration still reaches the scale-1 optimum; at 1e30 the absolute
    # epsilon 1e-5 of the reference's update dominates ||m||^2 (documented)
    assert nctk.score("logme", x * 1e-30, y) == pytest.approx(nctk.score("logme", x, y),
                                                              rel=1e-6)


def test_variants_agree_when_n_much_larger_than_d():
    x, y = blobs(n=2000, d=10, classes=3, spread=2.0, seed=5)
    fp = nctk.score("logme", x, y)
    icml = nctk.score("logme", x, y, variant="icml")
    assert fp == pytest.approx(icml, rel=1e-2)


def test_gapped_and_string_labels_add_no_empty_columns():
    x, y = blobs(n=200, d=12, classes=3, seed=6)
    base = nctk.score("logme", x, y)
    assert nctk.score("logme", x, np.array([0, 5, 9])[y]) == pytest.approx(base, rel=1e-7)
    assert nctk.score("logme", x, np.array(["a", "b", "c"])[y]) == pytest.approx(base, rel=1e-7)


def test_invariances_precision_and_torch():
    x, y = blobs(n=250, d=16, classes=4, seed=7)
    x32 = x.astype(np.float32)
    keep = x32.copy()
    base = nctk.score("logme", x32.astype(np.float64), y)
    perm = np.random.default_rng(1).permutation(len(y))
    assert nctk.score("logme", x[perm], y[perm]) == pytest.approx(
        nctk.score("logme", x, y), rel=1e-7)
    assert nctk.score("logme", x32, y) == pytest.approx(base, rel=1e-5)
    assert nctk.score("logme", torch.from_numpy(x32.astype(np.float64)), y) == pytest.approx(
        base, rel=1e-7)
    np.testing.assert_array_equal(x32, keep)


def test_more_separable_features_score_higher():
    x, y = blobs(n=300, d=10, classes=3, spread=0.5, seed=8)
    noisy, _ = blobs(n=300, d=10, classes=3, spread=3.0, seed=8)
    assert nctk.score("logme", x, y) > nctk.score("logme", noisy, y)


def test_bad_input():
    x, y = blobs(n=50, d=5, classes=2)
    with pytest.raises(InputError, match="variant"):
        nctk.score("logme", x, y, variant="nope")
    with pytest.raises(InputError, match="class"):
        nctk.score("logme", x, np.ones(50))
    with pytest.raises(InputError, match="NaN"):
        nctk.score("logme", np.full((50, 5), np.nan), y)
    with pytest.raises(InputError, match="all zeros"):
        nctk.score("logme", np.zeros((50, 5)), y)
