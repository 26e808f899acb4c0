"""Nearest-class-centre accuracy and NC4 agreement: a second pass over the samples.

The nearest-class-centre (NCC) rule predicts argmin_k ||x - mu_k||^2 (Euclidean,
uncentred means, ties to the lowest class index). NC4 (Papyan et al. 2020) is the
fraction of samples on which it agrees with a linear classifier argmax_k (w_k^T x + b_k),
weighted by samples as in rhubarbwu ``clf_ncc_agreement``. Both need the class means, so
they are a second streaming pass after :class:`nctk.stats.ClassStats`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nctk.arrays import to_numpy
from nctk.errors import InputError
from nctk.validation import check_matrix


@dataclass(frozen=True)
class LinearClassifier:
    """A linear classifier: ``weight`` (K, d), row k for class code k; ``bias`` (K,)."""

    weight: np.ndarray
    bias: np.ndarray

    @classmethod
    def coerce(cls, classifier: Any, num_classes: int, dim: int) -> LinearClassifier:
        """Accept W (K, d), a (W, b) pair or a LinearClassifier; check the shapes."""
        if isinstance(classifier, LinearClassifier):
            weight, bias = classifier.weight, classifier.bias
        elif isinstance(classifier, tuple | list) and len(classifier) == 2:
            weight, bias = classifier
        else:
            weight, bias = classifier, None
        weight = check_matrix(weight, "classifier").astype(np.float64)
        if weight.shape != (num_classes, dim):
            raise InputError(f"has shape {weight.shape}; expected (classes, dims) = "
                             f"({num_classes}, {dim})", array="classifier")
        if bias is None:
            bias = np.zeros(num_classes)
        bias = to_numpy(bias).astype(np.float64)
        if bias.shape != (num_classes,) or not np.isfinite(bias).all():
            raise InputError(f"bias must be {num_classes} finite numbers, got shape "
                             f"{bias.shape}", array="classifier")
        return cls(weight, bias)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(x @ self.weight.T + self.bias, axis=1)


class NCCAgreement:
    """Streaming NCC accuracy, and NC4 agreement when a classifier is given.

    Args:
        means: (K, d) class means (e.g. ``ClassStats.compute().means``).
        classifier: optional W (K, d), (W, b) or :class:`LinearClassifier`.
    """

    def __init__(self, means: Any, classifier: Any = None):
        self.means = check_matrix(means, "means").astype(np.float64)
        num_classes, dim = self.means.shape
        self.classifier = (None if classifier is None
                           else LinearClassifier.coerce(classifier, num_classes, dim))
        self._half_sq_norms = 0.5 * np.einsum("kd,kd->k", self.means, self.means)
        self.samples = 0
        self.ncc_correct = 0
        self.agree = 0
        self.classifier_correct = 0

    def update(self, features: Any, codes: Any) -> NCCAgreement:
        """Add a batch: ``features`` (B, d), ``codes`` (B,) ints in 0..K-1."""
        x = check_matrix(features, "features").astype(np.float64)
        if x.shape[1] != self.means.shape[1]:
            raise InputError(f"has {x.shape[1]} columns, the class means {self.means.shape[1]}",
                             array="features")
        y = to_numpy(codes)
        if y.shape != (x.shape[0],):
            raise InputError(f"has shape {y.shape}, expected ({x.shape[0]},)", array="labels")
        ncc = self.predict(x)
        self.samples += x.shape[0]
        self.ncc_correct += int(np.sum(ncc == y))
        if self.classifier is not None:
            linear = self.classifier.predict(x)
            self.agree += int(np.sum(ncc == linear))
            self.classifier_correct += int(np.sum(linear == y))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """NCC labels: argmin_k ||x - mu_k||^2 = argmax_k (x.mu_k - ||mu_k||^2 / 2)."""
        return np.argmax(x @ self.means.T - self._half_sq_norms, axis=1)

    def merge(self, other: NCCAgreement) -> NCCAgreement:
        """Add the counts of another shard (built from the same means and classifier)."""
        self.samples += other.samples
        self.ncc_correct += other.ncc_correct
        self.agree += other.agree
        self.classifier_correct += other.classifier_correct
        return self

    def compute(self) -> dict[str, float]:
        """``ncc_accuracy``, plus ``nc4_agreement`` and ``classifier_accuracy`` when a
        classifier was given (fractions of samples)."""
        if self.samples == 0:
            raise InputError("no samples were added", array="features")
        out = {"ncc_accuracy": self.ncc_correct / self.samples}
        if self.classifier is not None:
            out["nc4_agreement"] = self.agree / self.samples
            out["classifier_accuracy"] = self.classifier_correct / self.samples
        return out
