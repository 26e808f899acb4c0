"""GBC: Gaussian Bhattacharyya coefficient (Pándy et al., CVPR 2022).

Each target class c is modelled as a Gaussian N(μ_c, diag(v_c)) in feature space, with
v_c the per-dimension population variance floored at 1e-4. With v̄ = (v_a + v_b)/2,

    D_B(a, b) = (1/8) Σ_d (μ_a,d − μ_b,d)² / v̄_d
                + ½ [ Σ_d log v̄_d − ½ Σ_d log v_a,d − ½ Σ_d log v_b,d ]
    GBC       = − Σ_a Σ_{b≠a} exp(−D_B(a, b))          ∈ (−C(C−1), 0]

Higher (closer to 0) = classes better separated = predicted more transferable.
``gaussian="spherical"`` (default, as the reference implementation) replaces v_c by its
mean s_c over dimensions, and, as the reference does, takes the log terms of the scalars
(log s̄ − ½ log s_a − ½ log s_b, not multiplied by d). See ``docs/methods-baselines.md``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from nctk.errors import InputError
from nctk.transfer.registry import Method, register
from nctk.validation import check_matrix, encode_labels

#: Floor on every per-class variance (guards constant features and one-sample classes).
VARIANCE_FLOOR = 1e-4


def _class_gaussians(x: np.ndarray, codes: np.ndarray, num_classes: int, gaussian: str
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Class means (C, d) and floored variances: (C, d) diagonal or (C, 1) spherical."""
    groups = np.split(x[np.argsort(codes, kind="stable")],
                      np.cumsum(np.bincount(codes, minlength=num_classes))[:-1])
    means = np.stack([g.mean(axis=0) for g in groups])
    variances = np.maximum(np.stack([g.var(axis=0) for g in groups]), VARIANCE_FLOOR)
    if gaussian == "spherical":
        variances = variances.mean(axis=1, keepdims=True)
    return means, variances


def gbc(features: Any, labels: Any, *, gaussian: Literal["spherical", "diagonal"] = "spherical",
        pca_dim: int | None = None) -> float:
    """Gaussian Bhattacharyya coefficient of the target classes in feature space.

    Args:
        features: (N, d) target features.
        labels: (N,) target labels (any hashable values), at least 2 classes.
        gaussian: ``"spherical"`` (the reference's default) or ``"diagonal"`` (the paper's
            preferred variant).
        pca_dim: when given, first reduce the features by exact PCA to
            ``min(pca_dim, N, d)`` dimensions (the paper uses 64); default: no reduction,
            as the reference.

    Returns:
        GBC ∈ (−C(C−1), 0]; higher = more transferable.
    """
    x = check_matrix(features, "features").astype(np.float64)
    y = encode_labels(labels, x.shape[0])
    if gaussian not in ("spherical", "diagonal"):
        raise InputError(f"unknown gaussian type '{gaussian}'; choose spherical or diagonal")
    if pca_dim is not None:
        if pca_dim < 1:
            raise InputError(f"pca_dim must be at least 1, got {pca_dim}")
        from sklearn.decomposition import PCA  # here: scikit-learn takes ~0.7 s to import

        x = PCA(n_components=min(pca_dim, *x.shape), svd_solver="full").fit_transform(x)
    means, variances = _class_gaussians(x, y.codes, y.num_classes, gaussian)
    log_var = np.log(variances).sum(axis=1)
    total = 0.0
    # One class against all others at a time: O(C·d) memory instead of O(C²·d).
    for a in range(y.num_classes):
        mean_var = (variances[a] + variances) / 2
        mahalanobis = ((means[a] - means) ** 2 / mean_var).sum(axis=1)
        log_term = np.log(mean_var).sum(axis=1) - (log_var[a] + log_var) / 2
        distance = mahalanobis / 8 + log_term / 2
        coefficient = np.exp(-distance)
        coefficient[a] = 0.0
        total += coefficient.sum()
    return float(-total)


register(Method(
    name="gbc", score=gbc,
    summary="GBC: overlap of per-class Gaussians, Bhattacharyya coefficient (Pándy et al. 2022)",
    upper_bound=lambda num_classes, **_: 0.0))


def reference_gbc(features: np.ndarray, labels: np.ndarray, *,
                  gaussian: Literal["spherical", "diagonal"] = "spherical") -> float:
    """GBC written as its formula (Pándy et al., CVPR 2022, Eq. 2-4), one pair of classes
    at a time, for reading and for testing :func:`gbc`; plain numpy, no validation.

    Class c ~ N(μ_c, diag v_c), v_c the population variance per dimension floored at 1e-4
    (``spherical``: its mean s_c over the dimensions, as a scalar); v̄ = (v_a + v_b)/2;
    D_B(a, b) = (1/8) Σ_d (μ_a − μ_b)²_d / v̄_d + ½ (log det v̄ − ½ log det v_a
    − ½ log det v_b) (spherical: the logs of the scalars);  GBC = −Σ_{a≠b} exp(−D_B(a, b)).
    """
    x, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
    classes = np.unique(labels)
    mu = [x[labels == c].mean(axis=0) for c in classes]
    var = [np.maximum(x[labels == c].var(axis=0), VARIANCE_FLOOR) for c in classes]
    if gaussian == "spherical":
        var = [np.array([v.mean()]) for v in var]
    total = 0.0
    for a in range(len(classes)):
        for b in range(len(classes)):
            if a != b:
                mean_var = (var[a] + var[b]) / 2
                distance = (np.sum((mu[a] - mu[b]) ** 2 / mean_var) / 8
                            + (np.sum(np.log(mean_var)) - np.sum(np.log(var[a])) / 2
                               - np.sum(np.log(var[b])) / 2) / 2)
                total += np.exp(-distance)
    return float(-total)
