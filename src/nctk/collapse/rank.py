"""Numerical rank of the class feature matrices (Li et al. 2023, Appendix A).

rank~(H) = (1/K) sum_k ||H_k||_F^2 / ||H_k||_2^2, where H_k (d, n_k) holds the features of
class k as columns, **uncentred** as the paper writes it. ||H_k||_2^2 is the largest
eigenvalue of H_k H_k^T, estimated by the power method as in the paper. Smaller means
more collapsed; it lies in [1, min(d, n_k)] for each class (0 for a class whose features
are all zero: the rank of a zero matrix).

Power method used here (the paper gives no settings): start from the normalised sum of
the class mean direction and a fixed seeded random unit vector (the mean direction is
usually close to the top singular vector of uncentred features, the random part keeps the
start from being orthogonal to it), iterate v <- G v / ||G v|| and stop when the Rayleigh
quotient changes by less than ``POWER_TOL`` relative, or after ``POWER_MAX_ITER``
iterations. The Rayleigh quotient never exceeds ||H_k||_2^2, so a stopped-early estimate
errs towards a larger numerical rank.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nctk.errors import InputError
from nctk.stats import ClassStats

POWER_TOL = 1e-10
POWER_MAX_ITER = 1000
_START_SEED = 0


def numerical_rank_from_samples(features: np.ndarray, codes: np.ndarray,
                                num_classes: int) -> float:
    """Numerical rank from in-memory samples (N, d) and codes 0..K-1.

    Matrix-free: each power step is H_k^T (H_k v), O(n_k d), so no d x d matrix is formed.
    """
    ratios = []
    for k in range(num_classes):
        rows = features[codes == k]
        top = top_eigenvalue(lambda v, rows=rows: (rows @ v.T).T @ rows, rows.sum(0)[None, :])
        ratios.append(_rank_ratio(np.einsum("ij,ij->", rows, rows)[None], top)[0])
    return float(np.mean(ratios))


def numerical_rank_from_stats(*states: ClassStats, chunk: int = 16) -> float:
    """Numerical rank from streaming statistics that keep the per-class scatter.

    Pass one state made with ``per_class_cov=True``, or several, each keeping a chunk of
    classes (``per_class_cov=[codes]``, one streaming pass each, so only the chunk's
    d x d matrices are ever in memory); together they must cover every class once.
    Walks the uncentred scatter G_k = H_k H_k^T in tiles of ``chunk`` classes:
    ||H_k||_F^2 = tr G_k and ||H_k||_2^2 = lambda_max(G_k) by batched power iteration.
    """
    if not states:
        raise InputError("no class statistics given")
    ratios = np.full(states[0].num_classes, np.nan)
    for stats in states:
        classes, values = class_rank_ratios(stats, chunk)
        if not np.isnan(ratios[classes]).all():
            raise InputError("the statistics keep the scatter of some class twice")
        ratios[classes] = values
    return mean_rank_ratio(ratios)


def class_rank_ratios(stats: ClassStats, chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, ||H_k||_F^2 / ||H_k||_2^2)`` for every class whose scatter ``stats``
    keeps (the per-class terms of :func:`numerical_rank_from_stats`)."""
    means = stats.compute().means
    classes_out, ratios = [], []
    for classes, second in stats.class_second_moments(chunk):
        top = top_eigenvalue(lambda v, g=second: np.matmul(g, v[:, :, None])[:, :, 0],
                             means[classes])
        classes_out.append(classes)
        ratios.append(_rank_ratio(np.einsum("kdd->k", second), top))
    return np.concatenate(classes_out), np.concatenate(ratios)


def _rank_ratio(frobenius: np.ndarray, top: np.ndarray) -> np.ndarray:
    """||H_k||_F^2 / ||H_k||_2^2 per class; 0 for a class whose features are all zero
    (the rank of a zero matrix), where the ratio itself would be 0/0."""
    return np.divide(frobenius, top, out=np.zeros(frobenius.shape), where=frobenius > 0)


def mean_rank_ratio(ratios: np.ndarray) -> float:
    """The numerical rank from every class's ratio; InputError naming missing classes."""
    missing = np.flatnonzero(np.isnan(ratios))
    if missing.size:
        raise InputError(f"no per-class scatter for class(es) {missing[:10].tolist()}; the "
                         "statistics must cover every class")
    return float(np.mean(ratios))


def top_eigenvalue(apply: Callable[[np.ndarray], np.ndarray], direction: np.ndarray
                   ) -> np.ndarray:
    """Largest eigenvalue of each of c symmetric PSD operators by the power method.

    Args:
        apply: maps (c, d) vectors to (c, d), row j multiplied by operator j.
        direction: (c, d) a hint for the start (e.g. the class mean), combined with a
            fixed random unit vector.

    Returns:
        (c,) Rayleigh quotients after convergence (see module docstring); 0 for a zero
        operator.
    """
    rng = np.random.default_rng(_START_SEED)
    noise = rng.standard_normal(direction.shape[1])
    v = _normalise(_normalise(direction) + noise / np.linalg.norm(noise))
    value = np.zeros(direction.shape[0])
    for _ in range(POWER_MAX_ITER):
        w = apply(v)
        new = np.einsum("kd,kd->k", v, w)
        v = _normalise(w)
        done = np.abs(new - value) <= POWER_TOL * np.abs(new)
        value = new
        if done.all():
            break
    return value


def _normalise(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
