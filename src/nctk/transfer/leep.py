"""LEEP, NCE and NLEEP: scores built on the empirical joint of target and source labels.

All three share one computation (:func:`expected_label_likelihood`): given a soft
assignment Θ (N, K) of every target sample to K "source" classes (softmax of the source
head for LEEP, a one-hot argmax for NCE, Gaussian-mixture responsibilities for NLEEP),

    Ĵ(y, z)   = (1/N) Σ_{i: yᵢ = y} Θᵢ(z)                 empirical joint, (C, K)
    P̂(y | z)  = Ĵ(y, z) / Σ_{y'} Ĵ(y', z)                 empirical conditional
    ℓᵢ        = Σ_z Θᵢ(z) P̂(yᵢ | z)                       expected likelihood of yᵢ

- LEEP (Nguyen et al., ICML 2020) = (1/N) Σᵢ log ℓᵢ  (paper and tllib);
  ``log=False`` gives (1/N) Σᵢ ℓᵢ, the form of the NCTI/SFDA repositories that produced
  their published tables (not rank-equivalent to the paper's).
- NCE (Tran et al., ICCV 2019) = −H(Y | Z) with Z = argmax of the source logits; with a
  one-hot Θ, ℓᵢ = P̂(yᵢ | zᵢ), so NCE is exactly LEEP on the hard assignment.
- NLEEP (Li et al., CVPR 2021): Θ = responsibilities of a Gaussian mixture fitted to the
  PCA-reduced features (PCA keeping > 80 % of the energy), then LEEP.

See ``docs/methods-baselines.md`` for the reference behaviour and our decisions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import sparse, special

from nctk.errors import InputError
from nctk.sampling import proportional
from nctk.transfer.registry import Method, register
from nctk.validation import check_matrix, encode_labels

#: NLEEP keeps the smallest number of principal components whose cumulative explained
#: variance ratio is strictly greater than this (sklearn's float ``n_components`` rule).
NLEEP_PCA_ENERGY = 0.8
#: Default cap on the samples NLEEP fits its mixture to (a seeded stratified subsample).
NLEEP_MAX_SAMPLES = 5000


def expected_label_likelihood(theta: np.ndarray, codes: np.ndarray, num_classes: int
                              ) -> np.ndarray:
    """ℓᵢ = Σ_z Θᵢ(z) P̂(yᵢ | z) for every sample (the shared core of LEEP, NCE, NLEEP).

    Args:
        theta: (N, K) non-negative rows summing to 1 (float64).
        codes: (N,) target class codes in 0..C−1.
        num_classes: C.

    Returns:
        (N,) float64. A source class with zero total mass has Θᵢ(z) = 0 for every i, so it
        contributes nothing; its undefined conditional is set to 0 (the reference yields NaN).
    """
    n = theta.shape[0]
    onehot = sparse.csr_array((np.ones(n), (codes, np.arange(n))), shape=(num_classes, n))
    joint = (onehot @ theta) / n                                  # Ĵ, (C, K)
    marginal = joint.sum(axis=0, keepdims=True)                   # P̂(z), (1, K)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    return (theta @ conditional.T)[np.arange(n), codes]


def pca_keeping_energy(x: np.ndarray, energy: float = NLEEP_PCA_ENERGY) -> np.ndarray:
    """Exact PCA projection (N, k) onto the fewest components explaining > ``energy``.

    k is the smallest number whose cumulative explained-variance ratio is strictly greater
    than ``energy`` (scikit-learn's rule for a float ``n_components``); centred, not whitened,
    full SVD (deterministic).
    """
    from sklearn.decomposition import PCA  # here: scikit-learn takes ~0.7 s to import

    return PCA(n_components=energy, svd_solver="full").fit_transform(x)


def _source_probabilities(logits: Any) -> np.ndarray:
    """Validated (N, Cs) logits -> softmax probabilities in float64 (max-subtracted)."""
    z = check_matrix(logits, "source_logits").astype(np.float64)
    if z.shape[1] < 2:
        raise InputError(f"has {z.shape[1]} column; a source head needs at least 2 classes",
                         array="source_logits")
    return special.softmax(z, axis=1)


def _leep_from_assignment(theta: np.ndarray, codes: np.ndarray, num_classes: int,
                          log: bool) -> float:
    likelihood = expected_label_likelihood(theta, codes, num_classes)
    return float(np.mean(np.log(likelihood)) if log else np.mean(likelihood))


def leep(source_logits: Any, labels: Any, *, log: bool = True) -> float:
    """LEEP (Nguyen et al., ICML 2020) from the source head's logits.

    Args:
        source_logits: (N, Cs) logits of the source classifier on the target samples.
        labels: (N,) target labels (any hashable values).
        log: True = the paper / tllib score (1/N) Σᵢ log ℓᵢ ≤ 0; False = the NCTI/SFDA
            repository form (1/N) Σᵢ ℓᵢ ∈ (0, 1].

    Returns:
        The score; higher = more transferable.
    """
    theta = _source_probabilities(source_logits)
    y = encode_labels(labels, theta.shape[0])
    return _leep_from_assignment(theta, y.codes, y.num_classes, log)


def nce(source_logits: Any, labels: Any) -> float:
    """Negative conditional entropy −H(Y | Z) (Tran et al., ICCV 2019), Z = argmax of the logits.

    NCE = Σ_{y,z} Ĵ(y, z) log P̂(y | z) ≤ 0, with Ĵ the empirical joint of the hard source
    labels Z and the target labels Y (tllib ``negative_conditional_entropy``); 0 when Z
    determines Y.

    Args:
        source_logits: (N, Cs) logits (or probabilities) of the source classifier.
        labels: (N,) target labels (any hashable values).
    """
    z = check_matrix(source_logits, "source_logits")
    if z.shape[1] < 2:
        raise InputError(f"has {z.shape[1]} column; a source head needs at least 2 classes",
                         array="source_logits")
    y = encode_labels(labels, z.shape[0])
    hard = np.zeros(z.shape, dtype=np.float64)
    hard[np.arange(z.shape[0]), np.argmax(z, axis=1)] = 1.0
    return _leep_from_assignment(hard, y.codes, y.num_classes, log=True)


def unit_scale(reduced: np.ndarray) -> np.ndarray:
    """``reduced`` times the power of two that brings its mean column variance into [1, 4).

    Exact (a power of two changes no digit) and without effect on PCA, k-means or the
    mixture's likelihood ratios, except for ``GaussianMixture``'s absolute covariance
    floor ``reg_covar = 1e-6``: after this it is relative to the data, so NLEEP does not
    depend on the feature scale (features scaled by 1e30 no longer make every component
    covariance singular, nor 1e-30 drown them in the floor).
    """
    variance = float(reduced.var(axis=0).mean())
    if not variance > 0:
        return reduced
    return np.ldexp(reduced, -((math.frexp(variance)[1] - 1) // 2))


def nleep(features: Any, labels: Any, *, ratio: float = 5, seed: int = 0,
          log: bool = True, max_samples: int | None = NLEEP_MAX_SAMPLES) -> float:
    """NLEEP (Li et al., CVPR 2021): LEEP on Gaussian-mixture responsibilities.

    Steps: exact PCA (full SVD) keeping the smallest k components whose cumulative explained
    variance ratio is > 0.8; a full-covariance ``GaussianMixture`` with ``int(ratio · C)``
    components (k-means init, ``random_state=seed``) on the reduced features, brought to
    unit scale by a power of two (:func:`unit_scale`); LEEP with Θ = its responsibilities.

    Args:
        features: (N, d) target features.
        labels: (N,) target labels (any hashable values).
        ratio: mixture components per target class (reference: 5; 1 for Food and Pets).
        seed: random state of the mixture's k-means initialisation and of the subsample.
        log: True = the paper's score (mean log-likelihood); False = the NCTI/SFDA
            repository form (mean likelihood), used for their published tables.
        max_samples: when N is larger, score a stratified subsample of this many samples
            drawn with ``seed``, as PARC does (the mixture's EM costs O(N ratio C k^2) per
            iteration: 200,000 samples do not finish in minutes). ``None`` = all samples.
    """
    x = check_matrix(features, "features")
    y = encode_labels(labels, x.shape[0])
    codes = y.codes
    if max_samples is not None:
        if max_samples < 3:
            raise InputError(f"max_samples must be at least 3, got {max_samples}")
        if x.shape[0] > max_samples:
            rows = proportional(codes, max_samples, seed)
            x, codes = x[rows], codes[rows]
    x = x.astype(np.float64)   # after the subsample: never a float64 copy of all N rows
    n_components = int(ratio * y.num_classes)
    if n_components < 1:
        raise InputError(f"ratio {ratio} gives {n_components} mixture components; "
                         "it must give at least 1")
    if x.shape[0] < n_components:
        raise InputError(f"has {x.shape[0]} samples, fewer than the {n_components} mixture "
                         f"components NLEEP fits (ratio {ratio} x {y.num_classes} classes)",
                         array="features")
    if not np.any(x.var(axis=0) > 0):
        raise InputError("is constant; NLEEP's PCA needs some variance", array="features")
    from sklearn.mixture import GaussianMixture  # here: scikit-learn takes ~0.7 s to import

    reduced = unit_scale(pca_keeping_energy(x))
    try:
        mixture = GaussianMixture(n_components=n_components, random_state=seed).fit(reduced)
    except ValueError as exc:  # singular component covariances: duplicated samples
        raise InputError(f"NLEEP's Gaussian mixture cannot be fitted ({exc})",
                         array="features") from None
    theta = mixture.predict_proba(reduced)
    return _leep_from_assignment(theta, codes, y.num_classes, log)


register(Method(
    name="leep", score=leep, input="source_logits",
    summary="LEEP: log expected empirical prediction from the source head (Nguyen et al. 2020)",
    upper_bound=lambda num_classes, log=True, **_: 0.0 if log else 1.0))
register(Method(
    name="nce", score=nce, input="source_logits",
    summary="NCE: negative conditional entropy of target given source labels (Tran et al. 2019)",
    upper_bound=lambda num_classes, **_: 0.0))
register(Method(
    name="nleep", score=nleep,
    summary="NLEEP: LEEP on Gaussian-mixture responsibilities of the features (Li et al. 2021)",
    upper_bound=lambda num_classes, log=True, **_: 0.0 if log else 1.0))


# ---------------------------------------------------------------- the formulas, plainly


def reference_leep(source_logits: np.ndarray, labels: np.ndarray, *, log: bool = True
                   ) -> float:
    """LEEP written as its formula (Nguyen et al., ICML 2020, Eq. 1-2), for reading and
    for testing :func:`leep`; plain numpy, no validation.

    θ (N, K) = softmax(source logits); joint P̂(y, z) = (1/N) Σ_{i: yᵢ = y} θᵢ(z) (C, K);
    conditional P̂(y | z) = P̂(y, z) / Σ_y' P̂(y', z);
    LEEP = (1/N) Σᵢ log Σ_z θᵢ(z) P̂(yᵢ | z)   (``log=False``: without the log).
    """
    logits = np.asarray(source_logits, dtype=np.float64)
    theta = np.exp(logits - logits.max(axis=1, keepdims=True))
    theta /= theta.sum(axis=1, keepdims=True)
    return _reference_leep_of(theta, labels, log)


def _reference_leep_of(theta: np.ndarray, labels: np.ndarray, log: bool) -> float:
    classes, y = np.unique(labels, return_inverse=True)
    n = len(y)
    joint = np.zeros((len(classes), theta.shape[1]))
    for i in range(n):
        joint[y[i]] += theta[i] / n
    marginal = joint.sum(axis=0)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    likelihood = np.array([theta[i] @ conditional[y[i]] for i in range(n)])
    return float(np.mean(np.log(likelihood)) if log else np.mean(likelihood))


def reference_nce(source_logits: np.ndarray, labels: np.ndarray) -> float:
    """NCE written as its formula (Tran et al., ICCV 2019), for reading and for testing
    :func:`nce`: with z = argmax of the source logits and the empirical joint P̂(y, z),

    NCE = −H(Y | Z) = Σ_{y,z} P̂(y, z) log( P̂(y, z) / P̂(z) ).
    """
    z = np.argmax(np.asarray(source_logits), axis=1)
    _, y = np.unique(labels, return_inverse=True)
    n = len(y)
    total = 0.0
    for yc in np.unique(y):
        for zc in np.unique(z):
            joint = np.sum((y == yc) & (z == zc)) / n
            if joint > 0:
                total += joint * np.log(joint / (np.sum(z == zc) / n))
    return float(total)


def reference_nleep(features: np.ndarray, labels: np.ndarray, *, ratio: float = 5,
                    seed: int = 0, log: bool = True) -> float:
    """NLEEP written as its steps (Li et al., CVPR 2021), for reading and for testing
    :func:`nleep` (on all samples):

    1. PCA by SVD of the centred features, keeping the fewest k components whose
       cumulative explained-variance ratio exceeds 0.8; scaled by the power of two that
       brings the mean column variance into [1, 4) (:func:`unit_scale`);
    2. θ (N, ratio·C) = responsibilities of a full-covariance Gaussian mixture fitted to
       them (scikit-learn, k-means initialisation with ``seed``);
    3. NLEEP = LEEP with θ in place of the softmax of a source head.
    """
    from sklearn.mixture import GaussianMixture

    x = np.asarray(features, dtype=np.float64)
    centred = x - x.mean(axis=0)
    _, singular, rows = np.linalg.svd(centred, full_matrices=False)
    energy = np.cumsum(singular**2) / np.sum(singular**2)
    k = int(np.searchsorted(energy, NLEEP_PCA_ENERGY, side="right")) + 1
    reduced = unit_scale(centred @ rows[:k].T)
    mixture = GaussianMixture(n_components=int(ratio * len(np.unique(labels))),
                              random_state=seed).fit(reduced)
    return _reference_leep_of(mixture.predict_proba(reduced), labels, log)
