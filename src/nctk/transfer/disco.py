"""DISCO: distribution of spectral components (Zhang et al., AAAI 2025).

As the official scoring script computes it (docs/methods-recommended.md, "DISCO"), on
X (N, d):

1. PCA of X to k = min(128, d, N - 1) components; Z (N, k) the centred scores.
2. SVD of Z: singular values s_1 >= ... >= s_k. Z has orthogonal columns ordered by
   variance, so its singular vectors are the PCA axes and s_j = ||z_j|| = sqrt((N - 1)
   lambda_j) (lambda_j the explained variances); nctk reads them off the exact PCA.
3. The components are cut into G = 8 consecutive groups of q = k // 8 (a remainder of
   k mod 8 trailing components is in no group, as in the reference; when k < 8 each
   component is its own group). Group g has the spectral ratio r_g = sum_{j in g} s_j /
   sum_j s_j and the nearest-class-mean score ncc_g = (1/N) sum_i softmax_c(l_i)[y_i],
   l_ic = -||z_i^g - mu_c^g||^2 / 2 + log pi_c on the group's coordinates z^g (the
   reference's ``multivariate_normal.logpdf`` with identity covariance, plus log prior).
4. DISCO = sum_g r_g ncc_g: the label-aware proportions of the spectrum (the paper's
   classification criterion; the script stores ``ratio`` and ``ncc`` per group).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nctk.errors import InputError
from nctk.transfer._gaussian import (
    class_means,
    column_mean,
    gaussian_logits,
    prepare,
    to_float,
    true_class_probability,
)
from nctk.transfer._subspace import exact_principal
from nctk.transfer.registry import Method, register

PCA_DIM = 128
GROUPS = 8


def disco_groups(features: Any, labels: Any, *, pca_dim: int = PCA_DIM, groups: int = GROUPS,
                 device: Any = None) -> list[dict[str, float]]:
    """Per spectral group: ``{"ratio": r_g, "ncc": ncc_g}``, leading components first.

    Args:
        features: (N, d) numpy array or torch tensor (computed in float64 on its device).
        labels: (N,) any labels, at least 2 classes.
        pca_dim: PCA dimension (128 in the reference), reduced to min(pca_dim, d, N - 1).
        groups: number of spectral groups (8 in the reference).
        device: force a torch device (default: the input's).
    """
    for value, what in ((pca_dim, "pca_dim"), (groups, "groups")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{what} must be a positive integer, got {value!r}")
    data = prepare(features, labels, device=device)
    n, d = data.x.shape
    if n < 3:
        raise InputError(f"has {n} samples; DISCO needs at least 3", array="features")
    k = min(pca_dim, d, n - 1)
    principal = exact_principal(data.x, column_mean(data.x), k)
    z, variances = principal.scores, principal.variances
    singular = (variances * (n - 1)).sqrt()
    total = singular.sum()
    if to_float(total) <= 0:
        raise InputError("is constant (zero variance); DISCO is undefined", array="features")
    groups = min(groups, k)
    size = k // groups
    result = []
    for g in range(groups):
        part = slice(g * size, (g + 1) * size)
        coords = z[:, part]
        means = class_means(data, coords)
        # z.mu_c - |mu_c|^2/2 + log pi_c: the row constant -|z|^2/2 cancels in the softmax
        logits = gaussian_logits(coords, means, means.T, data.priors)
        result.append({"ratio": to_float(singular[part].sum() / total),
                       "ncc": to_float(true_class_probability(logits, data.codes).mean())})
    return result


def disco_score(features: Any, labels: Any, **options: Any) -> float:
    """DISCO of one model, sum_g r_g ncc_g, in (0, 1] (higher is better)."""
    return float(sum(g["ratio"] * g["ncc"] for g in disco_groups(features, labels, **options)))


register(Method(
    name="disco",
    score=disco_score,
    summary="Spectral components weighted by nearest-class-mean posteriors (Zhang et al., "
            "AAAI 2025)",
))


def reference_disco(features: np.ndarray, labels: np.ndarray, *, pca_dim: int = PCA_DIM,
                    groups: int = GROUPS) -> float:
    """DISCO written as its steps (Zhang et al., AAAI 2025; the official script), for
    reading and for testing :func:`disco_score`; plain numpy, no validation.

    1. Z (N, k) = PCA scores of X on k = min(pca_dim, d, N − 1) components, with singular
       values s_j = ‖z_j‖ (SVD of the centred X);
    2. G = min(groups, k) groups of q = ⌊k/G⌋ consecutive components; per group g:
       r_g = Σ_{j∈g} s_j / Σ_j s_j and ncc_g = (1/N) Σ_i softmax_c(−‖z_i^g − μ_c^g‖²/2
       + log π_c)[y_i] (identity-covariance Gaussians on the group's coordinates);
    3. DISCO = Σ_g r_g ncc_g.
    """
    x = np.asarray(features, dtype=np.float64)
    classes, y = np.unique(labels, return_inverse=True)
    n, d = x.shape
    k = min(pca_dim, d, n - 1)
    centred = x - x.mean(axis=0)
    _, singular, rows = np.linalg.svd(centred, full_matrices=False)
    z, singular = centred @ rows[:k].T, singular[:k]
    groups = min(groups, k)
    size = k // groups
    total = 0.0
    for g in range(groups):
        coords = z[:, g * size:(g + 1) * size]
        means = np.stack([coords[y == c].mean(axis=0) for c in range(len(classes))])
        logits = (-0.5 * ((coords[:, None, :] - means[None]) ** 2).sum(axis=2)
                  + np.log(np.bincount(y) / n))
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        total += singular[g * size:(g + 1) * size].sum() / singular.sum() * p[
            np.arange(n), y].mean()
    return float(total)
