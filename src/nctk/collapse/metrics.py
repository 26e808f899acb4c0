"""Neural-collapse measures computed from finalised class statistics.

Every function takes :class:`nctk.stats.ClassSummary` (float64) and returns a plain
float. Conventions, shared with Li et al. (2023) and rhubarbwu/neural-collapse: K classes,
class means mu_k, global mean m_G = (1/K) sum_k mu_k (mean of the class means), centred
means mu~_k = mu_k - m_G, biased (1/n) variances; Sigma_W is pooled over samples (/N) and
Sigma_B over classes (/K). Smaller values mean more collapse for every measure here.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import pdist

from nctk.stats import ClassSummary


def pinv_rtol(dim: int) -> float:
    """Relative cutoff of the pseudo-inverse of Sigma_B: d * eps(float64).

    It is torch.linalg.pinv's default rule (max(d, d) * eps of the dtype, relative to the
    largest eigenvalue), applied in float64. Sigma_B has rank <= K-1 because m_G is the
    mean of the class means; its K-th eigenvalue is pure round-off (about 1e-32 relative),
    and keeping it, as NumPy's rcond=1e-15 would for larger d, inflates NC1 (docs/collapse.md).
    """
    return dim * np.finfo(np.float64).eps


def nc1(stats: ClassSummary) -> float:
    """NC1 = (1/K) tr(Sigma_W Sigma_B^+)  (Papyan et al. 2020; Li et al. 2023, eq. 4).

    Computed in the K-dimensional span of the centred means instead of inverting a d x d
    matrix: with M~ = U S V^T (thin SVD of the (K, d) centred means), Sigma_B = V (S^2/K)
    V^T, so NC1 = (1/K) sum_j v_j^T Sigma_W v_j / lambda_j over the eigenvalues
    lambda_j = s_j^2/K above ``pinv_rtol(d) * lambda_1``. Identical to the library's
    ``tr(pinv(Sigma_B) Sigma_W)/K`` at the same cutoff, at O(K^2 d + K d^2) cost. inf when
    all class means coincide (no between-class spread: nothing is separated), whatever the
    within-class spread, all-zero features included.
    """
    eigvals, vectors = _between_eigen(stats)
    if eigvals.size == 0:  # all class means coincide: no between-class spread at all
        return float("inf")
    within = np.sum(vectors * (stats.within_covariance @ vectors), axis=0)  # v_j^T Sigma_W v_j
    return float(np.sum(within / eigvals) / stats.num_classes)


def nc1_trace_ratio(stats: ClassSummary) -> float:
    """tr(Sigma_W) / tr(Sigma_B): the library's "quotient" surrogate of NC1, no inverse;
    inf when all class means coincide, as NC1."""
    between = float(np.trace(stats.between_covariance))
    if between == 0:
        return float("inf")
    return float(np.trace(stats.within_covariance)) / between


def cdnv(stats: ClassSummary) -> float:
    """Class-distance normalised variance (Galanti et al. 2022), averaged over class pairs.

    CDNV = mean_{i<j} (Var_i + Var_j) / (2 ||mu_i - mu_j||^2), with the biased variances
    Var_k = (1/n_k) sum ||x - mu_k||^2 (Li et al. 2023, eqs. 5-6; the library's
    ``variability_cdnv`` with dist_exp=1). The mean over i<j equals the paper's mean over
    i != j (the term is symmetric). Squared distances come from ``pdist`` in float64
    (not the library's float32 grid, nor ||a||^2 + ||b||^2 - 2ab, which cancels).
    Two identical class means give inf.
    """
    dist = pdist(stats.means, "sqeuclidean")
    var = stats.class_variances
    i, j = np.triu_indices(stats.num_classes, k=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (var[i] + var[j]) / (2.0 * dist)
    terms[(dist == 0) & (var[i] + var[j] == 0)] = np.inf
    return float(np.mean(terms))


def equinorm(stats: ClassSummary) -> float:
    """NC2 equinorm: std_k ||mu~_k|| / mean_k ||mu~_k|| (Papyan et al. 2020, Fig. 4).

    The std is the population one (ddof=0), so K equal norms give exactly 0.
    """
    norms = np.linalg.norm(stats.centred_means, axis=1)
    return _ratio(float(np.std(norms)), float(np.mean(norms)))


def equiangularity(stats: ClassSummary) -> float:
    """NC2 equiangularity: the population std of cos(mu~_i, mu~_j) over the pairs i<j
    (Papyan et al. 2020, Fig. 5). 0 when all angles are equal."""
    return float(np.std(_pair_cosines(stats)))


def equiangularity_shifted(stats: ClassSummary) -> float:
    """Papyan et al.'s maximal-angle measure: mean_{i<j} |cos(mu~_i, mu~_j) + 1/(K-1)|.

    0 only when every pair has the simplex-ETF angle arccos(-1/(K-1))."""
    return float(np.mean(np.abs(_pair_cosines(stats) + 1.0 / (stats.num_classes - 1))))


def etf_error(stats: ClassSummary) -> float:
    """Distance of the centred means from a simplex ETF (rhubarbwu ``simplex_etf_error``).

    err = || G/||G||_F - (I_K - 11^T/K)/sqrt(K-1) ||_F with G = M~ M~^T (K, K). It
    measures equinorm and equiangularity together; 0 for means on a (scaled, rotated)
    simplex ETF."""
    centred = stats.centred_means
    return _etf_distance(centred @ centred.T)


def self_duality_error(stats: ClassSummary, weight: np.ndarray) -> float:
    """NC3 as in rhubarbwu ``self_duality_error``: the ETF error of G = W M~^T (K, K).

    ``weight`` is the (K, d) classifier, row k for class k. 0 when W is proportional to M~
    and M~ is a simplex ETF (the library's variant; see :func:`self_duality_papyan`)."""
    return _etf_distance(weight @ stats.centred_means.T)


def self_duality_papyan(stats: ClassSummary, weight: np.ndarray) -> float:
    """NC3 as Papyan et al. (2020, Fig. 6): || W/||W||_F - M~/||M~||_F ||_F."""
    centred = stats.centred_means
    return float(np.linalg.norm(weight / np.linalg.norm(weight)
                                - centred / np.linalg.norm(centred)))


def _etf_distance(gram: np.ndarray) -> float:
    k = gram.shape[0]
    target = (np.eye(k) - np.full((k, k), 1.0 / k)) / np.sqrt(k - 1)
    norm = np.linalg.norm(gram)
    if norm == 0:
        return float("nan")
    return float(np.linalg.norm(gram / norm - target))


def _between_eigen(stats: ClassSummary) -> tuple[np.ndarray, np.ndarray]:
    """Non-null eigenpairs (lambda_j, v_j as columns of (d, r)) of Sigma_B."""
    _, sing, vt = np.linalg.svd(stats.centred_means, full_matrices=False)
    eigvals = sing**2 / stats.num_classes
    keep = eigvals > pinv_rtol(stats.means.shape[1]) * eigvals[0]
    return eigvals[keep], vt[keep].T


def _pair_cosines(stats: ClassSummary) -> np.ndarray:
    centred = stats.centred_means
    norms = np.linalg.norm(centred, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = centred / norms[:, None]
    return (unit @ unit.T)[np.triu_indices(stats.num_classes, k=1)]


def _ratio(num: float, den: float) -> float:
    if den == 0:
        return float("inf") if num > 0 else float("nan")
    return num / den
