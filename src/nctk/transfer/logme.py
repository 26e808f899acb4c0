"""LogME: log maximum evidence of a Bayesian linear model (You et al., ICML 2021 / JMLR).

For every class k, the one-hot target t_k = 1[y = k] is regressed on the features f (N, D)
with prior w ~ N(0, I / alpha) and noise N(0, 1 / beta); alpha and beta maximise the
evidence, and the score is the mean over classes of the maximised log-evidence / N
(``spec/metrics.md`` §4). Higher is better.

* ``variant="fixed_point"`` (default; thuml/LogME, NCTI and SFDA repositories): the
  fixed-point iteration of arXiv 2110.10545 on the SVD of f (singular values > 1e-10
  when N > D), at most 11 rounds, stop when |alpha/beta - tau| / tau <= 1e-3.
* ``variant="icml"``: the ICML 2021 iteration (all D eigenvalues of f^T f, stop at a
  relative change < 0.01, epsilon 1e-5 in the evidence as thuml; tllib uses 0).

K is the number of distinct classes after label encoding. The reference uses
K = max(y) + 1, so absent label values add all-zero target columns whose evidence is huge
(a bug that inflates the score); here labels are encoded first, so no such column exists.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from nctk.errors import InputError
from nctk.transfer._gaussian import (
    F64,
    Labelled,
    centred_gram,
    class_sums,
    prepare,
    to_float,
)
from nctk.transfer.registry import Method, register

ROUNDS = 11
EPS = 1e-5
SINGULAR_CUTOFF = 1e-10


def one_hot(codes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, K) float64 one-hot targets."""
    return torch.nn.functional.one_hot(codes, num_classes).to(F64)


def target_projections(data: Labelled) -> tuple[torch.Tensor, torch.Tensor]:
    """(z (k, K), s (k,)): z = U^T T for the left singular vectors U of f and the one-hot T.

    N > D: from the eigen-decomposition of f^T f, keeping s > 1e-10, and
    u_j^T t_k = v_j^T (f^T t_k) / s_j where f^T t_k is the sum of the class-k rows. Both
    f^T f and the class sums are accumulated block by block, so neither a float64 copy of
    f (N, D) nor U (N, k) is formed. Otherwise the thin SVD of f with all N values (the
    reference's two branches).
    """
    n, d = data.x.shape
    if n > d:
        gram = centred_gram(data.x, torch.zeros(d, dtype=F64, device=data.x.device))
        evals, evecs = torch.linalg.eigh(gram)
        s = evals.clamp_min(0).sqrt()
        keep = s > SINGULAR_CUTOFF
        sums = class_sums(data.x, data.codes, data.num_classes)          # (K, D) = T^T f
        return (evecs[:, keep].T @ sums.T) / s[keep][:, None], s[keep]
    u, s, _ = torch.linalg.svd(data.x.to(F64), full_matrices=False)
    return u.T @ one_hot(data.codes, data.num_classes), s


def evidence_fixed_point(z: torch.Tensor, s: torch.Tensor, counts: torch.Tensor, n: int,
                         d: int) -> torch.Tensor:
    """(K,) maximised log-evidence / N of each target column, fixed-point variant.

    Args:
        z: (k, K) projections U^T t of the targets on the singular basis.
        s: (k,) singular values of f (N, D).
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
    logdet = (alpha[None, :] + beta[None, :] * sigma).log().sum(0)
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
        features: (N, D) numpy array or torch tensor, cast to float64 on its device.
        labels: (N,) any labels, at least 2 classes.
        variant: ``"fixed_point"`` (default, as the NCTI/SFDA tables) or ``"icml"``.
        device: force a torch device (default: the input's).
    """
    if variant not in VARIANTS:
        raise InputError(f"unknown LogME variant '{variant}'; choose from "
                         f"{', '.join(VARIANTS)}")
    data = prepare(features, labels, device=device)
    if variant == "fixed_point":
        evidence = evidence_fixed_point(*target_projections(data), data.counts, *data.x.shape)
    else:
        evidence = evidence_icml(data.x.to(F64), one_hot(data.codes, data.num_classes))
    return to_float(evidence.mean())


register(Method(
    name="logme",
    score=logme_score,
    summary="Log maximum evidence of a Bayesian linear head (You et al., ICML 2021)",
))
