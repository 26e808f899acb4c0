"""LogME: log maximum evidence of a Bayesian linear model (You et al., ICML 2021 / JMLR).

For every class k, the one-hot target t_k = 1[y = k] is regressed on the features f (N, D)
with prior w ~ N(0, I / alpha) and noise N(0, 1 / beta); alpha and beta maximise the
evidence, and the score is the mean over classes of the maximised log-evidence / N
(docs/methods-core.md). Higher is better.

* ``variant="fixed_point"`` (default; thuml/LogME, NCTI and SFDA repositories): the
  fixed-point iteration of arXiv 2110.10545 on the min(N, D) singular values of f, at
  most 11 rounds, stop when |alpha/beta - tau| / tau <= 1e-3. Singular directions whose
  sigma = s^2 is at most max(N, D) eps sigma_max (rounding noise) count as exact zeros:
  each adds log(alpha) to the log-determinant, as a zero singular value does in the
  reference's N <= D branch (and, through its noise-level singular values, in its N > D
  branch). An absolute cutoff (the reference's s > 1e-10) made the score depend on the
  feature scale and on rounding noise (rank-deficient features: dead ReLU units).
* ``variant="icml"``: the ICML 2021 iteration (all D eigenvalues of f^T f, stop at a
  relative change < 0.01, epsilon 1e-5 in the evidence as thuml; tllib uses 0).

K is the number of distinct classes after label encoding. The reference uses
K = max(y) + 1, so absent label values add all-zero target columns whose evidence is huge
(a bug that inflates the score); here labels are encoded first, so no such column exists.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from nctk.errors import InputError
from nctk.transfer._gaussian import F64, one_hot, to_float
from nctk.transfer._shared import SharedFeatures, shared_features
from nctk.transfer.registry import Method, register

ROUNDS = 11
EPS = 1e-5


def null_cutoff(n: int, d: int) -> float:
    """sigma_j <= this * sigma_max is rounding noise of f^T f (numpy's matrix_rank rule)."""
    return max(n, d) * torch.finfo(F64).eps


def target_projections(stats: SharedFeatures) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(z (k, K), s (k,), null): z = U^T T for the left singular vectors U of f with
    non-zero singular values s, the one-hot T, and ``null`` = min(N, D) - k zero ones.

    From the eigen-decomposition of the uncentred Gram of the shared statistics: f^T f
    (D, D) when N >= D, then u_j^T t_k = v_j^T (f^T t_k) / s_j with f^T t_k the sum of the
    class-k rows (neither a float64 copy of f nor U (N, k) is formed); f f^T (N, N)
    otherwise, whose eigenvectors are U. Zero means sigma_j <= :func:`null_cutoff` times
    the largest (relative, so the split depends neither on the feature scale nor on
    rounding noise).
    """
    data, spec = stats.data, stats.uncentred_spectrum
    n, d = data.x.shape
    keep = spec.values > null_cutoff(n, d) * spec.values[0]
    s = spec.values[keep].sqrt()
    vectors = spec.vectors[:, keep]
    if spec.samples:
        z = vectors.T @ one_hot(data.codes, data.num_classes)
    else:
        z = (vectors.T @ stats.class_sums.T) / s[:, None]                 # T^T f = sums
    return z, s, min(n, d) - int(keep.sum())


def evidence_fixed_point(z: torch.Tensor, s: torch.Tensor, null: int, counts: torch.Tensor,
                         n: int, d: int) -> torch.Tensor:
    """(K,) maximised log-evidence / N of each target column, fixed-point variant.

    Args:
        z: (k, K) projections U^T t of the targets on the singular basis.
        s: (k,) non-zero singular values of f (N, D).
        null: how many of the min(N, D) singular values are zero; each adds
            log(alpha + beta 0) = log(alpha) to the log-determinant.
        counts: (K,) ||t_k||^2, the class sizes.

    All K columns iterate together; a column stops updating once it has converged, so
    every column follows exactly the reference's per-column loop.
    """
    sigma = s.square()[:, None]                                  # (k, 1)
    z2 = z.square()                                              # (k, K)
    outside = counts.to(F64) - z2.sum(0)                         # (K,) r0
    k_cols = z.shape[1]
    alpha = torch.ones(k_cols, dtype=F64, device=z.device)
    beta = torch.ones_like(alpha)
    active = torch.ones(k_cols, dtype=torch.bool, device=z.device)
    m2 = rho2 = torch.zeros_like(alpha)
    for _ in range(ROUNDS):
        tau = alpha / beta
        denom = sigma + tau
        gamma = (sigma / denom).sum(0)
        new_m2 = (sigma * z2 / denom.square()).sum(0)
        new_rho2 = (z2 * tau.square() / denom.square()).sum(0) + outside
        new_alpha = gamma / (new_m2 + EPS)
        new_beta = (n - gamma) / (new_rho2 + EPS)
        m2 = torch.where(active, new_m2, m2)
        rho2 = torch.where(active, new_rho2, rho2)
        alpha = torch.where(active, new_alpha, alpha)
        beta = torch.where(active, new_beta, beta)
        active = active & ((alpha / beta - tau).abs() / tau > 1e-3)
        if not bool(active.any()):
            break
    logdet = (alpha[None, :] + beta[None, :] * sigma).log().sum(0) + null * alpha.log()
    evidence = (d / 2 * alpha.log() + n / 2 * beta.log() - logdet / 2 - beta / 2 * rho2
                - alpha / 2 * m2 - n / 2 * math.log(2 * math.pi))
    return evidence / n


def evidence_icml(f: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(K,) maximised log-evidence / N of each target column, ICML 2021 variant."""
    n, d = f.shape
    s, v = torch.linalg.eigh(f.T @ f)
    projected = v.T @ (f.T @ targets)                            # (D, K)
    out = []
    for col in range(targets.shape[1]):
        t = targets[:, col]
        alpha, beta, lam = 1.0, 1.0, 1.0
        for _ in range(ROUNDS):
            gamma = to_float((beta * s / (alpha + beta * s)).sum())
            m = v @ (projected[:, col] * beta / (alpha + beta * s))
            m_sq = to_float(m.square().sum())
            alpha = gamma / (m_sq + EPS)
            res_sq = to_float((t - f @ m).square().sum())
            beta = (n - gamma) / (res_sq + EPS)
            new_lam = alpha / beta
            if abs(new_lam - lam) / lam < 0.01:
                break
            lam = new_lam
        logdet = to_float((alpha + beta * s).log().sum())
        out.append((d / 2 * math.log(alpha) + n / 2 * math.log(beta) - logdet / 2
                    - beta / 2 * (res_sq + EPS) - alpha / 2 * (m_sq + EPS)
                    - n / 2 * math.log(2 * math.pi)) / n)
    return torch.tensor(out, dtype=F64)


VARIANTS = ("fixed_point", "icml")


def logme_score(features: Any, labels: Any, *, variant: str = "fixed_point",
                device: Any = None) -> float:
    """LogME of one model: mean over classes of the log-evidence per sample.

    Args:
        features: (N, D) numpy array or torch tensor (or its SharedFeatures), cast
            to float64 on its device.
        labels: (N,) any labels, at least 2 classes.
        variant: ``"fixed_point"`` (default, as the NCTI/SFDA tables) or ``"icml"``.
        device: force a torch device (default: the input's).
    """
    if variant not in VARIANTS:
        raise InputError(f"unknown LogME variant '{variant}'; choose from "
                         f"{', '.join(VARIANTS)}")
    stats = shared_features(features, labels, device=device)
    data = stats.data
    if not bool(data.x.any()):
        raise InputError("is all zeros; LogME's evidence is undefined", array="features")
    if variant == "fixed_point":
        evidence = evidence_fixed_point(*target_projections(stats), data.counts,
                                        *data.x.shape)
    else:
        evidence = evidence_icml(data.x.to(F64), one_hot(data.codes, data.num_classes))
    return to_float(evidence.mean())


register(Method(
    name="logme",
    score=logme_score,
    summary="Log maximum evidence of a Bayesian linear head (You et al., ICML 2021)",
))


def reference_logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME written as its algorithm (You et al., ICML 2021; the fixed-point iteration
    of the JMLR version, as thuml/LogME), for reading and for testing :func:`logme_score`;
    plain numpy, no validation.

    f (N, D) = U diag(s) Vᵀ; per class k, t = 𝟙[y = k] (N,), z = Uᵀt, r₀ = ‖t‖² − ‖z‖²,
    σ_j = s_j². From α = β = 1, at most 11 rounds: τ = α/β, γ = Σ σ/(σ + τ),
    m² = Σ σ z²/(σ + τ)², ρ² = Σ z² τ²/(σ + τ)² + r₀, α = γ/(m² + ε), β = (N − γ)/(ρ² + ε)
    (ε = 1e-5), stopping once |α/β − τ|/τ ≤ 1e-3. Evidence per sample:
    L_k = [D/2 log α + N/2 log β − ½ Σ_{j ≤ min(N, D)} log(α + β σ_j) − β/2 ρ² − α/2 m²
    − N/2 log 2π] / N (a zero singular value adds log α);  LogME = mean_k L_k.
    """
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2
    evidences = []
    for k in np.unique(labels):
        t = (np.asarray(labels) == k).astype(np.float64)
        z = u.T @ t
        outside = t @ t - z @ z
        alpha = beta = 1.0
        for _ in range(ROUNDS):
            tau = alpha / beta
            gamma = np.sum(sigma / (sigma + tau))
            m2 = np.sum(sigma * z**2 / (sigma + tau) ** 2)
            rho2 = np.sum(z**2 * tau**2 / (sigma + tau) ** 2) + outside
            alpha, beta = gamma / (m2 + EPS), (n - gamma) / (rho2 + EPS)
            if abs(alpha / beta - tau) / tau <= 1e-3:
                break
        evidences.append((d / 2 * np.log(alpha) + n / 2 * np.log(beta)
                          - np.sum(np.log(alpha + beta * sigma)) / 2 - beta / 2 * rho2
                          - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi)) / n)
    return float(np.mean(evidences))
