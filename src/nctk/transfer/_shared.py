"""One model's features shared by every score that runs on it, with everything the scores
derive from them computed once (a per-model cache over samples held in memory; the
streaming class statistics of the collapse measures are :mod:`nctk.stats`, see
docs/architecture.md for why there are two).

Several scores of the same model need the same quantities: the column mean and class
sums (NCTI, SFDA, LogME, H-scores), the principal subspace (NCTI, PARC), the exact
eigen-decomposition of the centred Gram (H-score, regularised H-score), the uncentred
Gram's (LogME). :class:`SharedFeatures` computes each on first use and keeps it, so
``nctk rank --method all`` forms every O(N d^2) product once per model however many
methods use it. Every score function of those modules accepts a ``SharedFeatures`` in
place of its feature array (with the same labels); its value does not depend on which
other scores ran first beyond rounding (~1e-15 relative; tested at 1e-7).

Which Gram: the (d, d) scatter T = X_c^T X_c when N >= d, else the (N, N) sample Gram
K = X_c X_c^T (same non-zero eigenvalues; the H-scores follow from either), so a
5 x 20,000 feature matrix never forms a 20,000 x 20,000 matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from nctk.transfer._gaussian import (
    F64,
    Labelled,
    centred_gram,
    class_sums,
    column_mean,
    prepare,
    row_blocks,
    sample_gram,
)
from nctk.transfer._subspace import Principal, from_eigenpairs, principal


@dataclass(frozen=True)
class Spectrum:
    """Eigen-decomposition of a symmetric PSD Gram matrix, eigenvalues descending.

    Attributes:
        values: (r,) float64 eigenvalues (clamped at 0).
        vectors: (size, r) float64 orthonormal eigenvectors.
        samples: True when the Gram is the (N, N) sample Gram, False for (d, d).
    """

    values: torch.Tensor
    vectors: torch.Tensor
    samples: bool

    def null(self, n: int, d: int) -> torch.Tensor:
        """(r,) bool: eigenvalues at rounding-noise level, <= max(N, d) eps lambda_max."""
        return self.values <= max(n, d) * torch.finfo(F64).eps * self.values[0]


def _spectrum(gram: torch.Tensor, samples: bool) -> Spectrum:
    values, vectors = torch.linalg.eigh(gram)
    return Spectrum(values.flip(0).clamp_min(0), vectors.flip(1), samples)


class SharedFeatures:
    """Validated features of one model with the quantities the scores derive from them,
    each formed on first use and kept (a cache, not a streaming accumulator).

    Build it with :func:`shared_features`. All tensors are float64 on the features' device.
    """

    def __init__(self, data: Labelled, labels: Any):
        self.data = data
        self.labels = labels
        self._principal: dict[int, Principal] = {}

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The features as a numpy array, for the scores written with numpy."""
        return np.asarray(self.data.x.detach().cpu().numpy(), dtype=dtype)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.data.x.shape)

    @property
    def samples_side(self) -> bool:
        """True when N < d: Gram matrices are formed on the (N, N) sample side."""
        n, d = self.data.x.shape
        return n < d

    @cached_property
    def mean(self) -> torch.Tensor:
        """(d,) column mean."""
        return column_mean(self.data.x)

    @cached_property
    def class_sums(self) -> torch.Tensor:
        """(C, d) per-class sums of the rows."""
        return class_sums(self.data.x, self.data.codes, self.data.num_classes)

    @property
    def class_means(self) -> torch.Tensor:
        """(C, d) class means mu_c."""
        return self.class_sums / self.data.counts[:, None]

    @cached_property
    def gram(self) -> torch.Tensor:
        """Exact centred Gram: T (d, d) when N >= d, else K (N, N)."""
        if self.samples_side:
            return sample_gram(self.data.x, self.mean)
        return centred_gram(self.data.x, self.mean)

    @cached_property
    def spectrum(self) -> Spectrum:
        """Eigen-decomposition of :attr:`gram` (the exact float64 one)."""
        return _spectrum(self.gram, self.samples_side)

    @cached_property
    def uncentred_spectrum(self) -> Spectrum:
        """Eigen-decomposition of f^T f (d, d) when N >= d, else of f f^T (N, N) (LogME)."""
        n, d = self.data.x.shape
        if self.samples_side:
            zero = torch.zeros(d, dtype=F64, device=self.data.x.device)
            return _spectrum(sample_gram(self.data.x, zero), True)
        return _spectrum(self.gram + n * torch.outer(self.mean, self.mean), False)

    @cached_property
    def fourth_moment(self) -> float:
        """sum_i ||x_i - mean||^4 (Ledoit-Wolf's variance of the sample covariance)."""
        if self.samples_side:
            return float(torch.diagonal(self.gram).square().sum())
        total = torch.zeros((), dtype=F64, device=self.data.x.device)
        for b in row_blocks(self.data.x.shape[0]):
            total += (self.data.x[b].to(F64) - self.mean).square().sum(1).square().sum()
        return float(total)

    def principal(self, k: int) -> Principal:
        """Top-k principal components (k <= min(N, d)).

        From the exact spectrum when another score already formed it or when k leaves
        nothing to refine (k = min(N, d)), else by the mixed-precision subspace of
        :mod:`nctk.transfer._subspace` (exact fallback).
        """
        if k not in self._principal:
            if "spectrum" in self.__dict__ or k >= min(self.data.x.shape):
                spec = self.spectrum
                self._principal[k] = from_eigenpairs(self.data.x, self.mean,
                                                     spec.values[:k], spec.vectors[:, :k],
                                                     spec.samples)
            else:
                self._principal[k] = principal(self.data.x, self.mean, k)
        return self._principal[k]


def shared_features(features: Any, labels: Any, *, device: Any = None,
                    min_per_class: int = 1) -> SharedFeatures:
    """The :class:`SharedFeatures` of ``features``: validated once, shared by the scores.

    ``features`` may already be a :class:`SharedFeatures` built for the same
    ``labels`` object; it is then returned as is (``device`` is ignored: the statistics
    live on the device they were built on).
    """
    if isinstance(features, SharedFeatures):
        if labels is not features.labels:
            raise ValueError("SharedFeatures were built for other labels")
        return features
    return SharedFeatures(prepare(features, labels, device=device,
                                  min_per_class=min_per_class), labels)
