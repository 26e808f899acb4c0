"""H-score (Bao et al., ICIP 2019) and regularised H-score (Ibrahim et al., NeurIPS 2021).

As tllib computes them (docs/reference.md), on f (N, D) with g the matrix whose rows
are replaced by their class means:

* ``hscore``:     H = tr( pinv(cov f) cov g ),              cov with denominator N - 1
* ``reg_hscore``: H = tr( pinv(Sigma_LW) (1 - a) cov g ),   f centred; Sigma_LW and a from
  Ledoit-Wolf shrinkage (scikit-learn's formula, biased covariance).

Both come from **one eigen-decomposition** of the centred Gram: T = f_c^T f_c = V L V^T
(D, D) when N >= D, else K = f_c f_c^T = U L U^T (N, N), which has the same non-zero
eigenvalues (so a 5 x 20,000 matrix needs a 5 x 5 eigen-problem, not a 20,000^2 one).
cov g = B^T B with B the (C, D) rows sqrt(n_c / (N - 1)) (mu_c - mean). The rows of B lie
in the row space of f_c (mu_c - mean is an average of centred rows), so per eigenvector
the between-class energy is e_j = ||B v_j||^2, which on the sample side is
l_j ||U_j^T A||^2 with A (N, C) = [y_i = c] sqrt(n_c / (N - 1)) / n_c. Then

    H = (N - 1) sum_j e_j / l_j,     H_reg = (1 - a) sum_j e_j / ((1 - a) l_j / N + a mu).

The pseudo-inverse keeps the eigenvalues above a **relative** threshold, max(N, D) eps
times the largest (numpy's rank rule): below it an eigenvalue is rounding noise and its
e_j is zero in exact arithmetic, so it is dropped from both scores. tllib's
``pinv(rcond=1e-15)`` keeps noise-level eigenvalues, and the old "Cholesky succeeded"
test switched between inverse and pseudo-inverse on rounding noise. Everything is
float64 (tllib keeps float32 input in float32 for the plain H-score).

Ledoit-Wolf from the same spectrum: with S = T / N, mu = tr S / D,
delta = (||S||_F^2 - 2 mu tr S + D mu^2) / D and
beta = min(delta, (sum_i ||f_c,i||^4 / N - ||S||_F^2) / (D N)), a = beta / delta
(the d x d matrix (f_c^2)^T f_c^2 of scikit-learn's formula only enters through its sum,
which is sum_i ||f_c,i||^4).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nctk.transfer._gaussian import F64, one_hot, to_float
from nctk.transfer._shared import SharedFeatures, shared_features
from nctk.transfer.registry import Method, register


def between_energy(stats: SharedFeatures) -> torch.Tensor:
    """(r,) e_j = ||B v_j||^2 per eigenvector of the centred Gram; 0 where it is null."""
    data, spec = stats.data, stats.spectrum
    weights = (data.counts / (data.n - 1)).sqrt()
    if spec.samples:
        a = one_hot(data.codes, data.num_classes) * (weights / data.counts)
        energy = spec.values * (spec.vectors.T @ a).square().sum(1)
    else:
        between = weights[:, None] * (stats.class_means - stats.mean)      # B (C, D)
        energy = (between @ spec.vectors).square().sum(0)
    return torch.where(spec.null(*data.x.shape), torch.zeros_like(energy), energy)


def _kept_sum(numerator: torch.Tensor, denominator: torch.Tensor, keep: torch.Tensor
              ) -> torch.Tensor:
    return (numerator[keep] / denominator[keep]).sum()


def hscore(features: Any, labels: Any, *, device: Any = None) -> float:
    """H-score tr(pinv(cov f) cov g) of one model (higher is better).

    Args:
        features: (N, D) numpy array or torch tensor (or its SharedFeatures);
            float64 on its device.
        labels: (N,) any labels, at least 2 classes.
        device: force a torch device (default: the input's).
    """
    stats = shared_features(features, labels, device=device)
    spec = stats.spectrum
    keep = ~spec.null(*stats.shape)
    return to_float((stats.data.n - 1) * _kept_sum(between_energy(stats), spec.values, keep))


def ledoit_wolf_shrinkage(stats: SharedFeatures) -> tuple[float, float]:
    """(a, mu): Ledoit-Wolf shrinkage of S = f_c^T f_c / N and mu = tr S / D."""
    n, d = stats.shape
    values = stats.spectrum.values / n                           # non-zero eigenvalues of S
    trace = float(values.sum())
    mu = trace / d
    frobenius = float(values.square().sum())
    delta = (frobenius - 2 * mu * trace + d * mu**2) / d
    beta = min((stats.fourth_moment / n - frobenius) / (d * n), delta)
    return (0.0 if beta == 0 else beta / delta), mu


def regularised_hscore(features: Any, labels: Any, *, device: Any = None) -> float:
    """Regularised H-score tr(pinv(Sigma_LW) (1 - a) cov g) of one model (higher is better).

    Args:
        features: (N, D) numpy array or torch tensor (or its SharedFeatures);
            float64 on its device.
        labels: (N,) any labels, at least 2 classes.
        device: force a torch device (default: the input's).
    """
    stats = shared_features(features, labels, device=device)
    shrinkage, mu = ledoit_wolf_shrinkage(stats)
    n = stats.data.n
    spec = stats.spectrum
    shrunk = (1 - shrinkage) * spec.values / n + shrinkage * mu    # eigenvalues of Sigma_LW
    keep = (shrunk > max(stats.shape) * torch.finfo(F64).eps * shrunk.max()) & ~spec.null(
        *stats.shape)
    return to_float((1 - shrinkage) * _kept_sum(between_energy(stats), shrunk, keep))


register(Method(
    name="hscore",
    score=hscore,
    summary="H-score: tr(cov(f)^+ cov(E[f|y])) (Bao et al., ICIP 2019)",
    # cov f = cov g + within-class covariance, and cov g has rank <= C - 1: H <= C - 1,
    # reached when the features are collapsed onto their class means
    upper_bound=lambda num_classes, **_: float(num_classes - 1),
))
register(Method(
    name="reg_hscore",
    score=regularised_hscore,
    summary="H-score with Ledoit-Wolf shrinkage (Ibrahim et al., NeurIPS 2021)",
))


# ---------------------------------------------------------------- the formulas, plainly


def reference_hscore(features: np.ndarray, labels: np.ndarray) -> float:
    """The H-score written as its formula (Bao et al., ICIP 2019), for reading and for
    testing :func:`hscore`; plain numpy, no validation.

    f (N, D) the features, g (N, D) each row replaced by its class mean, cov with
    denominator N − 1:  H = tr( pinv(cov f) · cov g ).
    """
    f = np.asarray(features, dtype=np.float64)
    _, y = np.unique(labels, return_inverse=True)
    g = np.stack([f[y == c].mean(axis=0) for c in range(y.max() + 1)])[y]
    return float(np.trace(np.linalg.pinv(np.cov(f, rowvar=False)) @ np.cov(g, rowvar=False)))


def reference_regularised_hscore(features: np.ndarray, labels: np.ndarray) -> float:
    """The regularised H-score written as its formula (Ibrahim et al., NeurIPS 2021), for
    reading and for testing :func:`regularised_hscore`:

    f centred; Σ_LW and a = the Ledoit-Wolf shrunk covariance of f and its shrinkage
    (scikit-learn ``ledoit_wolf``, biased covariance);  H = tr( pinv(Σ_LW) · (1 − a) cov g ).
    """
    from sklearn.covariance import ledoit_wolf

    f = np.asarray(features, dtype=np.float64)
    f = f - f.mean(axis=0)
    _, y = np.unique(labels, return_inverse=True)
    g = np.stack([f[y == c].mean(axis=0) for c in range(y.max() + 1)])[y]
    shrunk, a = ledoit_wolf(f, assume_centered=True)
    return float(np.trace(np.linalg.pinv(shrunk) @ ((1 - a) * np.cov(g, rowvar=False))))
