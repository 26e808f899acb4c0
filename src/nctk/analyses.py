"""The NCTI paper's analyses over one pool of models with a ground truth (Wang et al., ICCV
2023, Sec. 4): term ablation (Fig. 5), term-weight sweep (Fig. 6a-c), few-shot estimation
(Fig. 6d), wall-clock time (Fig. 4) and the terms computed on source (pre-training)
features (Fig. 7).

Everything here is a pure function returning plain dicts; every random step takes an
explicit seed. The paper averages each analysis over its 11 target datasets; these
functions analyse one pool (one target dataset), so call them once per dataset and
average the numbers (``docs/evaluation.md``).

The term analyses work for any pool-relative method whose ``combine_options`` are term
weights ``w_<term>`` (NCTI: ``w_seli``, ``w_ncc``, ``w_vc``): the per-model components
are computed once and only the pool combination is re-run per weight setting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from nctk.errors import InputError
from nctk.evaluation import undefined_reason, weighted_tau
from nctk.sampling import at_most_per_class
from nctk.transfer.registry import Components, Method, get_method
from nctk.validation import encode_labels

#: The weight values of the paper's hyper-parameter analysis (Fig. 6a-c).
PAPER_WEIGHT_VALUES = (0.1, 0.4, 0.8, 1.2, 1.6, 2.0)
#: Default shots per class of the few-shot analysis (the paper spans 2..500).
DEFAULT_SHOTS = (2, 5, 10, 20, 50, 100)

WEIGHT_PREFIX = "w_"


def _method(method: str | Method) -> Method:
    return get_method(method) if isinstance(method, str) else method


def term_names(method: str | Method) -> list[str]:
    """The weighted terms of a pool-relative method, from its ``w_<term>`` combine options."""
    meth = _method(method)
    terms = [opt[len(WEIGHT_PREFIX):] for opt in meth.combine_options
             if opt.startswith(WEIGHT_PREFIX)]
    if not meth.pool_relative or not terms:
        raise InputError(f"method '{meth.name}' has no weighted terms to analyse "
                         "(needs w_<term> combine options, like ncti)")
    return terms


def pool_components(pool: Mapping[str, Any], labels: Any, method: str | Method = "ncti",
                    **options: Any) -> dict[str, Components]:
    """Per-model raw components of a pool-relative method, computed once per model.

    Args:
        pool: model -> (N, d) features (or source logits, per ``method.input``).
        labels: (N,) shared labels.
        **options: options of ``method.components`` (not the combine weights).
    """
    meth = _method(method)
    term_names(meth)
    return {name: _components(meth, x, labels, name, options) for name, x in pool.items()}


def _components(meth: Method, x: Any, labels: Any, where: str, options: Mapping[str, Any]
                ) -> Components:
    try:
        return meth.components(x, labels, **options)
    except InputError as err:
        raise err.located(file=where, array=meth.input) from None


def combined_scores(raw: Mapping[str, Components], method: str | Method,
                    weights: Mapping[str, float]) -> dict[str, float]:
    """Pool scores from precomputed components with term weights ``{term: weight}``."""
    meth = _method(method)
    scores, _ = meth.combine(raw, **{WEIGHT_PREFIX + t: float(w) for t, w in weights.items()})
    return {m: float(s) for m, s in scores.items()}


def _tau(scores: Mapping[str, float], truth: Mapping[str, float]) -> float:
    models = list(scores)
    missing = [m for m in models if m not in truth]
    if missing:
        raise InputError(f"no value for model(s) {missing}", array="ground truth")
    return weighted_tau([scores[m] for m in models], [truth[m] for m in models])


def ablation_variants(terms: Sequence[str]) -> dict[str, dict[str, float]]:
    """The paper's Fig. 5 settings: all terms, each term alone, each term removed."""
    variants = {"all": {t: 1.0 for t in terms}}
    for term in terms:
        variants[f"only {term}"] = {t: float(t == term) for t in terms}
    for term in terms:
        variants[f"without {term}"] = {t: float(t != term) for t in terms}
    return variants


def ablation(raw: Mapping[str, Components], truth: Mapping[str, float],
             method: str | Method = "ncti") -> dict[str, dict[str, Any]]:
    """Weighted tau of each Fig. 5 variant (a weight of 0 removes a term).

    Args:
        raw: model -> components, from :func:`pool_components` (computed once).
        truth: model -> ground-truth accuracy.

    Returns:
        variant -> ``{"weights": {term: w}, "weighted_tau": tau}``, variants in the order
        all, only <term>..., without <term>....
    """
    terms = term_names(method)
    return {name: {"weights": weights,
                   "weighted_tau": _tau(combined_scores(raw, method, weights), truth)}
            for name, weights in ablation_variants(terms).items()}


def weight_sweep(raw: Mapping[str, Components], truth: Mapping[str, float],
                 method: str | Method = "ncti",
                 values: Sequence[float] = PAPER_WEIGHT_VALUES) -> dict[str, dict[float, float]]:
    """Fig. 6a-c: vary one term's weight over ``values`` with the others fixed at 1.

    Returns:
        term -> {weight value: weighted tau}.
    """
    terms = term_names(method)
    sweep: dict[str, dict[float, float]] = {}
    for term in terms:
        sweep[term] = {}
        for value in values:
            weights = {t: (float(value) if t == term else 1.0) for t in terms}
            sweep[term][float(value)] = _tau(combined_scores(raw, method, weights), truth)
    return sweep


def few_shot(pool: Mapping[str, Any], labels: Any, truth: Mapping[str, float],
             methods: Sequence[str | Method], *, shots: Sequence[int] = DEFAULT_SHOTS,
             repeats: int = 5, seed: int = 0,
             options: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Fig. 6d: weighted tau when only k labelled samples per class are available.

    For each k and repeat r, one stratified draw (numpy ``default_rng([seed, k, r])``) is
    shared by every model and every method, so methods are compared on the same samples.
    When k exceeds a class's size the whole class is used, and ``notes`` says so. A method
    that rejects a draw (e.g. fewer samples than it needs) gets a NaN tau for that
    repeat, with the reason in ``notes``; mean and std are over the defined repeats.

    Args:
        pool: model -> (N, d) array (features or source logits, per method input).
            For methods of both inputs pass ``{model: FeatureFile}`` via
            :func:`few_shot_files` instead.
        labels: (N,) labels. truth: model -> accuracy.
        methods: names or Method objects. options: method name -> extra options.

    Returns:
        ``{"shots": [...], "repeats": R, "seed": s, "methods": {method: {k: {"mean",
        "std", "taus"}}}, "notes": [...]}``.
    """
    return _few_shot(lambda m, idx: {name: np.asarray(x)[idx] for name, x in pool.items()},
                     labels, truth, methods, shots=shots, repeats=repeats, seed=seed,
                     options=options)


def few_shot_files(pool: Sequence[Any], truth: Mapping[str, float],
                   methods: Sequence[str | Method], **kwargs: Any) -> dict[str, Any]:
    """:func:`few_shot` over loaded feature files (each method reads its own input array)."""

    def arrays(meth: Method, idx: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for f in pool:
            x = f.features if meth.input == "features" else f.source_logits
            if x is None:
                raise InputError(f"missing; method '{meth.name}' needs the source model's "
                                 "logits", file=f.path or f.name, array="source_logits")
            out[f.name] = x[idx]
        return out

    return _few_shot(arrays, pool[0].labels, truth, methods, **kwargs)


def _few_shot(arrays: Callable[[Method, np.ndarray], dict[str, Any]], labels: Any,
              truth: Mapping[str, float], methods: Sequence[str | Method], *,
              shots: Sequence[int], repeats: int, seed: int,
              options: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    from nctk.transfer.ranking import rank

    if repeats < 1:
        raise InputError(f"repeats must be >= 1, got {repeats}")
    if not shots or min(shots) < 1:
        raise InputError(f"shots per class must be >= 1, got {list(shots)}")
    encoded = encode_labels(labels)
    label_array = np.asarray(labels)
    metas = [_method(m) for m in methods]
    notes: list[str] = []
    smallest = int(encoded.counts.min())
    out: dict[str, dict[int, dict[str, Any]]] = {m.name: {} for m in metas}
    for k in shots:
        if k > smallest:
            notes.append(f"k={k}: {int((encoded.counts < k).sum())} class(es) have fewer than "
                         f"{k} samples (smallest {smallest}); those classes are used whole")
        draws = [at_most_per_class(encoded.codes, k, np.random.default_rng([seed, k, r]))
                 for r in range(repeats)]
        for meth in metas:
            opts = dict((options or {}).get(meth.name, {}))
            taus = []
            for r, idx in enumerate(draws):
                try:
                    result = rank(arrays(meth, idx), label_array[idx], meth, **opts)
                    taus.append(_tau(result.scores, truth))
                    if math.isnan(taus[-1]):
                        notes.append(f"{meth.name}, k={k}, repeat {r}: weighted tau undefined: "
                                     f"{undefined_reason(result.scores, truth)}")
                except InputError as err:
                    taus.append(math.nan)
                    notes.append(f"{meth.name}, k={k}, repeat {r}: {err}")
            defined = np.array([t for t in taus if math.isfinite(t)])
            out[meth.name][int(k)] = {
                "mean": float(defined.mean()) if defined.size else math.nan,
                "std": float(defined.std()) if defined.size else math.nan,
                "taus": taus}
    return {"shots": [int(k) for k in shots], "repeats": repeats, "seed": seed,
            "methods": out, "notes": notes}


def timing(pool: Sequence[Any], methods: Sequence[str | Method], *, repeat: int = 3,
           options: Mapping[str, Mapping[str, Any]] | None = None,
           progress: bool = False) -> dict[str, dict[str, Any]]:
    """Fig. 4's cost axis: wall-clock seconds per model of each method.

    Each method scores the whole pool ``repeat`` times (``MethodResult.seconds``, which
    covers the per-model work and the pool combination); the per-model figure is the pool
    time divided by the number of models.

    Args:
        pool: loaded feature files (:class:`nctk.io.FeatureFile`).
        progress: a progress bar of the method runs on stderr (on a terminal only).

    Returns:
        method -> ``{"pool_seconds": [...], "per_model_min", "per_model_mean", "models",
        "scores"}`` (``scores``: the model scores of the last run).
    """
    from nctk.progress import progress_bar
    from nctk.transfer.ranking import rank_pool

    if repeat < 1:
        raise InputError(f"repeat must be >= 1, got {repeat}")
    out = {}
    bar = progress_bar(total=len(methods) * repeat, unit="run", desc="timing",
                       enabled=progress)
    for method in methods:
        meth = _method(method)
        opts = dict((options or {}).get(meth.name, {}))
        bar.set_postfix_str(meth.name)
        runs = []
        for _ in range(repeat):
            runs.append(rank_pool(pool, meth, **opts))
            bar.update()
        seconds = [run.seconds for run in runs]
        out[meth.name] = {"pool_seconds": seconds, "models": len(pool), "scores": runs[-1].scores,
                          "per_model_min": min(seconds) / len(pool),
                          "per_model_mean": float(np.mean(seconds)) / len(pool)}
    bar.close()
    return out


def source_terms(source_raw: Mapping[str, Components], truth: Mapping[str, float],
                 method: str | Method = "ncti",
                 target_raw: Mapping[str, Components] | None = None) -> dict[str, dict]:
    """Fig. 7: each term computed on source (pre-training) features vs the TARGET truth.

    A term's score is the method's pool combination with that term's weight 1 and the
    others 0, i.e. the min-max normalised term with the method's sign (NCTI: +seli, +ncc,
    -vc). The full combination is reported as ``all``.

    Args:
        source_raw: model -> components computed on that model's source-data features
            (:func:`pool_components` per model, since source labels may differ per model:
            use :func:`components_per_model`).
        truth: model -> fine-tuned accuracy on the target dataset.
        target_raw: optional components on the target features, for comparison.

    Returns:
        term (and ``all``) -> ``{"source": tau, "target": tau or None}``.
    """
    terms = term_names(method)
    variants = ablation_variants(terms)
    wanted = {t: variants[f"only {t}"] for t in terms} | {"all": variants["all"]}
    out = {}
    for name, weights in wanted.items():
        source = _tau(combined_scores(source_raw, method, weights), truth)
        target = (_tau(combined_scores(target_raw, method, weights), truth)
                  if target_raw is not None else None)
        out[name] = {"source": source, "target": target}
    return out


def components_per_model(files: Sequence[Any], method: str | Method = "ncti",
                         **options: Any) -> dict[str, Components]:
    """Components of each feature file on its own labels (files need not share labels)."""
    meth = _method(method)
    term_names(meth)
    return {f.name: _components(meth, f.features if meth.input == "features"
                                else f.source_logits, f.labels, f.path or f.name, options)
            for f in files}
