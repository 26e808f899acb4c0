"""TransRate (Huang et al., ICML 2022) as tllib computes it.

With f the globally centred features and the coding rate of a matrix A (n_A rows, d cols)

    R(A) = ½ · logdet(I_d + AᵀA / (n_A · ε)),        ε = 1e-4,

    TrR = R(f) − (1/C) Σ_c R(f_c)

where f_c are the rows of class c, *not* re-centred per class, averaged with equal weights
(tllib). The paper instead scales by d/(n ε²) and weights by n_c/n; the options
``class_weights="prior"`` and ``center_classes=True`` give the paper's weighting and the
per-class re-centring. Higher = more transferable. See ``docs/methods-baselines.md``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from nctk.errors import InputError
from nctk.transfer.registry import Method, register
from nctk.validation import check_matrix, encode_labels

#: ε of the coding rate (tllib's default).
TRANSRATE_EPS = 1e-4


def coding_rate(a: np.ndarray, eps: float = TRANSRATE_EPS) -> float:
    """R(A) = ½ logdet(I_d + AᵀA / (n ε)) for A of shape (n, d), float64.

    By Sylvester's identity logdet(I_d + AᵀA/c) = logdet(I_n + AAᵀ/c), so the determinant
    is taken on the smaller of the d×d covariance and the n×n Gram matrix: per-class blocks
    usually have fewer rows than dimensions, which makes this much cheaper than the d×d form.
    """
    n, d = a.shape
    gram = a.T @ a if d <= n else a @ a.T
    _, logdet = np.linalg.slogdet(np.eye(gram.shape[0]) + gram / (n * eps))
    return 0.5 * logdet


def transrate(features: Any, labels: Any, *, eps: float = TRANSRATE_EPS,
              class_weights: Literal["uniform", "prior"] = "uniform",
              center_classes: bool = False) -> float:
    """TransRate: coding rate of the features minus the mean coding rate of each class.

    Args:
        features: (N, d) target features (cast to float64, so float32 and float64 inputs
            agree; tllib keeps the input dtype and its result depends on it slightly).
        labels: (N,) target labels (any hashable values), at least 2 classes.
        eps: ε of the coding rate (> 0).
        class_weights: ``"uniform"`` = 1/C per class (tllib, default); ``"prior"`` = n_c/N
            (the paper).
        center_classes: re-centre each class on its own mean before its coding rate
            (default False, as tllib).

    Returns:
        TrR; higher = more transferable.
    """
    x = check_matrix(features, "features").astype(np.float64)
    y = encode_labels(labels, x.shape[0])
    if not eps > 0:
        raise InputError(f"eps must be positive, got {eps}")
    if class_weights not in ("uniform", "prior"):
        raise InputError(f"unknown class_weights '{class_weights}'; choose uniform or prior")
    x = x - x.mean(axis=0)
    weights = (np.full(y.num_classes, 1 / y.num_classes) if class_weights == "uniform"
               else y.counts / x.shape[0])
    class_rate = 0.0
    for c in range(y.num_classes):
        rows = x[y.codes == c]
        if center_classes:
            rows = rows - rows.mean(axis=0)
        class_rate += weights[c] * coding_rate(rows, eps)
    return float(coding_rate(x, eps) - class_rate)


register(Method(
    name="transrate", score=transrate,
    summary="TransRate: coding rate of features minus that within classes (Huang et al. 2022)"))


def reference_transrate(features: np.ndarray, labels: np.ndarray, *,
                        eps: float = TRANSRATE_EPS) -> float:
    """TransRate written as its formula (Huang et al., ICML 2022, as tllib), for reading
    and for testing :func:`transrate`; plain numpy, no validation.

    f (N, d) globally centred, R(A) = ½ log det(I_d + AᵀA / (n_A ε)) for A with n_A rows;
    TrR = R(f) − (1/C) Σ_c R(f_c), f_c the rows of class c (not re-centred).
    """
    def rate(a: np.ndarray) -> float:
        return 0.5 * np.linalg.slogdet(np.eye(a.shape[1]) + a.T @ a / (a.shape[0] * eps))[1]

    f, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
    f = f - f.mean(axis=0)
    classes = np.unique(labels)
    return float(rate(f) - np.mean([rate(f[labels == c]) for c in classes]))
