"""Score a pool of models with a registered method and rank them."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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
        seconds: time spent in this method, summed over the models (per-model statistics
            shared with a method that ran before it on the same model are not counted
            again; with models scored in parallel the pool's wall-clock time is shorter).
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
    arrays = {name: {meth.input: x} for name, x in pool.items()}
    return rank_arrays(arrays, labels, [meth], {meth.name: options})[meth.name]


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


def rank_arrays(arrays: Mapping[str, Mapping[str, Any]], labels: Any,
                methods: Sequence[Method], options: Mapping[str, Mapping[str, Any]] | None = None,
                *, workers: int | None = None) -> dict[str, MethodResult]:
    """Score every model with several methods, each model's statistics computed once.

    Models are scored ``workers`` at a time, each with single-threaded kernels (torch's
    and the BLAS's thread counts are set to 1 for the duration of the call, process-wide,
    and restored afterwards): with ``workers`` > 1 a model's score is the same bit for bit
    whichever models share the pool and in whatever order they run. With one worker the
    models run one by one with the caller's thread count; a score then differs from the
    side-by-side one in the last bits (measured ~1e-14 relative between 1 and 2 threads; tested
    at 1e-7);
    per model, every method receives the same
    :class:`~nctk.transfer._shared.SharedFeatures` as its features, so the mean,
    Gram matrices, spectra and principal subspaces are formed once whatever the number
    of methods, and freed before the next model.

    Args:
        arrays: model -> {"features": (N, d), "source_logits": (N, Cs)} (what the methods
            need; ``Method.input`` names the key).
        labels: (N,) labels shared by all models.
        methods: the methods to run, in order.
        options: method name -> its options (NCTI: also the term weights).
        workers: models scored at the same time (default :func:`default_workers` when
            every method is one of nctk's own, else 1: a user-registered method need not
            be thread-safe).

    Returns:
        method name -> :class:`MethodResult`; ``seconds`` is the time spent in that method
        summed over the models (statistics shared with a method run before it on the same
        model are not counted again).
    """
    if not arrays:
        raise InputError("the pool is empty")
    options = options or {}
    names = list(arrays)

    def score_model(model: str) -> dict[str, tuple[Any, float]]:
        return _score_model(model, arrays[model], labels, methods, options)

    if workers is None:
        workers = default_workers(len(names)) if all(map(_built_in, methods)) else 1
    per_model = dict(zip(names, _map(score_model, names, workers), strict=True))
    return {meth.name: combine_terms(
        meth, {m: per_model[m][meth.name][0] for m in names},
        sum(per_model[m][meth.name][1] for m in names), **options.get(meth.name, {}))
        for meth in methods}


def _score_model(model: str, inputs: Mapping[str, Any], labels: Any, methods: Sequence[Method],
                 options: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[Any, float]]:
    """{method: (score or raw components, seconds)} for one model, statistics shared."""
    shared: dict[str, Any] = {}
    out = {}
    for meth in methods:
        start = time.perf_counter()
        x = model_input(model, meth, inputs, labels, shared)
        out[meth.name] = (_located(model, meth.input, partial(model_terms, meth), x, labels,
                                   **options.get(meth.name, {})),
                          time.perf_counter() - start)
    return out


def model_input(model: str, meth: Method, inputs: Mapping[str, Any], labels: Any,
                shared: dict[str, Any]) -> Any:
    """The array ``meth`` reads from one model's ``inputs``; the features come as the
    model's :class:`~nctk.transfer._shared.SharedFeatures`, built on first use and
    kept in ``shared`` (one dict per model) for the next method."""
    if inputs.get(meth.input) is None:
        raise InputError(f"missing; method '{meth.name}' needs it", file=model, array=meth.input)
    if meth.input != "features":
        return inputs[meth.input]
    if "features" not in shared:
        from nctk.transfer._shared import shared_features

        try:
            shared["features"] = shared_features(inputs["features"], labels)
        except InputError as err:
            raise err.located(file=model, array="features") from None
    return shared["features"]


def _built_in(method: Method) -> bool:
    """nctk's own scores are safe to run in threads; a user-registered one may not be."""
    funcs = [method.score, method.components]
    return all(f is None or getattr(f, "__module__", "").startswith("nctk.transfer.")
               for f in funcs)


def default_workers(models: int) -> int:
    """Models scored at once: one per available core (at most one per model).

    Each worker runs single-threaded kernels. On the 2-core development machine this was
    as fast as one model at a time with 2-thread BLAS when idle, and several times faster
    when other processes share the cores (multi-threaded kernels then wait at every
    barrier for a pre-empted thread); see ``benchmarks/README.md``.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, models))


def _map(func: Any, items: Sequence[str], workers: int) -> list[Any]:
    """``[func(i) for i in items]``, ``workers`` at a time, every item with single-threaded
    kernels (:func:`single_threaded_kernels`): a model's score is then the same bit for bit
    whichever models share the pool, in whatever order the workers take them. Models left
    over after the full rounds run single-threaded too, side by side: on 2 cores this
    costs the last model its second thread, and under load it is 3x faster than giving it
    both (two-thread kernels wait for a pre-empted thread; benchmarks/README.md)."""
    if workers <= 1 or len(items) < 2:
        return [func(i) for i in items]
    with single_threaded_kernels(), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(func, items))


@contextmanager
def single_threaded_kernels() -> Iterator[None]:
    """torch's intra-op threads and the BLAS/OpenMP pools at one thread while the block
    runs, restored afterwards, also on an error. Process-wide (torch has no per-thread
    setting): other threads of the caller run single-threaded kernels meanwhile."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)


def rank_pool(pool: Sequence[FeatureFile], method: str | Method, **options: Any) -> MethodResult:
    """:func:`rank` over loaded feature files (labels taken from the files, checked equal)."""
    meth = get_method(method) if isinstance(method, str) else method
    return rank_pool_methods(pool, [meth], {meth.name: options})[meth.name]


def rank_pool_methods(pool: Sequence[FeatureFile], methods: Sequence[Method],
                      options: Mapping[str, Mapping[str, Any]] | None = None, *,
                      workers: int | None = None) -> dict[str, MethodResult]:
    """:func:`rank_arrays` over loaded feature files; errors name the file, not the model."""
    if not pool:
        raise InputError("the pool is empty")
    check_pool_labels(pool)
    for meth in methods:
        if meth.input == "source_logits":
            for f in pool:
                if f.source_logits is None:
                    raise InputError(f"missing; method '{meth.name}' needs the source model's "
                                     "logits", file=f.path or f.name, array="source_logits")
    arrays = {f.name: {"features": f.features, "source_logits": f.source_logits}
              for f in pool}
    paths = {f.name: f.path or f.name for f in pool}
    try:
        return rank_arrays(arrays, pool[0].labels, methods, options, workers=workers)
    except InputError as err:
        if err.file in paths:  # rank_arrays names the model; name its file instead
            raise InputError(err.problem, file=paths[err.file], array=err.array) from None
        raise


def _located(model: str, array: str, func: Any, x: Any, labels: Any, **options: Any) -> Any:
    """Call ``func``; an InputError is re-raised naming the model and array it came from."""
    try:
        return func(x, labels, **options)
    except InputError as err:
        raise err.located(file=model, array=array) from None
