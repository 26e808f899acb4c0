"""H-score (Bao et al., ICIP 2019) and regularised H-score (Ibrahim et al., NeurIPS 2021).

As tllib computes them (``spec/metrics.md`` §9), on f (N, D) with g the matrix whose rows
are replaced by their class means:

* ``hscore``:     H = tr( pinv(cov f) cov g ),              cov with denominator N - 1
* ``reg_hscore``: H = tr( pinv(Sigma_LW) (1 - a) cov g ),   f centred; Sigma_LW and a from
  Ledoit-Wolf shrinkage (scikit-learn's formula, biased covariance).

cov g = sum_c n_c (mu_c - mean)(mu_c - mean)^T / (N - 1) is formed from the class means
directly. The pseudo-inverse (rcond 1e-15) is applied as a Cholesky solve when the matrix
is numerically positive definite (then pinv = inverse exactly) and through a Hermitian
pseudo-inverse otherwise. Everything is float64 (tllib keeps float32 input in float32 for
the plain H-score; the float64 value is the one both dtypes agree on). With N <= D, cov f
is singular and the plain H-score is unstable, as in the reference.
"""

from __future__ import annotations

from typing import Any

import torch

from nctk.transfer._gaussian import (
    F64,
    Labelled,
    centred_gram,
    class_means,
    column_mean,
    prepare,
    row_blocks,
    to_float,
)
from nctk.transfer.registry import Method, register

PINV_RCOND = 1e-15


def _between(data: Labelled, mean: torch.Tensor) -> torch.Tensor:
    """(C, D) rows sqrt(n_c / (N - 1)) (mu_c - mean), so that B^T B = cov g."""
    means = class_means(data)
    return (data.counts / (data.n - 1)).sqrt()[:, None] * (means - mean)


def trace_pinv_product(sigma: torch.Tensor, between: torch.Tensor) -> torch.Tensor:
    """tr(pinv(sigma) B^T B) for symmetric PSD ``sigma`` (D, D) and B (C, D)."""
    factor, info = torch.linalg.cholesky_ex(sigma)
    if int(info) == 0:
        half = torch.linalg.solve_triangular(factor, between.T, upper=False)
        return half.square().sum()
    solved = torch.linalg.pinv(sigma, rtol=PINV_RCOND, hermitian=True) @ between.T
    return (between.T * solved).sum()


def hscore(features: Any, labels: Any, *, device: Any = None) -> float:
    """H-score tr(pinv(cov f) cov g) of one model (higher is better).

    Args:
        features: (N, D) numpy array or torch tensor; float64 on its device.
        labels: (N,) any labels, at least 2 classes.
        device: force a torch device (default: the input's).
    """
    data = prepare(features, labels, device=device)
    mean = column_mean(data.x)
    cov_f = centred_gram(data.x, mean) / (data.n - 1)
    return to_float(trace_pinv_product(cov_f, _between(data, mean)))


def ledoit_wolf(x: torch.Tensor, mean: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Ledoit-Wolf shrunk covariance and shrinkage of X (N, D) (scikit-learn's formula).

    S = X_c^T X_c / N; mu = tr S / D; delta = ||S - mu I||_F^2 / D;
    beta = min(delta, (sum_ij (X_c^2)^T X_c^2 / N - ||S||_F^2) / (D N));
    a = beta / delta; Sigma = (1 - a) S + a mu I.
    """
    n, d = x.shape
    emp = torch.zeros(d, d, dtype=F64, device=x.device)
    fourth = torch.zeros(d, d, dtype=F64, device=x.device)
    for b in row_blocks(n):
        r = x[b].to(F64) - mean
        emp.addmm_(r.T, r)
        sq = r.square()
        fourth.addmm_(sq.T, sq)
    emp /= n
    mu = torch.trace(emp) / d
    delta_raw = emp.square().sum()
    beta = (fourth.sum() / n - delta_raw) / (d * n)
    delta = (delta_raw - 2 * mu * torch.trace(emp) + d * mu**2) / d
    beta = torch.minimum(beta, delta)
    shrinkage = 0.0 if float(beta) == 0 else to_float(beta / delta)
    eye = torch.eye(d, dtype=F64, device=x.device)
    return (1 - shrinkage) * emp + shrinkage * mu * eye, shrinkage


def regularised_hscore(features: Any, labels: Any, *, device: Any = None) -> float:
    """Regularised H-score tr(pinv(Sigma_LW) (1 - a) cov g) of one model (higher is better).

    Args:
        features: (N, D) numpy array or torch tensor; float64 on its device.
        labels: (N,) any labels, at least 2 classes.
        device: force a torch device (default: the input's).
    """
    data = prepare(features, labels, device=device)
    mean = column_mean(data.x)
    sigma, shrinkage = ledoit_wolf(data.x, mean)
    return to_float((1 - shrinkage) * trace_pinv_product(sigma, _between(data, mean)))


register(Method(
    name="hscore",
    score=hscore,
    summary="H-score: tr(cov(f)^+ cov(E[f|y])) (Bao et al., ICIP 2019)",
))
register(Method(
    name="reg_hscore",
    score=regularised_hscore,
    summary="H-score with Ledoit-Wolf shrinkage (Ibrahim et al., NeurIPS 2021)",
))
