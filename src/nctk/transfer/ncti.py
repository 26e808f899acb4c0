"""NCTI: Neural Collapse inspired Transferability Index (Wang et al., ICCV 2023).

Per model (the official ``NCTI_Score``, docs/reference.md): exact PCA of X (N, d) to
k = min(64, d, N - 1) dims; s = sum of the top-32 explained variances;
alpha = max(exp(-s), 1e-10). If exp(-s) <= 1e-10 (the clamp is active) LDA without
shrinkage (svd solver, Sigma = W / (N - C)), else LDA with shrinkage alpha (eigen solver).
From the projection L (N, r) and the posteriors P (N, C):

* seli = ||L - 1 mean(L)||_*                        (nuclear norm)
* ncc  = (1/N) sum_i P[i, y_i]                      (mean true-class posterior)
* vc   = log sum_c ||P_c||_*                         (P_c: the rows of class c)

Pool (§2.2): NCTI_m = w_seli n(seli) + w_ncc n(ncc) - w_vc n(vc) with n the min-max
normalisation over the models of the pool. A term equal for every model (or a pool of one)
has no spread: the reference divides 0 by 0 (NaN); here every model gets the midpoint 0.5
for that term, so it shifts all scores equally and leaves the ranking to the other terms.

``nctk.score("ncti", X, y)`` is the pool-independent variant (docs/methods-core.md):
each term mapped to [0, 1] by bounds that depend only on the model's own data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nctk.errors import InputError
from nctk.transfer._gaussian import to_float, true_class_probability
from nctk.transfer._lda import fit_eigen, fit_svd
from nctk.transfer._shared import shared_features
from nctk.transfer.registry import Components, Method, register

PCA_DIM = 64
TOP_VARIANCES = 32
ALPHA_FLOOR = 1e-10
#: PCA components whose variance is below this fraction of the largest are rounding noise.
NULL_VARIANCE = 1e-12
TERMS = ("seli", "ncc", "vc")


@dataclass(frozen=True)
class NctiTerms:
    """The raw NCTI terms of one model and what produced them.

    Attributes:
        seli, ncc, vc: the three raw components (see the module docstring).
        seli_within: nuclear norm of the within-class residuals under the same projection
            (``seli >= seli_within``; used by the pool-independent variant).
        alpha: the shrinkage strength max(exp(-s), 1e-10).
        svd_path: True when the clamp was active (no shrinkage, Sigma = W / (N - C)).
        pca_dim, lda_dim: k and r.
        class_counts: (C,) samples per class.
    """

    seli: float
    ncc: float
    vc: float
    seli_within: float
    alpha: float
    svd_path: bool
    pca_dim: int
    lda_dim: int
    class_counts: np.ndarray

    def as_components(self) -> Components:
        return {"seli": self.seli, "ncc": self.ncc, "vc": self.vc,
                "seli_within": self.seli_within, "alpha": self.alpha,
                "svd_path": float(self.svd_path), "pca_dim": float(self.pca_dim),
                "lda_dim": float(self.lda_dim)}


def nuclear_norm(a: torch.Tensor) -> torch.Tensor:
    """Sum of the singular values of a 2-D tensor (0 for an empty one)."""
    if a.numel() == 0:
        return torch.zeros((), dtype=a.dtype, device=a.device)
    return torch.linalg.svdvals(a).sum()


def ncti_terms(features: Any, labels: Any, *, pca_dim: int = PCA_DIM,
               top_variances: int = TOP_VARIANCES, device: Any = None) -> NctiTerms:
    """Compute the raw NCTI terms of one model.

    Args:
        features: (N, d) numpy array or torch tensor (computed on its device, float64), or
            its SharedFeatures (shared with other scores of the same model).
        labels: (N,) any labels; at least 2 classes.
        pca_dim: PCA dimension (64 in the paper and code); reduced to min(pca_dim, d, N - 1).
        top_variances: d* = how many top explained variances form s (32).
        device: force a torch device (default: the input's).
    """
    if pca_dim < 1 or top_variances < 1:
        raise InputError("pca_dim and top_variances must be positive integers")
    stats = shared_features(features, labels, device=device)
    data = stats.data
    n, d = data.x.shape
    if n < 3:
        raise InputError(f"has {n} samples; NCTI needs at least 3", array="features")
    k = min(pca_dim, d, n - 1)
    principal = stats.principal(k)
    z, variances = principal.scores, principal.variances
    informative = variances > NULL_VARIANCE * variances[0]
    if not bool(informative.any()):
        raise InputError("is constant (zero variance); NCTI is undefined", array="features")
    s = to_float(variances[:top_variances].sum())
    raw_alpha = math.exp(-s)
    svd_path = raw_alpha <= ALPHA_FLOOR
    if svd_path:  # the svd solver drops directions without within-class spread, as these
        z, k = z[:, informative], int(informative.sum())
    # the eigen path keeps all k, null ones too, as the reference: shrinkage gives them
    # alpha tr/k and counts them in tr/k (golden values: tests/test_golden_values.py)
    fit = fit_svd(z, data) if svd_path else fit_eigen(z, data, raw_alpha)
    posterior = torch.softmax(fit.logits, dim=1)
    ncc = true_class_probability(fit.logits, data.codes).mean()
    order = torch.argsort(data.codes, stable=True)
    blocks = torch.split(posterior[order], data.labels.counts.tolist())
    vc = torch.stack([nuclear_norm(b) for b in blocks]).sum().log()
    centred = fit.projection - fit.projection.mean(0)
    return NctiTerms(
        seli=to_float(nuclear_norm(centred)), ncc=to_float(ncc), vc=to_float(vc),
        seli_within=to_float(nuclear_norm(fit.within_projection)),
        alpha=max(raw_alpha, ALPHA_FLOOR), svd_path=svd_path, pca_dim=k,
        lda_dim=int(fit.projection.shape[1]), class_counts=data.labels.counts)


def ncti_components(features: Any, labels: Any, **options: Any) -> Components:
    """Raw NCTI terms as a JSON-ready dict (``svd_path`` 1.0 = no shrinkage, 0.0 = eigen)."""
    return ncti_terms(features, labels, **options).as_components()


def reference_ncti_terms(features: np.ndarray, labels: np.ndarray, *, pca_dim: int = PCA_DIM,
                         top_variances: int = TOP_VARIANCES) -> dict[str, float]:
    """The raw NCTI terms written as the official ``NCTI_Score`` computes them (Wang et al.,
    ICCV 2023; docs/methods-core.md), for reading and for testing :func:`ncti_terms`; plain
    numpy and scipy, no validation, full-rank features assumed.

    1. Z (N, k) = PCA scores on k = min(64, d, N − 1) components, λ their variances
       (denominator N − 1); s = Σ_{j ≤ 32} λ_j, α = e^{−s}.
    2. α ≤ 1e-10 (svd path): Σ = W/(N − C) (W the within-class scatter of Z), logits
       l_ic = z_iᵀΣ⁻¹μ_c − ½ μ_cᵀΣ⁻¹μ_c + log π_c, projection L = (Z − z̄) Σ^{-1/2} V_r with
       V_r the top r = min(C − 1, k) right singular vectors of the rows √n_c Σ^{-1/2}(μ_c − z̄).
       Otherwise (eigen path): Σ_α = shr_α(W/N), T_α = shr_α(T/N) with
       shr_α(S) = (1 − α)S + α(tr S/k)I; (T_α − Σ_α)e = ρΣ_α e with EᵀΣ_αE = I, ρ descending;
       L = Z E_r; logits as above with Σ_α.
    3. P = softmax(l); seli = ‖L − 𝟙 mean(L)‖_*, ncc = (1/N) Σ_i P_{i,y_i},
       vc = log Σ_c ‖P_c‖_* (P_c: the rows of class c).
    """
    from scipy.linalg import eigh

    x = np.asarray(features, dtype=np.float64)
    classes, y = np.unique(labels, return_inverse=True)
    n, d = x.shape
    c, k = len(classes), min(pca_dim, d, n - 1)
    centred = x - x.mean(axis=0)
    variances, axes = np.linalg.eigh(centred.T @ centred / (n - 1))
    z, variances = centred @ axes[:, ::-1][:, :k], variances[::-1][:k]
    alpha = np.exp(-variances[:top_variances].sum())
    means = np.stack([z[y == m].mean(axis=0) for m in range(c)])
    within = (z - means[y]).T @ (z - means[y])
    r = min(c - 1, k)
    if alpha <= ALPHA_FLOOR:
        sigma = within / (n - c)
        values, vectors = np.linalg.eigh(sigma)
        whiten = vectors / np.sqrt(values)                      # Σ^{-1/2} up to a rotation
        weighted = np.sqrt(np.bincount(y))[:, None] * (means - z.mean(axis=0)) @ whiten
        projection = (z - z.mean(axis=0)) @ whiten @ np.linalg.svd(weighted)[2][:r].T
    else:
        def shrunk(s: np.ndarray) -> np.ndarray:
            return (1 - alpha) * s + alpha * np.trace(s) / k * np.eye(k)

        sigma = shrunk(within / n)
        zc = z - z.mean(axis=0)
        _, vectors = eigh(shrunk(zc.T @ zc / n) - sigma, sigma)
        projection = z @ vectors[:, ::-1][:, :r]
    precision_means = np.linalg.solve(sigma, means.T)
    logits = (z @ precision_means - 0.5 * np.sum(means.T * precision_means, axis=0)
              + np.log(np.bincount(y) / n))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    nuclear = [np.linalg.svd(p[y == m], compute_uv=False).sum() for m in range(c)]
    return {"seli": float(np.linalg.svd(projection - projection.mean(axis=0),
                                        compute_uv=False).sum()),
            "ncc": float(p[np.arange(n), y].mean()), "vc": float(np.log(np.sum(nuclear)))}


def _weights(w_seli: float, w_ncc: float, w_vc: float) -> tuple[float, float, float]:
    weights = (float(w_seli), float(w_ncc), float(w_vc))
    if not all(math.isfinite(w) for w in weights):
        raise InputError(f"NCTI term weights must be finite, got {weights}")
    return weights


def min_max(values: Mapping[str, float]) -> dict[str, float]:
    """(a - min) / (max - min) over the pool; 0.5 for all when the spread is zero."""
    lo, hi = min(values.values()), max(values.values())
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1e-300):
        return {m: 0.5 for m in values}
    return {m: (v - lo) / (hi - lo) for m, v in values.items()}


def combine_pool(raw: Mapping[str, Components], *, w_seli: float = 1.0, w_ncc: float = 1.0,
                 w_vc: float = 1.0) -> tuple[dict[str, float], dict[str, Components]]:
    """Pool NCTI: w_seli n(seli) + w_ncc n(ncc) - w_vc n(vc), n = min-max over the pool.

    Returns per-model scores and per-model components (raw terms plus ``*_norm``).
    """
    ws, wn, wv = _weights(w_seli, w_ncc, w_vc)
    norm = {t: min_max({m: c[t] for m, c in raw.items()}) for t in TERMS}
    scores = {m: ws * norm["seli"][m] + wn * norm["ncc"][m] - wv * norm["vc"][m] for m in raw}
    comps = {m: {**c, **{f"{t}_norm": norm[t][m] for t in TERMS}} for m, c in raw.items()}
    return scores, comps


def vc_bounds(class_counts: np.ndarray) -> tuple[float, float, float]:
    """(v_min, v_nc, v_max): the range of vc = log sum_c ||P_c||_* and its collapse value.

    A row p of P_c has ||p||_2^2 >= 1/C (its entries sum to 1), so
    ||P_c||_* >= ||P_c||_F >= sqrt(n_c / C), with equality when every row is uniform
    (1/C, ..., 1/C): v_min = log sum_c sqrt(n_c / C). ||P_c||_* <= sqrt(rank) ||P_c||_F
    <= sqrt(min(n_c, C) n_c), reached by one-hot rows spread evenly over min(n_c, C)
    classes: v_max = log sum_c sqrt(n_c min(n_c, C)). Perfect collapse (every row of
    class c the same one-hot vector, a rank-one block) gives v_nc = log sum_c sqrt(n_c).
    """
    counts = class_counts.astype(np.float64)
    c = counts.shape[0]
    return (math.log(np.sqrt(counts / c).sum()), math.log(np.sqrt(counts).sum()),
            math.log(np.sqrt(counts * np.minimum(counts, c)).sum()))


def independent_terms(terms: NctiTerms) -> dict[str, float]:
    """Each term mapped to [0, 1] by bounds from the model's own data only.

    * seli: 1 - seli_within / seli. Since L^T L = L_w^T L_w + (between scatter), the
      singular values of L dominate those of L_w, so this is in [0, 1]: 0 when all class
      means coincide, -> 1 as the within-class spread collapses.
    * ncc: already a mean probability in [0, 1]; 1 at perfect separation.
    * vc: |vc - v_nc| / max(v_nc - v_min, v_max - v_nc), the distance from perfect
      collapse within the true range of :func:`vc_bounds` (so in [0, 1] without
      clipping): 0 = every class block is one repeated one-hot row; 1 at either end,
      uniform rows (no information: rank one, but not collapsed onto a class) or one-hot
      rows spread over the classes (maximal variability). Like ncc, vc sees the features
      only through the posteriors, so it depends on their scale only where those do: on
      the eigen path, whose shrinkage alpha = exp(-sum of the top-32 variances) is not
      scale-free (features scaled by 1e-30 get alpha ~ 1 and near-uniform posteriors).
    """
    v_min, v_nc, v_max = vc_bounds(terms.class_counts)
    reach = max(v_nc - v_min, v_max - v_nc)
    vc = 0.0 if reach <= 0 else min(abs(terms.vc - v_nc) / reach, 1.0)
    seli = 0.0 if terms.seli <= 0 else min(max(1.0 - terms.seli_within / terms.seli, 0.0), 1.0)
    return {"seli": seli, "ncc": terms.ncc, "vc": vc}


def ncti_score(features: Any, labels: Any, *, w_seli: float = 1.0, w_ncc: float = 1.0,
               w_vc: float = 1.0, **options: Any) -> float:
    """Pool-independent NCTI of one model, in [-w_vc, w_seli + w_ncc] (higher is better).

    w_seli s_seli + w_ncc s_ncc - w_vc s_vc with the terms of :func:`independent_terms`;
    perfect collapse approaches the maximum w_seli + w_ncc.
    """
    ws, wn, wv = _weights(w_seli, w_ncc, w_vc)
    t = independent_terms(ncti_terms(features, labels, **options))
    return ws * t["seli"] + wn * t["ncc"] - wv * t["vc"]


register(Method(
    name="ncti",
    score=ncti_score,
    summary="Neural-collapse transferability index (Wang et al., ICCV 2023)",
    components=ncti_components,
    combine=combine_pool,
    combine_options=("w_seli", "w_ncc", "w_vc"),
    recommendation="the highest mean weighted Kendall tau of the methods in the NCTI "
                   "paper's published tables over 11 target datasets (0.726 for supervised, "
                   "0.718 for self-supervised ImageNet models; SFDA next with 0.663 and "
                   "0.708; see benchmarks/README.md)",
))
