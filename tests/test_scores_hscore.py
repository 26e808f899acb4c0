"""H-score and regularised H-score against direct formulas and scikit-learn's Ledoit-Wolf."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf

import nctk
from nctk.errors import InputError
from scores_core_data import blobs


def class_mean_rows(f: np.ndarray, y: np.ndarray) -> np.ndarray:
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(0)
    return g


def textbook_hscore(f: np.ndarray, y: np.ndarray) -> float:
    cov_f = np.cov(f, rowvar=False)
    cov_g = np.cov(class_mean_rows(f, y), rowvar=False)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-15) @ cov_g))


def textbook_reg_hscore(f: np.ndarray, y: np.ndarray) -> float:
    f = f - f.mean(0)
    lw = LedoitWolf(assume_centered=False).fit(f)
    cov_g = np.cov(class_mean_rows(f, y), rowvar=False)
    return float(np.trace(np.linalg.pinv(lw.covariance_, rcond=1e-15)
                          @ ((1 - lw.shrinkage_) * cov_g)))


@pytest.mark.parametrize("seed", [0, 1])
def test_match_textbook(seed):
    x, y = blobs(n=300, d=25, classes=5, spread=1.5, seed=seed)
    assert nctk.score("hscore", x, y) == pytest.approx(textbook_hscore(x, y), rel=1e-9)
    assert nctk.score("reg_hscore", x, y) == pytest.approx(textbook_reg_hscore(x, y),
                                                           rel=1e-9)


def test_singular_covariance_uses_the_pseudo_inverse():
    x, y = blobs(n=200, d=10, classes=4, seed=2)
    x = np.hstack([x, x[:, :3] + x[:, 3:6]])  # rank-deficient: 13 columns, rank 10
    assert nctk.score("hscore", x, y) == pytest.approx(textbook_hscore(x, y), rel=1e-6)
    assert nctk.score("reg_hscore", x, y) == pytest.approx(textbook_reg_hscore(x, y),
                                                           rel=1e-9)


def test_invariances_precision_torch():
    x, y = blobs(n=240, d=12, classes=4, spread=2.0, seed=3)
    for name in ("hscore", "reg_hscore"):
        base = nctk.score(name, x, y)
        perm = np.random.default_rng(0).permutation(len(y))
        assert nctk.score(name, x[perm], y[perm]) == pytest.approx(base, rel=1e-10)
        assert nctk.score(name, x, np.array(list("pqrs"))[y]) == pytest.approx(base, rel=1e-12)
        assert nctk.score(name, x, y * 3 + 11) == pytest.approx(base, rel=1e-12)
        x32 = x.astype(np.float32)
        keep = x32.copy()
        assert nctk.score(name, x32, y) == pytest.approx(base, rel=1e-5)
        assert nctk.score(name, torch.from_numpy(x), y) == pytest.approx(base, rel=1e-12)
        np.testing.assert_array_equal(x32, keep)


def test_hscore_limits():
    x, y = blobs(n=300, d=8, classes=3, seed=4)
    shuffled = np.random.default_rng(1).permutation(y)
    # tr(cov_f^-1 cov_g) <= rank(cov_g) = C - 1 (times (N-1)/(N-1)): between <= total.
    assert 0 < nctk.score("hscore", x, shuffled) < nctk.score("hscore", x, y) <= 2 + 1e-9


def test_bad_input():
    x, y = blobs(n=50, d=5, classes=2)
    for name in ("hscore", "reg_hscore"):
        with pytest.raises(InputError, match="class"):
            nctk.score(name, x, np.zeros(50))
        with pytest.raises(InputError, match="rows"):
            nctk.score(name, x, y[:10])
        with pytest.raises(InputError, match="2-D"):
            nctk.score(name, x[:, 0], y)
