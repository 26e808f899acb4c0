"""SFDA against a direct transcription of its formulas, plus invariances and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nctk
from nctk.errors import InputError
from nctk.transfer.sfda import power_estimate
from scores_core_data import blobs


def _softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _posteriors(x: np.ndarray, y: np.ndarray, c: int, alpha: float) -> np.ndarray:
    means = np.stack([x[y == j].mean(0) for j in range(c)])
    priors = np.bincount(y) / len(y)
    within = sum(np.cov(x[y == j].T, bias=True) * priors[j] for j in range(c))
    d = x.shape[1]
    sigma = (1 - alpha) * within + alpha * np.trace(within) / d * np.eye(d)
    inv = np.linalg.inv(sigma)
    logits = x @ inv @ means.T - 0.5 * np.einsum("cd,de,ce->c", means, inv, means)
    return _softmax(logits + np.log(priors))


def textbook_sfda(x: np.ndarray, y: np.ndarray) -> float:
    """spec §3, step by step, on a copy (float32 rounding of the mixed features)."""
    _, y = np.unique(y, return_inverse=True)
    c = y.max() + 1
    f = x.astype(np.float64)
    priors = np.bincount(y) / len(y)
    within = sum(np.cov(f[y == j].T, bias=True) * priors[j] for j in range(c))
    v = within @ np.ones(f.shape[1])
    for _ in range(3):
        u = within @ v / np.linalg.norm(within @ v)
        v = within @ u / np.linalg.norm(within @ u)
    alpha = max(math.exp(-5 * (v @ within @ u)), 1e-10)
    soft = _softmax(_posteriors(f, y, c, alpha))
    means = np.stack([f[y == j].mean(0) for j in range(c)])
    mixed = x.copy()
    for i in range(len(y)):
        w = soft[i, y[i]]
        other = (means.sum(0) - means[y[i]]) / (c - 1)
        mixed[i] = w * f[i] + (1 - w) * other
    post = _posteriors(mixed.astype(np.float64), y, c, alpha)
    return float(post[np.arange(len(y)), y].mean())


@pytest.mark.parametrize(("dtype", "spread", "scale"),
                         [(np.float32, 1.5, 1.0), (np.float64, 2.5, 1.0),
                          (np.float32, 1.5, 0.05)])
def test_matches_textbook(dtype, spread, scale):
    x, y = blobs(n=300, d=25, classes=5, spread=spread, scale=scale, seed=1)
    x = x.astype(dtype)
    got = nctk.score("sfda", x, y)
    assert got == pytest.approx(textbook_sfda(x, y), rel=1e-7)
    assert 0 < got < 1


def test_power_estimate_is_the_two_vector_form():
    a = np.array([[3.0, 1.0], [1.0, 2.0]])
    v = a @ np.ones(2)
    for _ in range(3):
        u = a @ v / np.linalg.norm(a @ v)
        v = a @ u / np.linalg.norm(a @ u)
    assert power_estimate(torch.from_numpy(a)) == pytest.approx(v @ a @ u, rel=1e-7)


def test_power_start_for_cancelling_row_sums():
    # features [a, -a]: Sigma_w 1 = 0, where the reference divides 0 by 0
    a, y = blobs(n=200, d=5, classes=3, seed=2)
    x = np.hstack([a, -a])
    priors = np.bincount(y) / len(y)
    within = sum(np.cov(x[y == j].T, bias=True) * priors[j] for j in range(3))
    assert np.linalg.norm(within @ np.ones(10)) < 1e-7 * np.linalg.norm(within)
    v = within[:, np.argmax(np.diag(within))]  # the documented start: largest-variance column
    for _ in range(3):
        u = within @ v / np.linalg.norm(within @ v)
        v = within @ u / np.linalg.norm(within @ u)
    assert power_estimate(torch.from_numpy(within)) == pytest.approx(v @ within @ u, rel=1e-7)
    assert power_estimate(torch.from_numpy(within)) == pytest.approx(
        np.linalg.eigvalsh(within)[-1], rel=1e-3)
    got = nctk.score("sfda", x, y)
    assert 0 < got < 1
    # continuous: the same features with their row sums just above the noise level
    noisy = x + 1e-9 * np.random.default_rng(0).standard_normal(x.shape)
    assert nctk.score("sfda", noisy, y) == pytest.approx(got, rel=1e-6)


def test_one_sample_per_class_is_refused_before_any_d_by_d_matrix():
    x = np.random.default_rng(1).standard_normal((5, 20_000)).astype(np.float32)
    with pytest.raises(InputError, match="one sample per class"):
        nctk.score("sfda", x, np.arange(5))


def test_does_not_mutate_and_is_repeatable():
    x, y = blobs(n=200, d=15, classes=4, seed=2)
    x32 = x.astype(np.float32)
    keep = x32.copy()
    first = nctk.score("sfda", x32, y)
    tensor = torch.from_numpy(x32)
    second = nctk.score("sfda", tensor, y)
    np.testing.assert_array_equal(x32, keep)
    assert first == second


def test_invariances_and_precision():
    x, y = blobs(n=240, d=20, classes=4, spread=2.0, seed=3)
    base = nctk.score("sfda", x, y)
    perm = np.random.default_rng(0).permutation(len(y))
    assert nctk.score("sfda", x[perm], y[perm]) == pytest.approx(base, rel=1e-7)
    assert nctk.score("sfda", x, np.array(list("wxyz"))[y]) == pytest.approx(base, rel=1e-7)
    assert nctk.score("sfda", x, y * 7 + 3) == pytest.approx(base, rel=1e-7)
    assert nctk.score("sfda", x.astype(np.float32), y) == pytest.approx(base, rel=1e-5)
    assert nctk.score("sfda", torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(
        base, rel=1e-7)


def test_bad_input():
    x, y = blobs(n=60, d=5, classes=3)
    with pytest.raises(InputError, match="constant"):
        nctk.score("sfda", np.ones((60, 5)), y)
    with pytest.raises(InputError, match="class"):
        nctk.score("sfda", x, np.zeros(60, int))
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(InputError, match="inf"):
        nctk.score("sfda", bad, y)
