"""k-NN accuracy against a brute-force neighbour vote written out in the test."""

from __future__ import annotations

import numpy as np
import pytest

import nctk
from nctk.errors import InputError
from nctk.sampling import proportional
from nctk.transfer.knn import fold_assignment, knn_score
from scores_core_data import blobs


@pytest.fixture(scope="module")
def data():
    return blobs(n=150, d=8, classes=3, spread=2.5, seed=7)


def folds_by_hand(x, y, folds, seed):
    """Rows sorted as tuples, a seeded permutation, dealt round-robin within each class."""
    canonical = sorted(range(len(x)), key=lambda i: tuple(x[i]))
    order = [canonical[j] for j in np.random.default_rng(seed).permutation(len(x))]
    fold, dealt = {}, {}
    for i in order:
        fold[i] = dealt.get(y[i], 0) % folds
        dealt[y[i]] = dealt.get(y[i], 0) + 1
    return np.array([fold[i] for i in range(len(x))])


def knn_by_hand(x, y, folds=5, k=5, seed=0):
    """Per fold: cosine distances, the k nearest training rows, votes weighted 1/distance."""
    assignment = folds_by_hand(x, y, folds, seed)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    accuracies = []
    for f in range(folds):
        train, test = np.flatnonzero(assignment != f), np.flatnonzero(assignment == f)
        correct = 0
        for i in test:
            distance = 1 - unit[train] @ unit[i]
            nearest = np.argsort(distance, kind="stable")[:k]
            votes = {}
            for j in nearest:
                votes[y[train[j]]] = votes.get(y[train[j]], 0) + 1 / distance[j]
            correct += max(votes, key=votes.get) == y[i]
        accuracies.append(correct / len(test))
    return float(np.mean(accuracies))


def test_matches_a_brute_force_vote(data):
    x, y = data
    assert knn_score(x, y) == pytest.approx(knn_by_hand(x, y), abs=1e-7)
    assert knn_score(x, y, neighbours=9, folds=3, seed=4) == pytest.approx(
        knn_by_hand(x, y, folds=3, k=9, seed=4), abs=1e-7)


def test_folds_are_stratified_seeded_and_order_free(data):
    x, y = data
    _, codes = np.unique(y, return_inverse=True)
    folds = fold_assignment(x, codes, 5, seed=0)
    assert np.array_equal(folds, folds_by_hand(x, y, 5, 0))
    for c in np.unique(codes):
        sizes = np.bincount(folds[codes == c], minlength=5)
        assert sizes.max() - sizes.min() <= 1
    perm = np.random.default_rng(2).permutation(len(y))
    assert np.array_equal(fold_assignment(x[perm], codes[perm], 5, 0), folds[perm])
    assert not np.array_equal(fold_assignment(x, codes, 5, seed=1), folds)


def test_invariant_to_sample_order_and_label_names(data):
    x, y = data
    want = knn_score(x, y)
    perm = np.random.default_rng(3).permutation(len(y))
    assert knn_score(x[perm], y[perm]) == want
    assert knn_score(x, np.array(["z", "b", "m"])[y]) == want
    assert knn_score(x, 10 - 3 * y) == want


def test_seed_changes_the_folds_not_the_scale(data):
    x, y = data
    scores = {knn_score(x, y, seed=s) for s in range(4)}
    assert len(scores) > 1 and all(0 <= s <= 1 for s in scores)


def test_limits():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 12)
    separated = 50 * np.eye(6)[y] + rng.normal(size=(48, 6))
    assert knn_score(separated, y) == 1.0
    # labels independent of the features: about chance, never much above it
    noise = rng.normal(size=(400, 6))
    assert knn_score(noise, rng.integers(0, 4, 400)) < 0.4


def test_small_classes_reduce_folds_and_neighbours():
    rng = np.random.default_rng(1)
    y = np.array([0, 0, 1, 1, 1, 2, 2])
    x = rng.normal(size=(7, 3)) + 3 * np.eye(3)[y]
    # two folds (smallest class has 2 samples); each training split keeps >= 3 rows
    assert knn_score(x, y) == pytest.approx(knn_by_hand(x, y, folds=2, k=3), abs=1e-7)


@pytest.mark.parametrize("option, value, problem", [
    ("neighbours", 0, "neighbours"), ("folds", 1, "at least 2"), ("folds", 2.0, "folds"),
])
def test_bad_options(data, option, value, problem):
    x, y = data
    with pytest.raises(InputError, match=problem):
        nctk.score("knn", x, y, **{option: value})


def test_large_inputs_use_a_seeded_proportional():
    x, y = blobs(n=300, d=6, classes=3, spread=2.0, seed=4)
    got = knn_score(x, y, max_samples=90, seed=2)
    rows = proportional(np.unique(y, return_inverse=True)[1], 90, 2)
    assert got == knn_score(x[rows], y[rows], max_samples=None, seed=2)
    assert knn_score(x, y, max_samples=None) == knn_score(x, y, max_samples=300)
    with pytest.raises(InputError, match="max_samples"):
        knn_score(x, y, max_samples=2)
