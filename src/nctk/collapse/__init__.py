"""Neural-collapse diagnostics: NC1 (and its surrogates), CDNV, numerical rank, NC2-NC4.

Accumulation (:mod:`nctk.stats`) is kept apart from measurement (this package)::

    nctk.collapse.measure(features, labels)          # arrays in, plain floats out
    nctk.collapse.layer_profile(feature_file)        # layer name -> measure()
    nctk.collapse.from_stats(class_stats)            # from streaming ClassStats

Formulas and normalisations: docs/collapse.md and :mod:`nctk.collapse.metrics`.
"""

from nctk.collapse.accuracy import (
    correlate,
    layer_nc1_vs_probe,
    nc1_vs_transfer,
    probe_accuracy,
)
from nctk.collapse.ncc import LinearClassifier, NCCAgreement
from nctk.collapse.profile import PENULTIMATE, from_stats, layer_profile, measure
from nctk.collapse.rank import numerical_rank_from_samples, numerical_rank_from_stats

__all__ = [
    "PENULTIMATE",
    "LinearClassifier",
    "NCCAgreement",
    "correlate",
    "from_stats",
    "layer_nc1_vs_probe",
    "layer_profile",
    "measure",
    "nc1_vs_transfer",
    "numerical_rank_from_samples",
    "numerical_rank_from_stats",
    "probe_accuracy",
]
