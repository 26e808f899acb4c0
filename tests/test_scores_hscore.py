"""H-score and regularised H-score against direct formulas and scikit-learn's Ledoit-Wolf."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf, ledoit_wolf_shrinkage

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
    assert nctk.score("hscore", x, y) == pytest.approx(textbook_hscore(x, y), rel=1e-7)
    assert nctk.score("reg_hscore", x, y) == pytest.approx(textbook_reg_hscore(x, y),
                                                           rel=1e-7)


def test_singular_covariance_uses_the_pseudo_inverse():
    x, y = blobs(n=200, d=10, classes=4, seed=2)
    x = np.hstack([x, x[:, :3] + x[:, 3:6]])  # rank-deficient: 13 columns, rank 10
    assert nctk.score("hscore", x, y) == pytest.approx(textbook_hscore(x, y), rel=1e-6)
    assert nctk.score("reg_hscore", x, y) == pytest.approx(textbook_reg_hscore(x, y),
                                                           rel=1e-7)


def test_invariances_precision_torch():
    x, y = blobs(n=240, d=12, classes=4, spread=2.0, seed=3)
    for name in ("hscore", "reg_hscore"):
        base = nctk.score(name, x, y)
        perm = np.random.default_rng(0).permutation(len(y))
        assert nctk.score(name, x[perm], y[perm]) == pytest.approx(base, rel=1e-7)
        assert nctk.score(name, x, np.array(list("pqrs"))[y]) == pytest.approx(base, rel=1e-7)
        assert nctk.score(name, x, y * 3 + 11) == pytest.approx(base, rel=1e-7)
        x32 = x.astype(np.float32)
        keep = x32.copy()
        assert nctk.score(name, x32, y) == pytest.approx(base, rel=1e-5)
        assert nctk.score(name, torch.from_numpy(x), y) == pytest.approx(base, rel=1e-7)
        np.testing.assert_array_equal(x32, keep)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fewer_samples_than_dimensions_go_through_the_sample_gram(dtype):
    x, y = blobs(n=24, d=300, classes=3, spread=1.5, seed=5)
    x = x.astype(dtype).astype(np.float64)
    assert nctk.score("hscore", x.astype(dtype), y) == pytest.approx(textbook_hscore(x, y),
                                                                     rel=1e-6)
    assert nctk.score("reg_hscore", x.astype(dtype), y) == pytest.approx(
        textbook_reg_hscore(x, y), rel=1e-7)


def test_five_samples_of_twenty_thousand_dimensions():
    # N = C = 5: every sample is its own class, so cov g = cov f and H = rank(cov f) = 4;
    # nothing of size 20,000^2 is formed (that alone would be 3.2 GB).
    x = np.random.default_rng(6).standard_normal((5, 20_000)).astype(np.float32)
    y = np.arange(5)
    assert nctk.score("hscore", x, y) == pytest.approx(4.0, rel=1e-7)
    # regularised: (1 - a) sum_j c_j / ((1 - a) (N - 1) c_j / N + a mu) over the non-zero
    # eigenvalues c_j of cov f, with a from scikit-learn's blockwise Ledoit-Wolf
    f = x.astype(np.float64) - x.astype(np.float64).mean(0)
    a = ledoit_wolf_shrinkage(f, assume_centered=True)
    mu = (f**2).sum() / (5 * 20_000)
    c = np.linalg.eigvalsh(f @ f.T / 4)[1:]          # the zero eigenvalue is the mean's
    want = ((1 - a) * c / ((1 - a) * 4 * c / 5 + a * mu)).sum()
    assert nctk.score("reg_hscore", x, y) == pytest.approx(want, rel=1e-7)


def test_rank_deficiency_and_scale_do_not_depend_on_rounding():
    x, y = blobs(n=200, d=10, classes=4, seed=2)
    dup = np.hstack([x, x[:, :3] + x[:, 3:6], np.zeros((200, 2))])  # rank 10 of 15
    for name in ("hscore", "reg_hscore"):
        base = nctk.score(name, dup, y)
        assert nctk.score(name, dup.astype(np.float32), y) == pytest.approx(base, rel=1e-6)
        for scale in (1e30, 1e-30):
            assert nctk.score(name, dup * scale, y) == pytest.approx(base, rel=1e-7)
            assert nctk.score(name, (dup * scale).astype(np.float32), y) == pytest.approx(
                base, rel=1e-6)
    # the null directions carry no between-class energy: H equals that of the 10 columns
    assert nctk.score("hscore", dup, y) == pytest.approx(nctk.score("hscore", x, y),
                                                         rel=1e-7)


def test_hscore_limits():
    x, y = blobs(n=300, d=8, classes=3, seed=4)
    shuffled = np.random.default_rng(1).permutation(y)
    # tr(cov_f^-1 cov_g) <= rank(cov_g) = C - 1 (times (N-1)/(N-1)): between <= total.
    assert 0 < nctk.score("hscore", x, shuffled) < nctk.score("hscore", x, y) <= 2 + 1e-7


def test_bad_input():
    x, y = blobs(n=50, d=5, classes=2)
    for name in ("hscore", "reg_hscore"):
        with pytest.raises(InputError, match="class"):
            nctk.score(name, x, np.zeros(50))
        with pytest.raises(InputError, match="rows"):
            nctk.score(name, x, y[:10])
        with pytest.raises(InputError, match="2-D"):
            nctk.score(name, x[:, 0], y)


def test_wide_features_never_form_a_d_by_d_matrix():
    # the (N, N) sample Gram stands in for the (d, d) one: in a fresh process, scoring
    # 5 x 20,000 features grows the peak memory by far less than one 20,000^2 float64
    # matrix (3.2 GB; 1.6 GB in float32), whichever of the scores that use it runs
    script = textwrap.dedent("""
        import resource, numpy as np, nctk
        x = np.random.default_rng(6).standard_normal((5, 20_000)).astype(np.float32)
        nctk.score("hscore", x[:, :10], np.arange(5))  # warm up: imports, allocators
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for method in ("hscore", "reg_hscore", "logme"):
            nctk.score(method, x, np.arange(5))
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
        """)
    grown_kb = int(subprocess.run([sys.executable, "-c", script], capture_output=True,
                                  text=True, check=True).stdout)
    assert grown_kb < 400_000, f"{grown_kb / 1e6:.2f} GB more at the peak"
