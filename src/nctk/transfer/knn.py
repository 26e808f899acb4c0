"""k-NN accuracy: how well the frozen features classify the target data by their neighbours.

score = cross-validated accuracy of a k-nearest-neighbour classifier on the (N, d) features
(scikit-learn ``KNeighborsClassifier``, ``cross_val_score``): ``folds``-fold, stratified,
k = 5 neighbours by cosine distance, votes weighted by inverse distance (so that no tie
is broken by the order of the class labels), mean of the per-fold accuracies. A
non-parametric probe of the features in the spirit of the k-NN evaluation of
self-supervised representations (Wu et al., CVPR 2018; Caron et al., ICCV 2021); it needs
no source head and no training.

The folds are seeded and do not depend on the order of the samples or on the label
values: the rows are put in a canonical order (lexicographic on the feature values), a
seeded permutation of that order is dealt round-robin into the folds within each class.
So a shuffled or relabelled copy of the same data gets the same score.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nctk.arrays import to_numpy
from nctk.errors import InputError
from nctk.sampling import proportional
from nctk.transfer.registry import Method, register
from nctk.validation import check_matrix, encode_labels

NEIGHBOURS = 5
FOLDS = 5
#: Default cap on the samples (a seeded stratified subsample above it).
KNN_MAX_SAMPLES = 20_000


def fold_assignment(x: np.ndarray, codes: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(N,) fold index of each sample: stratified, seeded, independent of the row order.

    Within each class the samples are dealt 0, 1, ..., folds-1, 0, ... in the order of a
    seeded permutation of the rows' lexicographic order.
    """
    canonical = np.lexsort(x.T[::-1])
    order = canonical[np.random.default_rng(seed).permutation(x.shape[0])]
    fold = np.empty(x.shape[0], dtype=np.int64)
    seen = np.zeros(int(codes.max()) + 1, dtype=np.int64)
    for i in order:
        fold[i] = seen[codes[i]] % folds
        seen[codes[i]] += 1
    return fold


def knn_score(features: Any, labels: Any, *, neighbours: int = NEIGHBOURS, folds: int = FOLDS,
              seed: int = 0, max_samples: int | None = KNN_MAX_SAMPLES) -> float:
    """Cross-validated k-NN accuracy of one model's features, in [0, 1] (higher is better).

    Args:
        features: (N, d) numpy array or torch tensor (any device; computed on the CPU in
            float64).
        labels: (N,) any labels; at least 2 classes and 2 samples per class.
        neighbours: k; reduced to the size of the smallest training split when larger.
        folds: number of folds (at most the size of the smallest class).
        seed: seed of the fold assignment (and of the subsample).
        max_samples: when N is larger, score a stratified subsample of this many samples
            drawn with ``seed``, as PARC and NLEEP do (brute-force neighbours cost
            O(N^2 d): 200,000 samples did not finish in minutes). ``None`` = all.
    """
    from sklearn.model_selection import PredefinedSplit, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    for value, what in ((neighbours, "neighbours"), (folds, "folds")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{what} must be a positive integer, got {value!r}")
    if folds < 2:
        raise InputError(f"folds must be at least 2, got {folds}")
    x = check_matrix(features, "features")
    if max_samples is not None:
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 3:
            raise InputError(f"max_samples must be an integer of at least 3, got {max_samples!r}")
        if x.shape[0] > max_samples:
            rows = proportional(encode_labels(labels, x.shape[0]).codes, max_samples, seed)
            x, labels = x[rows], to_numpy(labels)[rows]
    x = x.astype(np.float64)
    # scikit-learn's cosine normalisation treats row norms below 10 eps (absolute) as zero;
    # a power of two (exact, cosine-neutral) brings the largest entry to [0.5, 1)
    x = np.ldexp(x, -np.frexp(np.abs(x).max())[1])
    encoded = encode_labels(labels, x.shape[0], min_per_class=2)
    folds = min(folds, int(encoded.counts.min()))
    assignment = fold_assignment(x, encoded.codes, folds, seed)
    smallest_train = min(int((assignment != f).sum()) for f in range(folds))
    classifier = KNeighborsClassifier(n_neighbors=min(neighbours, smallest_train),
                                      weights="distance", metric="cosine", algorithm="brute")
    accuracies = cross_val_score(classifier, x, encoded.codes, cv=PredefinedSplit(assignment))
    return float(np.mean(accuracies))


register(Method(
    name="knn",
    score=knn_score,
    summary="Cross-validated k-NN accuracy of the features (5 neighbours, cosine, seeded "
            "folds)",
    upper_bound=lambda num_classes, **_: 1.0,  # an accuracy
))


def reference_knn(features: np.ndarray, labels: np.ndarray, *, neighbours: int = NEIGHBOURS,
                  folds: int = FOLDS, seed: int = 0) -> float:
    """The k-NN accuracy written as its steps, for reading and for testing
    :func:`knn_score` (on all samples); plain numpy, no validation.

    Folds from :func:`fold_assignment` (stratified, seeded, order-free). In each fold, a
    held-out sample i gets, from its k nearest training samples j by cosine distance
    d_ij = 1 − x_iᵀx_j / (‖x_i‖‖x_j‖), the vote Σ_j [y_j = c] / d_ij per class c (an exact
    match, d_ij = 0, takes the vote alone) and the class with the largest vote;
    score = mean over the folds of their accuracy.
    """
    x = np.asarray(features, dtype=np.float64)
    _, y = np.unique(labels, return_inverse=True)
    folds = min(folds, int(np.bincount(y).min()))
    fold = fold_assignment(x, y, folds, seed)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    k = min(neighbours, min(int((fold != f).sum()) for f in range(folds)))
    accuracies = []
    for f in range(folds):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        distance = 1 - unit[test] @ unit[train].T
        correct = 0
        for row, i in zip(distance, test, strict=True):
            nearest = np.argsort(row, kind="stable")[:k]
            exact = nearest[row[nearest] == 0]
            chosen, weights = (exact, np.ones(len(exact))) if len(exact) else (
                nearest, 1 / row[nearest])
            votes = np.bincount(y[train[chosen]], weights=weights, minlength=y.max() + 1)
            correct += int(np.argmax(votes) == y[i])
        accuracies.append(correct / len(test))
    return float(np.mean(accuracies))
