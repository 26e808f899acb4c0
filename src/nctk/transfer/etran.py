"""ETran: energy-based transferability estimation (Gholami et al., ICCV 2023).

Three raw terms per model, from the (N, d) features X and the labels
(docs/methods-recommended.md):

* energy  S_en  = mean of the k smallest e_i = log sum_j exp(x_ij), k = floor(5 N / 1000)
  (at least 1). The official code applies the log-sum-exp to the penultimate features
  (``Energy_Score(X_features, 0.5, 'bot')``: the bottom 0.5 % of the samples).
* lda     S_lda = (1/N) sum_i softmax_c(l_i)[y_i], l_ic = x_i^T mu_c - ||mu_c||^2 / 2 + log pi_c.
  The official ``LDA_Score`` fits a shrunk LDA but classifies with coef = means V V^T,
  where V holds all d orthonormal eigenvectors of ``eigh``: V V^T = I, so its posteriors
  are exactly these nearest-class-mean (identity covariance) posteriors.
* svd     S_svd = -(1/(N C)) ||Y - X B||_F^2 with B the minimum-norm least-squares fit of
  the one-hot labels Y (N, C) on X: the paper's SVD-based regression score applied to the
  classification targets (the official code has it for regression only).

Pool (the official ``tw.py``): ETran_m = w_en n(S_en) + w_lda n(S_lda) + w_svd n(S_svd),
n = min-max over the pool, weights 0.15, 0.85 and 0 (the classification score of the
reference combines only energy and LDA). ``nctk.score("etran", X, y)`` is the
pool-independent raw sum w_en S_en + w_lda S_lda + w_svd S_svd.

``etran_equal`` is the same terms with the paper's equal weights, n(S_en) + n(S_lda) (the
paper's T = S_en + S_cls): the ``etran`` rows of the public tmlr scores, under a name of
its own because it ranks models differently from the reference's weighting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from nctk.errors import InputError
from nctk.transfer._gaussian import (
    F64,
    class_means,
    class_sums,
    gaussian_logits,
    prepare,
    row_blocks,
    to_float,
    true_class_probability,
)
from nctk.transfer.ncti import min_max
from nctk.transfer.registry import Components, Method, register

TERMS = ("energy", "lda", "svd")
#: The reference keeps int(0.5 * 10) * N // 1000 samples: 5 per mille.
ENERGY_PERMILLE = 5
DEFAULT_WEIGHTS = {"w_energy": 0.15, "w_lda": 0.85, "w_svd": 0.0}
#: The paper's T = S_en + S_cls: the weights of ``etran_equal`` (and of the public tmlr rows).
EQUAL_WEIGHTS = {"w_energy": 1.0, "w_lda": 1.0, "w_svd": 0.0}


def energy_term(x: torch.Tensor, permille: int = ENERGY_PERMILLE) -> tuple[float, int]:
    """(S_en, k): mean log-sum-exp of the k lowest-energy samples, k = max(1, p N // 1000)."""
    lse = torch.cat([torch.logsumexp(x[b].to(F64), dim=1) for b in row_blocks(x.shape[0])])
    k = max(1, permille * x.shape[0] // 1000)
    return to_float(torch.topk(lse, k, largest=False).values.mean()), k


def svd_term(x: torch.Tensor, codes: torch.Tensor, num_classes: int) -> float:
    """-(1/(N C)) ||Y - X B||^2 for the least-squares fit B of one-hot Y on X (no intercept).

    ||X B||^2 = ||U^T Y||^2 with U the left singular vectors of X; from the Gram matrix
    X^T X = V S^2 V^T, U^T Y = S^-1 V^T X^T Y, so only X^T X (d, d) and X^T Y (d, C) are
    formed (no float64 copy of X). An eigenvalue of X^T X below lambda_max max(N, d) eps is
    rounding noise of the Gram matrix: its direction is treated as null. With rank N (as
    many independent directions as samples, e.g. N <= d) the fit is exact: S_svd = 0.
    """
    n, d = x.shape
    gram = torch.zeros(d, d, dtype=F64, device=x.device)
    for b in row_blocks(n):
        xb = x[b].to(F64)
        gram.addmm_(xb.T, xb)
    evals, evecs = torch.linalg.eigh(gram)
    keep = evals > evals.max() * max(n, d) * torch.finfo(F64).eps
    if int(keep.sum()) >= n:
        return 0.0
    cross = class_sums(x, codes, num_classes).T                      # X^T Y, (d, C)
    projected = (evecs[:, keep].T @ cross) / evals[keep, None].sqrt()  # U^T Y, (r, C)
    residual = max(n - to_float((projected ** 2).sum()), 0.0)        # ||Y||^2 = N
    return -residual / (n * num_classes)


def etran_components(features: Any, labels: Any, *, energy_permille: int = ENERGY_PERMILLE,
                     device: Any = None) -> Components:
    """Raw ETran terms of one model.

    Args:
        features: (N, d) numpy array or torch tensor (computed in float64 on its device).
        labels: (N,) any labels, at least 2 classes.
        energy_permille: per mille of the samples (lowest energy) averaged by the energy
            term (5 in the reference).
        device: force a torch device (default: the input's).

    Returns:
        ``{energy, lda, svd, energy_samples}``.
    """
    if isinstance(energy_permille, bool) or not isinstance(energy_permille, int) or not (
            0 < energy_permille <= 1000):
        raise InputError(f"energy_permille must be an integer in 1..1000, got "
                         f"{energy_permille!r}")
    data = prepare(features, labels, device=device)
    energy, k = energy_term(data.x, energy_permille)
    means = class_means(data)
    logits = gaussian_logits(data.x, means, means.T, data.priors)
    lda = to_float(true_class_probability(logits, data.codes).mean())
    svd = svd_term(data.x, data.codes, data.num_classes)
    return {"energy": energy, "lda": lda, "svd": svd, "energy_samples": float(k)}


def reference_etran_terms(features: np.ndarray, labels: np.ndarray, *,
                          energy_permille: int = ENERGY_PERMILLE) -> dict[str, float]:
    """The raw ETran terms written as their formulas (Gholami et al., ICCV 2023; the
    official classification code), for reading and for testing :func:`etran_components`;
    plain numpy, no validation. X (N, d), Y (N, C) one-hot:

    energy = mean of the k = max(1, ⌊5N/1000⌋) smallest log Σ_j exp(x_ij);
    lda    = (1/N) Σ_i softmax_c(x_iᵀμ_c − ‖μ_c‖²/2 + log π_c)[y_i];
    svd    = −‖Y − X B‖_F² / (N C), B = pinv(X) Y the least-squares fit.
    """
    x = np.asarray(features, dtype=np.float64)
    classes, y = np.unique(labels, return_inverse=True)
    n = x.shape[0]
    top = x.max(axis=1, keepdims=True)
    energy = np.sort((top + np.log(np.exp(x - top).sum(axis=1, keepdims=True)))[:, 0])
    means = np.stack([x[y == c].mean(axis=0) for c in range(len(classes))])
    logits = x @ means.T - 0.5 * (means**2).sum(axis=1) + np.log(np.bincount(y) / n)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.eye(len(classes))[y]
    residual = onehot - x @ np.linalg.pinv(x) @ onehot
    return {"energy": float(energy[:max(1, energy_permille * n // 1000)].mean()),
            "lda": float(p[np.arange(n), y].mean()),
            "svd": float(-(residual**2).sum() / (n * len(classes)))}


def _weights(w_energy: float, w_lda: float, w_svd: float) -> tuple[float, float, float]:
    weights = (float(w_energy), float(w_lda), float(w_svd))
    if not all(math.isfinite(w) for w in weights):
        raise InputError(f"ETran term weights must be finite, got {weights}")
    return weights


def combine_pool(raw: Mapping[str, Components], *, w_energy: float = 0.15,
                 w_lda: float = 0.85, w_svd: float = 0.0
                 ) -> tuple[dict[str, float], dict[str, Components]]:
    """Pool ETran: w_energy n(energy) + w_lda n(lda) + w_svd n(svd), n = min-max over the
    pool (a term equal for every model gets 0.5 for all, as in NCTI).

    Returns per-model scores and components (raw terms plus ``*_norm``).
    """
    weights = dict(zip(TERMS, _weights(w_energy, w_lda, w_svd), strict=True))
    norm = {t: min_max({m: c[t] for m, c in raw.items()}) for t in TERMS}
    scores = {m: sum(weights[t] * norm[t][m] for t in TERMS) for m in raw}
    comps = {m: {**c, **{f"{t}_norm": norm[t][m] for t in TERMS}} for m, c in raw.items()}
    return scores, comps


def etran_score(features: Any, labels: Any, *, w_energy: float = 0.15, w_lda: float = 0.85,
                w_svd: float = 0.0, **options: Any) -> float:
    """Pool-independent ETran of one model: the raw weighted sum of its terms.

    Not on the scale of the pool score (whose terms are min-max normalised) and dominated
    by the energy term, whose scale is that of the features; rank pools with
    ``nctk.rank(pool, labels, "etran")``.
    """
    weights = dict(zip(TERMS, _weights(w_energy, w_lda, w_svd), strict=True))
    terms = etran_components(features, labels, **options)
    return sum(weights[t] * terms[t] for t in TERMS)


register(Method(
    name="etran",
    score=etran_score,
    summary="Energy-based transferability, energy + LDA (+ SVD) terms (Gholami et al., ICCV "
            "2023)",
    components=etran_components,
    combine=combine_pool,
    combine_options=tuple(DEFAULT_WEIGHTS),
))


def combine_equal(raw: Mapping[str, Components]
                  ) -> tuple[dict[str, float], dict[str, Components]]:
    """Pool ``etran_equal``: n(energy) + n(lda), n = min-max over the pool (0..2)."""
    return combine_pool(raw, **EQUAL_WEIGHTS)


def etran_equal_score(features: Any, labels: Any, *, energy_permille: int = ENERGY_PERMILLE,
                      device: Any = None) -> float:
    """Pool-independent ``etran_equal`` of one model: the raw sum S_en + S_lda."""
    return etran_score(features, labels, **EQUAL_WEIGHTS, energy_permille=energy_permille,
                       device=device)


register(Method(
    name="etran_equal",
    score=etran_equal_score,
    summary="ETran with the paper's equal term weights, n(energy) + n(LDA) (the public tmlr "
            "scores' ETran)",
    components=etran_components,
    combine=combine_equal,
))
