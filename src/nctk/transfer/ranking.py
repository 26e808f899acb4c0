"""Score a pool of models with a registered method and rank them."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from nctk.errors import InputError
from nctk.io import FeatureFile, check_pool_labels
from nctk.transfer.registry import Components, Method, get_method


@dataclass
class MethodResult:
    """Scores of one method over a pool (the ``methods.<name>`` object of the JSON contract).

    Attributes:
        method: registry name.
        scores: model -> score, higher = predicted more transferable.
        ranking: model names, best first (NaN scores last).
        seconds: wall-clock time to score the whole pool.
        components: model -> named terms (NCTI: raw and normalised ``seli``, ``ncc``, ``vc``).
    """

    method: str
    scores: dict[str, float]
    ranking: list[str]
    seconds: float
    components: dict[str, Components] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"scores": self.scores, "ranking": self.ranking, "seconds": self.seconds,
                "components": self.components}


def score(method: str, features: Any, labels: Any, **options: Any) -> float:
    """Score one model: ``nctk.score("logme", X, y)``; higher = more transferable.

    ``features`` is (N, d) (or the (N, Cs) source logits for LEEP/NCE), numpy or torch.
    Pool-relative methods (NCTI) return their pool-independent variant here.
    """
    return float(get_method(method).score(features, labels, **options))


def rank_order(scores: Mapping[str, float]) -> list[str]:
    """Model names by descending score; NaN last; ties keep the input order."""
    names = list(scores)
    return sorted(names, key=lambda m: (math.isnan(scores[m]), -scores[m]
                                        if not math.isnan(scores[m]) else 0.0))


def rank(pool: Mapping[str, Any], labels: Any, method: str | Method, **options: Any
         ) -> MethodResult:
    """Score every model of a pool on the same labelled samples and rank them.

    Args:
        pool: model name -> (N, d) features (or (N, Cs) source logits for methods whose
            ``input`` is ``source_logits``).
        labels: (N,) labels shared by all models (any hashable values).
        method: registry name or :class:`Method`.
        **options: method options (for NCTI also the term weights).
    """
    meth = get_method(method) if isinstance(method, str) else method
    if not pool:
        raise InputError("the pool is empty")
    start = time.perf_counter()
    terms = {name: _located(name, meth.input, partial(model_terms, meth), x, labels,
                            **options) for name, x in pool.items()}
    return combine_terms(meth, terms, time.perf_counter() - start, **options)


def model_terms(method: Method, x: Any, labels: Any, **options: Any) -> float | Components:
    """One model's share of :func:`rank`: its score, or for a pool-relative method its raw
    components (the options consumed by ``combine`` are left out here).

    ``rank`` is ``combine_terms`` over ``model_terms`` of every model, so the terms may be
    computed anywhere (another process, another machine) and combined later.
    """
    if method.pool_relative:
        own = {k: v for k, v in options.items() if k not in method.combine_options}
        return method.components(x, labels, **own)
    return float(method.score(x, labels, **options))


def combine_terms(method: Method, terms: Mapping[str, float | Components], seconds: float,
                  **options: Any) -> MethodResult:
    """The pool's result from every model's :func:`model_terms` (in pool order): NCTI's
    min-max normalisation over the pool, or the scores as they are."""
    start = time.perf_counter()
    components: dict[str, Components] = {}
    if method.pool_relative:
        combine_kw = {k: v for k, v in options.items() if k in method.combine_options}
        scores, components = method.combine(dict(terms), **combine_kw)
    else:
        scores = {name: float(value) for name, value in terms.items()}
    seconds += time.perf_counter() - start
    return MethodResult(method.name, scores, rank_order(scores), seconds, components)


def rank_pool(pool: Sequence[FeatureFile], method: str | Method, **options: Any) -> MethodResult:
    """:func:`rank` over loaded feature files (labels taken from the files, checked equal)."""
    meth = get_method(method) if isinstance(method, str) else method
    if not pool:
        raise InputError("the pool is empty")
    check_pool_labels(pool)
    arrays = {}
    for f in pool:
        x = f.features if meth.input == "features" else f.source_logits
        if x is None:
            raise InputError(f"missing; method '{meth.name}' needs the source model's logits",
                             file=f.path or f.name, array="source_logits")
        arrays[f.name] = x
    paths = {f.name: f.path or f.name for f in pool}
    try:
        return rank(arrays, pool[0].labels, meth, **options)
    except InputError as err:
        if err.file in paths:  # rank() names the model; name its file instead
            raise InputError(err.problem, file=paths[err.file], array=err.array) from None
        raise


def _located(model: str, array: str, func: Any, x: Any, labels: Any, **options: Any) -> Any:
    """Call ``func``; an InputError is re-raised naming the model and array it came from."""
    try:
        return func(x, labels, **options)
    except InputError as err:
        raise err.located(file=model, array=array) from None
