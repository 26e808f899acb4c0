"""NC1 against accuracy (Li et al. 2023, Sections 3.1-3.2, Figures 5-8).

- Per layer (Fig. 8): NC1 of a layer's features beside the accuracy of a linear probe
  trained on them (:func:`layer_nc1_vs_probe`).
- Over a pool of models (Figs. 5-6): penultimate NC1 against the models' transfer
  accuracy (:func:`nc1_vs_transfer`).

The correlations are those of :func:`nctk.evaluation.evaluate` taken between **-NC1** and
accuracy, so that, as for every transferability score, higher means predicted better
and a positive correlation is the paper's finding (smaller NC1, higher accuracy).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nctk.collapse.profile import PENULTIMATE, layer_profile, measure
from nctk.errors import InputError
from nctk.evaluation import evaluate
from nctk.io import FeatureFile
from nctk.validation import check_matrix, encode_labels

#: Linear-probe defaults: L2-regularised multinomial logistic regression (C = 1/lambda).
PROBE_C = 1.0
PROBE_MAX_ITER = 1000
PROBE_TEST_SIZE = 0.2
PROBE_SEED = 0


def probe_accuracy(features: Any, labels: Any, *, c: float = PROBE_C,
                   test_size: float = PROBE_TEST_SIZE, seed: int = PROBE_SEED,
                   max_iter: int = PROBE_MAX_ITER) -> float:
    """Held-out accuracy of a linear probe on frozen features (N, d).

    Features are standardised (``StandardScaler`` fitted on the training part), then an
    L2-regularised multinomial ``LogisticRegression(C=c)`` (lbfgs) is trained on a
    stratified ``1 - test_size`` split drawn with ``seed`` and scored on the rest.
    Every class needs at least 2 samples and the test part at least one per class.
    """
    x = check_matrix(features, "features")
    encoded = encode_labels(labels, x.shape[0], "labels", min_per_class=2)
    n_test = int(np.ceil(test_size * x.shape[0]))
    if n_test < encoded.num_classes or x.shape[0] - n_test < encoded.num_classes:
        raise InputError(f"{x.shape[0]} samples are too few for a stratified {test_size:g} "
                         f"held-out split over {encoded.num_classes} classes", array="labels")
    x_train, x_test, y_train, y_test = train_test_split(
        x, encoded.codes, test_size=test_size, random_state=seed, stratify=encoded.codes)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    return float(model.score(x_test, y_test))


def layer_nc1_vs_probe(feature_file: FeatureFile, *, profile: Mapping[str, Mapping] | None = None,
                       progress: bool = False, **probe_options: Any) -> dict[str, Any]:
    """Per layer, NC1 beside the linear-probe accuracy of that layer (Li et al. Fig. 8).

    Returns ``{"layers": {name: {"nc1", "probe_accuracy"}}, "correlation": evaluate(-NC1,
    probe accuracy)}`` with layers in :func:`layer_profile` order (penultimate last).
    ``profile`` reuses an already computed layer profile; ``progress`` shows a bar of the
    layers probed on stderr (on a terminal only).
    """
    from nctk.progress import progress_bar

    profile = profile if profile is not None else layer_profile(feature_file)
    where = feature_file.path or feature_file.name
    layers = {}
    for name in progress_bar(profile, enabled=progress, unit="layer", leave=False,
                             desc=f"probing {feature_file.name}"):
        x = feature_file.features if name == PENULTIMATE else feature_file.layers[name]
        try:
            accuracy = probe_accuracy(x, feature_file.labels, **probe_options)
        except InputError as err:
            array = "features" if name == PENULTIMATE else f"layer:{name}"
            raise err.located(file=where, array=array) from None
        layers[name] = {"nc1": profile[name]["nc1"], "probe_accuracy": accuracy}
    return {"layers": layers, "correlation": correlate(
        {k: v["nc1"] for k, v in layers.items()},
        {k: v["probe_accuracy"] for k, v in layers.items()})}


def nc1_vs_transfer(pool: Sequence[FeatureFile], truth: Mapping[str, float], *,
                    profiles: Mapping[str, Mapping[str, Mapping]] | None = None
                    ) -> dict[str, Any]:
    """Penultimate NC1 of each model against its transfer accuracy (Li et al. Figs. 5-6).

    Args:
        pool: feature files (one per model) of the same target data.
        truth: model name -> transfer accuracy (every model must be present).
        profiles: optional model -> :func:`layer_profile` already computed.

    Returns:
        ``{"models": {name: {"nc1", "accuracy"}}, "correlation": evaluate(-NC1, accuracy)}``.
    """
    if len(pool) < 3:
        raise InputError(f"{len(pool)} model(s) given; correlating NC1 with accuracy needs "
                         "at least 3")
    missing = [f.name for f in pool if f.name not in truth]
    if missing:
        raise InputError(f"the ground truth has no accuracy for model(s) {missing}")
    models = {}
    for ff in pool:
        if profiles is not None and ff.name in profiles:
            value = profiles[ff.name][PENULTIMATE]["nc1"]
        else:
            try:
                value = measure(ff.features, ff.labels)["nc1"]
            except InputError as err:
                raise err.located(file=ff.path or ff.name, array="features") from None
        models[ff.name] = {"nc1": value, "accuracy": float(truth[ff.name])}
    return {"models": models, "correlation": correlate(
        {k: v["nc1"] for k, v in models.items()},
        {k: v["accuracy"] for k, v in models.items()})}


def correlate(nc1: Mapping[str, float], accuracy: Mapping[str, float]) -> dict[str, float]:
    """Rank and linear correlations of -NC1 with accuracy (``nctk.evaluation.evaluate``):
    ``weighted_tau, kendall_tau, spearman, pearson, top1_relative``."""
    return evaluate({name: -value for name, value in nc1.items()}, accuracy)
