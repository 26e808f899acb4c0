"""PARC: pairwise annotation representation comparison (Bolya et al., NeurIPS 2021).

Steps (as the NCTI/SFDA repositories compute it):

1. reduce the features to k = min(32, N, d) dimensions by PCA, then z-score every column
   (population standard deviation);
2. R₁ = 1 − Pearson correlation between samples (rows), an N×N dissimilarity matrix;
3. R₂ = 1 − correlation between the one-hot label rows: 0 for a pair of the same class and
   1 + 1/(C−1) otherwise;
4. PARC = 100 × Spearman(strict upper triangle of R₁, strict upper triangle of R₂), average
   ranks for ties.

Higher = more transferable. Memory is O(N²), so by default at most ``max_samples`` samples
(a seeded stratified subsample) are used. Our PCA is exact (full SVD); the reference uses
a randomized solver. See ``docs/methods-baselines.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nctk.errors import InputError
from nctk.sampling import proportional
from nctk.transfer.registry import Method, register
from nctk.validation import check_matrix, encode_labels

#: PCA dimension of the reference (its default ``ratio = 2 > 1`` selects 32).
PARC_DIM = 32
#: Default cap on the samples PARC uses: its two N×N matrices grow as N².
PARC_MAX_SAMPLES = 5000


def _spearman_with_binary(values: np.ndarray, indicator: np.ndarray) -> float:
    """Spearman correlation (average ranks for ties) of a real vector with a boolean one.

    The average ranks of a two-valued variable are an affine map of it, so the Spearman
    correlation equals the Pearson correlation of the ranks of ``values`` with ``indicator``.
    Written by hand because it is faster on PARC's N²/2 entries: one sort, then sums over
    runs of tied values, where ``scipy.stats.spearmanr`` sorts both vectors (and rankdata
    sorts twice).
    """
    m = values.shape[0]
    order = np.argsort(values)
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    lengths = np.diff(np.r_[starts, m])
    centred_rank = starts + (lengths + 1) / 2 - (m + 1) / 2   # per run of ties
    hits = np.add.reduceat(indicator[order], starts, dtype=np.int64)
    share = hits.sum() / m
    covariance = (hits * centred_rank).sum() / m
    rank_variance = (lengths * centred_rank**2).sum() / m
    return float(covariance / np.sqrt(rank_variance * share * (1 - share)))


def _principal_components(x: np.ndarray, dim: int) -> np.ndarray:
    """Exact PCA scores (N, k) on the first k ≤ ``dim`` components that carry variance.

    Components with a numerically zero singular value (below σ_max·max(N, d)·eps, numpy's
    rank tolerance; e.g. the N-th one when N ≤ dim) are dropped: z-scoring would blow their
    rounding noise up to unit variance. The reference keeps them.
    """
    from sklearn.decomposition import PCA  # here: scikit-learn takes ~0.7 s to import

    pca = PCA(n_components=min(dim, *x.shape), svd_solver="full").fit(x)
    singular = pca.singular_values_
    carries_variance = singular > singular[0] * max(x.shape) * np.finfo(np.float64).eps
    if carries_variance.sum() < 2:
        raise InputError(f"has shape {x.shape} and {int(carries_variance.sum())} principal "
                         "component(s) with variance; PARC correlates samples over at least 2",
                         array="features")
    return pca.transform(x)[:, carries_variance]


def parc(features: Any, labels: Any, *, dim: int = PARC_DIM,
         max_samples: int | None = PARC_MAX_SAMPLES, seed: int = 0) -> float:
    """PARC score ×100 (Spearman correlation of feature and label dissimilarities).

    Args:
        features: (N, d) target features.
        labels: (N,) target labels (any hashable values), at least 2 classes.
        dim: PCA dimension before z-scoring (reference: 32), capped at min(N, d) and at the
            number of components with non-zero variance.
        max_samples: when N is larger, score a stratified subsample of this many samples
            drawn with ``seed`` (PARC needs N×N matrices: 5,000 samples take about
            0.8 GB at peak). ``None`` = all samples, whatever N.
        seed: seed of that subsample.

    Returns:
        PARC ∈ [−100, 100]; higher = more transferable.
    """
    x = check_matrix(features, "features")
    y = encode_labels(labels, x.shape[0])
    rows, codes = np.arange(x.shape[0]), y.codes
    if max_samples is not None:
        if max_samples < 3:
            raise InputError(f"max_samples must be at least 3, got {max_samples}")
        if x.shape[0] > max_samples:
            rows = proportional(y.codes, max_samples, seed)
            x, codes = x[rows], codes[rows]
    x = x.astype(np.float64)   # after the subsample: never a float64 copy of all N rows
    from sklearn.preprocessing import StandardScaler

    scaled = StandardScaler().fit_transform(_principal_components(x, dim))
    flat = np.flatnonzero(np.ptp(scaled, axis=1) == 0)
    if flat.size:
        raise InputError(f"sample {int(rows[flat[0]])} is constant after PCA and z-scoring; its "
                         "correlation with other samples is undefined", array="features")
    upper = np.triu(np.ones((x.shape[0], x.shape[0]), dtype=bool), k=1)
    dissimilarity = np.corrcoef(scaled)
    np.subtract(1.0, dissimilarity, out=dissimilarity)
    feature_rdm = dissimilarity[upper]
    del dissimilarity
    different_class = (codes[:, None] != codes[None, :])[upper]
    if different_class.all() or not different_class.any():
        raise InputError("need at least one pair of samples of the same class and one of "
                         "different classes", array="labels")
    return 100.0 * _spearman_with_binary(feature_rdm, different_class)


register(Method(
    name="parc", score=parc,
    summary="PARC: Spearman correlation of feature and label dissimilarity matrices "
            "(Bolya et al. 2021)",
    upper_bound=lambda num_classes, **_: 100.0))  # 100 x a Spearman correlation


def reference_parc(features: np.ndarray, labels: np.ndarray, *, dim: int = PARC_DIM) -> float:
    """PARC written as its steps (Bolya et al., NeurIPS 2021), for reading and for testing
    :func:`parc` (on all samples); plain numpy and scipy, no validation.

    1. Z (N, k) = PCA scores on k = min(dim, N, d) components (SVD of the centred
       features; each axis signed so that its largest entry is positive, scikit-learn's
       convention: the row correlations below change with the signs), each column
       z-scored (population standard deviation);
    2. R_f = 1 − corr(rows of Z) (N, N); R_y = 1 − corr(one-hot label rows) (N, N): 0 for
       a pair of the same class, 1 + 1/(C − 1) otherwise (written so: computed, the
       rounding would split the ties);
    3. PARC = 100 · Spearman( strict upper triangle of R_f, of R_y ).
    """
    from scipy.stats import spearmanr

    x = np.asarray(features, dtype=np.float64)
    centred = x - x.mean(axis=0)
    _, _, rows = np.linalg.svd(centred, full_matrices=False)
    rows = rows[:min(dim, *x.shape)]
    rows *= np.sign(rows[np.arange(len(rows)), np.abs(rows).argmax(axis=1)])[:, None]
    z = centred @ rows.T
    z = (z - z.mean(axis=0)) / z.std(axis=0)
    labels = np.asarray(labels)
    different = labels[:, None] != labels[None, :]
    upper = np.triu_indices(x.shape[0], k=1)
    feature_rdm = (1 - np.corrcoef(z))[upper]
    label_rdm = np.where(different, 1 + 1 / (len(np.unique(labels)) - 1), 0.0)[upper]
    return float(100 * spearmanr(feature_rdm, label_rdm).statistic)
