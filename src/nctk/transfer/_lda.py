"""Linear discriminant analysis on PCA scores, as NCTI's official code fits it.

Two solvers, chosen by NCTI (as the official ``NCTI_Score``):

* ``svd`` (no shrinkage): shared covariance Sigma = W / (N - C) (the scikit-learn <= 1.9.0
  convention behind the published numbers), whitening by the eigen-decomposition of the
  within-class correlation matrix with directions of singular value <= 1e-4 dropped, then
  the top right singular vectors of the weighted whitened class means.
* ``eigen`` (shrinkage a): Sigma_a = shr_a(W / N), T_a = shr_a(T / N), generalized
  eigenproblem (T_a - Sigma_a) e = rho Sigma_a e with E^T Sigma_a E = I; projection Z E
  (not centred) and posteriors with Sigma_a^-1.

Written by hand (not ``sklearn.discriminant_analysis``) because scikit-learn 1.9.1 changed
the svd-path denominator to W / N, and because this runs on any torch device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nctk.errors import InputError
from nctk.transfer._gaussian import Labelled, class_means, gaussian_logits, shrink, solve_spd

#: scikit-learn's rank tolerance for the svd solver (``tol=1e-4``).
RANK_TOL = 1e-4
#: Within-class / total scatter below this is rounding noise: the classes are collapsed.
COLLAPSE_RATIO = 1e-24


@dataclass(frozen=True)
class LdaFit:
    """Resubstitution LDA on (N, k) scores.

    Attributes:
        projection: (N, r) discriminant coordinates, r = min(C - 1, k, rank).
        logits: (N, C) log-posteriors up to a per-row constant.
        within_projection: (N, r) the same projection of the within-class residuals
            z_i - mu_{y_i} (used by the pool-independent NCTI).
    """

    projection: torch.Tensor
    logits: torch.Tensor
    within_projection: torch.Tensor


def _collapsed() -> InputError:
    return InputError("has no within-class variation after PCA (every sample equals its "
                      "class mean), so the LDA covariance is singular; NCTI is undefined")


def _check_spread(z: torch.Tensor, resid: torch.Tensor) -> None:
    """Raise when the within-class scatter is numerically zero relative to the total."""
    if float(resid.square().sum()) <= COLLAPSE_RATIO * float((z - z.mean(0)).square().sum()):
        raise _collapsed()


def fit_svd(z: torch.Tensor, data: Labelled) -> LdaFit:
    """LDA without shrinkage, Sigma = W / (N - C) (scikit-learn <= 1.9.0 ``solver='svd'``)."""
    n, k = z.shape
    c = data.num_classes
    if n <= c:
        raise _collapsed()
    means = class_means(data, z)
    resid = z - means[data.codes]
    _check_spread(z, resid)
    std = resid.square().mean(0).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))
    scaled = resid / std
    evals, evecs = torch.linalg.eigh(scaled.T @ scaled / (n - c))
    keep = evals > RANK_TOL**2
    if not bool(keep.any()):
        raise _collapsed()
    whiten = (evecs[:, keep] / std[:, None]) / evals[keep].sqrt()
    centre = data.priors @ means
    weighted = ((n * data.priors / (c - 1)).sqrt()[:, None] * (means - centre)) @ whiten
    _, sing, right = torch.linalg.svd(weighted, full_matrices=False)
    rank = int((sing > RANK_TOL * sing[0]).sum()) if float(sing[0]) > 0 else 0
    scalings = whiten @ right[:rank].T
    projected_means = (means - centre) @ scalings
    projection = (z - centre) @ scalings
    logits = (projection @ projected_means.T - 0.5 * projected_means.square().sum(1)
              + data.priors.log())
    r = min(rank, c - 1, k)
    return LdaFit(projection[:, :r], logits, (resid @ scalings)[:, :r])


def fit_eigen(z: torch.Tensor, data: Labelled, alpha: float) -> LdaFit:
    """LDA with shrinkage ``alpha`` toward the scaled identity (``solver='eigen'``)."""
    n, k = z.shape
    means = class_means(data, z)
    resid = z - means[data.codes]
    _check_spread(z, resid)
    within = shrink(resid.T @ resid / n, alpha)
    centred = z - z.mean(0)
    between = shrink(centred.T @ centred / n, alpha) - within
    chol, info = torch.linalg.cholesky_ex(within)
    if int(info) != 0:
        raise _collapsed()
    half = torch.linalg.solve_triangular(chol, between, upper=False)
    sym = torch.linalg.solve_triangular(chol, half.T, upper=False)
    _, vecs = torch.linalg.eigh((sym + sym.T) / 2)
    scalings = torch.linalg.solve_triangular(chol.T, vecs.flip(1), upper=True)
    r = min(data.num_classes - 1, k)
    logits = gaussian_logits(z, means, solve_spd(within, means.T), data.priors)
    return LdaFit(z @ scalings[:, :r], logits, resid @ scalings[:, :r])
