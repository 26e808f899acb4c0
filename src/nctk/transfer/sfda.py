"""SFDA: Self-challenging Fisher Discriminant Analysis (Shao et al., ECCV 2022).

As the official ``SFDA_Score`` computes it (docs/reference.md), on X (N, D):

1. Sigma_w = W / N; lambda = the 3-round two-vector power estimate of its top eigenvalue
   (start v = Sigma_w 1, or the largest-variance column of Sigma_w when the row sums
   cancel to rounding noise); alpha = max(exp(-5 lambda), 1e-10).
2. Posteriors P = softmax(l), l_ic = x_i^T S^-1 mu_c - mu_c^T S^-1 mu_c / 2 + log pi_c,
   S = shr_alpha(Sigma_w). (The reference's "Fisher projection" uses all D eigenvectors,
   so it equals S^-1 and has no effect; it is not computed here.)
3. ConfMix: w_i = softmax(P_i)[y_i]; x_i <- w_i x_i + (1 - w_i) mean_{k != y_i} mu_k (the
   unweighted mean of the other class means of the unmixed X), rounded to the input dtype
   as the reference does (it writes the result into the float32 array).
4. Second fit on the mixed X with the same alpha; score = (1/N) sum_i P2[i, y_i].

Unlike the reference, the caller's array is never modified (the reference's in-place
ConfMix is a bug: scoring the same array twice gives different results).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from nctk.errors import InputError
from nctk.transfer._gaussian import (
    F64,
    Labelled,
    class_means,
    gaussian_logits,
    row_blocks,
    shrink,
    solve_spd,
    to_float,
    true_class_probability,
    within_scatter,
)
from nctk.transfer._shared import shared_features
from nctk.transfer.registry import Method, register

ALPHA_FLOOR = 1e-10
POWER_ROUNDS = 3


def power_estimate(sigma: torch.Tensor, rounds: int = POWER_ROUNDS) -> float:
    """The reference's ``iterative_A`` estimate of the top eigenvalue of ``sigma`` (D, D).

    v = sigma 1; each round u = sigma v / ||sigma v||, v = sigma u / ||sigma u||; then
    lambda = v^T sigma u (not exactly a Rayleigh quotient: u != v).

    When sigma 1 is zero up to rounding (||sigma 1|| <= D eps ||sigma||_F: the row sums
    cancel, as for features [a, -a]) the reference divides 0 by 0; the start is then
    sigma e_j, the column of the largest variance, which is non-zero for any sigma != 0.
    """
    v = sigma.sum(1)
    noise = sigma.shape[0] * torch.finfo(sigma.dtype).eps * torch.linalg.matrix_norm(sigma)
    if bool(torch.linalg.vector_norm(v) <= noise):
        v = sigma[:, int(torch.argmax(torch.diagonal(sigma)))]
    for _ in range(rounds):
        u = sigma @ v
        u = u / torch.linalg.vector_norm(u)
        v = sigma @ u
        v = v / torch.linalg.vector_norm(v)
    return to_float(v @ sigma @ u)


def _fit_logits(data: Labelled, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """(N, C) LDA logits of ``x`` with S = shr_alpha(W / N)."""
    means = class_means(data, x)
    sigma = shrink(within_scatter(x, data.codes, means) / data.n, alpha)
    return gaussian_logits(x, means, solve_spd(sigma, means.T), data.priors)


def sfda_score(features: Any, labels: Any, *, device: Any = None) -> float:
    """SFDA score of one model (higher is better), in (0, 1].

    Args:
        features: (N, D) numpy array or torch tensor (or its SharedFeatures);
            computed in float64 on its device.
        labels: (N,) any labels, at least 2 classes.
        device: force a torch device (default: the input's).
    """
    stats = shared_features(features, labels, device=device)
    data = stats.data
    x, c = data.x, data.num_classes
    if bool((data.counts == 1).all()):
        raise InputError("has one sample per class, so no within-class variation; SFDA's "
                         "shrinkage is undefined", array="features")
    means = stats.class_means
    sigma_w = within_scatter(x, data.codes, means) / data.n
    lam = power_estimate(sigma_w)
    if not math.isfinite(lam):
        raise InputError("has no within-class variation (constant features); SFDA's "
                         "shrinkage is undefined", array="features")
    alpha = max(math.exp(-5.0 * lam), ALPHA_FLOOR)
    sigma = shrink(sigma_w, alpha)
    logits = gaussian_logits(x, means, solve_spd(sigma, means.T), data.priors)
    weight = true_class_probability(torch.softmax(logits, dim=1), data.codes)[:, None]
    others = (means.sum(0) - means) / (c - 1)
    mixed = torch.empty_like(x)
    for b in row_blocks(data.n):
        mixed[b] = weight[b] * x[b].to(F64) + (1.0 - weight[b]) * others[data.codes[b]]
    return to_float(true_class_probability(_fit_logits(data, mixed, alpha), data.codes).mean())


register(Method(
    name="sfda",
    score=sfda_score,
    summary="Self-challenging Fisher discriminant analysis (Shao et al., ECCV 2022)",
    upper_bound=lambda num_classes, **_: 1.0,  # a mean posterior probability
))


def reference_sfda(features: np.ndarray, labels: np.ndarray) -> float:
    """SFDA written as its steps (Shao et al., ECCV 2022, as the official ``SFDA_Score``),
    for reading and for testing :func:`sfda_score`; plain numpy, no validation.

    1. Σ_w = W/N, λ = three rounds of v ← Σ_w u/‖Σ_w u‖, u ← Σ_w v/‖Σ_w v‖ from v = Σ_w 𝟙,
       then λ = vᵀΣ_w u; α = max(exp(−5λ), 1e-10); S = (1 − α)Σ_w + α (tr Σ_w/D) I;
    2. P = softmax(l), l_ic = x_iᵀS⁻¹μ_c − ½ μ_cᵀS⁻¹μ_c + log π_c;
    3. ConfMix: w_i = softmax(P_i)[y_i], x_i ← w_i x_i + (1 − w_i) μ̄_{−y_i}, μ̄_{−c} the
       unweighted mean of the other class means;
    4. the same fit on the mixed features with the same α: SFDA = (1/N) Σ_i P²_{i, y_i}.
    """
    x = np.asarray(features, dtype=np.float64)
    classes, y = np.unique(labels, return_inverse=True)
    n, d = x.shape

    def posteriors(x: np.ndarray, alpha: float | None) -> tuple[np.ndarray, float, np.ndarray]:
        means = np.stack([x[y == c].mean(axis=0) for c in range(len(classes))])
        resid = x - means[y]
        sigma_w = resid.T @ resid / n
        if alpha is None:
            v = sigma_w @ np.ones(d)
            for _ in range(POWER_ROUNDS):
                u = sigma_w @ v / np.linalg.norm(sigma_w @ v)
                v = sigma_w @ u / np.linalg.norm(sigma_w @ u)
            alpha = max(np.exp(-5 * (v @ sigma_w @ u)), ALPHA_FLOOR)
        s = (1 - alpha) * sigma_w + alpha * np.trace(sigma_w) / d * np.eye(d)
        precision_means = np.linalg.solve(s, means.T)
        logits = (x @ precision_means - 0.5 * np.sum(means.T * precision_means, axis=0)
                  + np.log(np.bincount(y) / n))
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True), alpha, means

    p, alpha, means = posteriors(x, None)
    weight = (np.exp(p) / np.exp(p).sum(axis=1, keepdims=True))[np.arange(n), y][:, None]
    others = (means.sum(axis=0) - means) / (len(classes) - 1)
    mixed, _, _ = posteriors(weight * x + (1 - weight) * others[y], alpha)
    return float(mixed[np.arange(n), y].mean())
