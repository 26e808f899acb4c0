"""``measure``: every neural-collapse measure of one feature matrix; ``layer_profile``: of
every layer of a feature file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nctk.collapse import metrics
from nctk.collapse.ncc import LinearClassifier, NCCAgreement
from nctk.collapse.rank import numerical_rank_from_samples, numerical_rank_from_stats
from nctk.errors import InputError
from nctk.io import FeatureFile
from nctk.stats import ClassStats, ClassSummary
from nctk.validation import check_matrix, encode_labels

#: Penultimate features appear under this name in a layer profile.
PENULTIMATE = "penultimate"

#: Within-class measures read a variance; a class with one sample has variance 0, which
#: would read as perfect collapse, so every measure asks for at least this many per class.
MIN_PER_CLASS = 2


def from_stats(stats: ClassSummary | ClassStats, classifier: Any = None, *,
               agreement: NCCAgreement | None = None) -> dict[str, float]:
    """Every measure of :func:`measure`, from class statistics (and a second pass).

    The same keys as :func:`measure` (with a classifier also ``nc3_self_duality``,
    ``nc3_papyan``, ``nc4_agreement``, ``classifier_accuracy``), in its order. Most need
    only the class statistics; the others are NaN unless their input is given:

    * ``numerical_rank``: a :class:`ClassStats` kept with ``per_class_cov=True`` (for
      chunks of classes, :func:`~nctk.collapse.numerical_rank_from_stats`);
    * ``ncc_accuracy`` (and with a classifier ``nc4_agreement``, ``classifier_accuracy``):
      ``agreement``, the :class:`NCCAgreement` of a second pass over the samples against
      these statistics' class means.
    """
    state = stats if isinstance(stats, ClassStats) else None
    final = stats.compute() if state is not None else stats
    _check_counts(final)
    clf = _classifier(classifier, final)
    out = {
        "nc1": metrics.nc1(final),
        "nc1_trace_ratio": metrics.nc1_trace_ratio(final),
        "cdnv": metrics.cdnv(final),
        "numerical_rank": (numerical_rank_from_stats(state)
                           if state is not None and state.per_class_cov else np.nan),
        "etf_error": metrics.etf_error(final),
        "equinorm": metrics.equinorm(final),
        "equiangularity": metrics.equiangularity(final),
        "equiangularity_shifted": metrics.equiangularity_shifted(final),
        "ncc_accuracy": np.nan,
    }
    if clf is not None:
        out["nc3_self_duality"] = metrics.self_duality_error(final, clf.weight)
        out["nc3_papyan"] = metrics.self_duality_papyan(final, clf.weight)
        out.update(nc4_agreement=np.nan, classifier_accuracy=np.nan)
    if agreement is not None:
        out.update(agreement.compute())
    return profile_row(out)


def _check_counts(final: ClassSummary) -> None:
    small = np.flatnonzero(final.counts < MIN_PER_CLASS)
    if small.size:
        raise InputError(f"class code {int(small[0])} has {int(final.counts[small[0]])} "
                         f"sample(s); the within-class measures need at least {MIN_PER_CLASS}",
                         array="labels")
    if final.num_classes < 2:
        raise InputError("has 1 class; at least 2 are needed", array="labels")


def measure(features: Any, labels: Any, *, classifier: Any = None) -> dict[str, float]:
    """All neural-collapse measures of features (N, d) with labels (N,).

    Args:
        features: (N, d) float numpy array or torch tensor (CPU or CUDA); float32 and
            float64 give the same result to ~1e-7 (everything accumulates in float64).
        labels: (N,) any hashable labels (ints with gaps, strings); at least 2 classes
            and 2 samples per class.
        classifier: optional linear head, W (K, d) or (W, b), row k for the k-th class
            in sorted label order (``numpy.unique(labels)``).

    Returns:
        Plain floats: ``nc1, nc1_trace_ratio, cdnv, numerical_rank, etf_error, equinorm,
        equiangularity, equiangularity_shifted, ncc_accuracy``; with a classifier also
        ``nc3_self_duality, nc3_papyan, nc4_agreement, classifier_accuracy``. See
        :mod:`nctk.collapse.metrics`, :mod:`nctk.collapse.rank` and
        :mod:`nctk.collapse.ncc` for the formulas.
    """
    return _measure(features, labels, classifier=classifier, name="features")


def layer_profile(feature_file: FeatureFile) -> dict[str, dict[str, float]]:
    """``measure`` of every ``layer:<name>`` array in file order, then of the penultimate
    ``features`` under the name ``"penultimate"`` (the last, deepest, entry)."""
    where = feature_file.path or feature_file.name
    if PENULTIMATE in feature_file.layers:
        raise InputError(f"the layer name '{PENULTIMATE}' is reserved for the 'features' "
                         "array", file=where, array=f"layer:{PENULTIMATE}")
    arrays = {f"layer:{name}": (name, x) for name, x in feature_file.layers.items()}
    arrays["features"] = (PENULTIMATE, feature_file.features)
    profile = {}
    for array, (name, x) in arrays.items():
        try:
            profile[name] = _measure(x, feature_file.labels, classifier=None, name=array)
        except InputError as err:
            raise err.located(file=where) from None
    return profile


def _measure(features: Any, labels: Any, *, classifier: Any, name: str) -> dict[str, float]:
    x = check_matrix(features, name)
    encoded = encode_labels(labels, x.shape[0], "labels", min_per_class=MIN_PER_CLASS)
    x64 = x.astype(np.float64)
    final = ClassStats(encoded.num_classes, x.shape[1]).update(x64, encoded.codes).compute()
    clf = _classifier(classifier, final)
    out = from_stats(final, clf,
                     agreement=NCCAgreement(final.means, clf).update(x64, encoded.codes))
    out["numerical_rank"] = numerical_rank_from_samples(x64, encoded.codes, encoded.num_classes)
    return out


def profile_row(values: Mapping[str, Any]) -> dict[str, float]:
    """The measures of one layer as plain floats, in the order of ``measure``'s output."""
    return {key: float(values[key]) for key in _ORDER if key in values}


def _classifier(classifier: Any, final: ClassSummary) -> LinearClassifier | None:
    if classifier is None:
        return None
    return LinearClassifier.coerce(classifier, final.num_classes, final.means.shape[1])


_ORDER = ("nc1", "nc1_trace_ratio", "cdnv", "numerical_rank", "etf_error", "equinorm",
          "equiangularity", "equiangularity_shifted", "ncc_accuracy", "nc3_self_duality",
          "nc3_papyan", "nc4_agreement", "classifier_accuracy")
