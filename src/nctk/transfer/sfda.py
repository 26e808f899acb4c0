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
