"""``recommended``: the ranking nctk recommends, a rank average of NCTI, ETran and a prior.

For a pool of M models (docs/methods-recommended.md, "The recommended ranking"):

* members: the registered methods ``ncti`` (the reference pool score n(seli) + n(ncc) -
  n(vc)) and ``etran_equal`` (ETran with the paper's equal weights, n(S_en) + n(S_lda),
  the variant of the public per-model scores it was validated on), each scoring the pool as
  it does on its own, and, when given, a data-free prior (e.g. the models' ImageNet top-1,
  their source accuracy, or any {model: value} the user trusts, higher = better);
* r_s(m) = rank of model m by member s, ascending (1 = lowest, M = highest, ties
  averaged, ``scipy.stats.rankdata``);
* recommended(m) = (1/|S|) sum_{s in S} r_s(m): the mean rank (Borda count), in [1, M],
  higher = better.

The members were chosen leave-one-target-out on the public scores of 10 models x 11
targets (``benchmarks/bench_recommended.py``): NCTI + ETran is the pair selected in every
fold; no weights are fitted. No ground truth is needed. Each model's ``components`` hold
every member's score and rank (1 = best); a member that is not available (no prior) is
left out and the others are averaged.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from nctk.errors import InputError
from nctk.transfer import etran, ncti  # noqa: F401  (registers the members)
from nctk.transfer.ranking import rank_order
from nctk.transfer.registry import Components, Method, get_method, register

#: The estimators averaged, registered method names in display order (the prior, when
#: given, comes last); each member's score and rank are shown under its method's name.
ESTIMATORS = ("ncti", "etran_equal")
PRIOR = "prior"
RANK_SUFFIX = "_rank"


def recommended_components(features: Any, labels: Any, *, device: Any = None) -> Components:
    """The raw terms of every estimator member of one model, keyed ``<member>.<term>``."""
    return {f"{member}.{key}": value for member in ESTIMATORS
            for key, value in get_method(member).components(features, labels,
                                                            device=device).items()}


def _member_raw(raw: Mapping[str, Components], member: str) -> dict[str, Components]:
    prefix = f"{member}."
    return {m: {k[len(prefix):]: v for k, v in c.items() if k.startswith(prefix)}
            for m, c in raw.items()}


def check_prior(prior: Mapping[str, Any], models: list[str]) -> dict[str, float]:
    """The prior's value for each model of the pool: finite numbers, none missing."""
    if not isinstance(prior, Mapping):
        raise InputError(f"the prior must be a mapping {{model: value}}, got "
                         f"{type(prior).__name__}", array=PRIOR)
    missing = [m for m in models if m not in prior]
    if missing:
        raise InputError(f"no prior value for model(s) {missing}", array=PRIOR)
    values = {}
    for model in models:
        value = prior[model]
        if not _is_number(value):
            raise InputError(f"prior value for '{model}' is not a finite number: {value!r}",
                             array=PRIOR)
        values[model] = float(value)
    return values


def _is_number(value: Any) -> bool:
    """A finite real number (not a bool)."""
    return (not isinstance(value, bool | np.bool_) and isinstance(value, numbers.Real)
            and math.isfinite(value))


def member_scores(raw: Mapping[str, Components], prior: Mapping[str, Any] | None = None
                  ) -> dict[str, dict[str, float]]:
    """member -> {model: score}: each estimator's pool score (as the method named by the
    member gives it), and the prior if given."""
    models = list(raw)
    scores = {member: get_method(member).combine(_member_raw(raw, member))[0]
              for member in ESTIMATORS}
    if prior is not None:
        scores[PRIOR] = check_prior(prior, models)
    return scores


def rank_average(scores: Mapping[str, Mapping[str, float]]
                 ) -> tuple[dict[str, float], dict[str, Components]]:
    """Mean ascending rank over the members (Borda), with each member's score and rank.

    Args:
        scores: member -> {model: score}, every member scoring the same models.

    Returns:
        (model -> mean rank in [1, M], higher = better; model -> {member: score,
        member_rank: 1-based rank, 1 = best, ties averaged}).
    """
    from scipy.stats import rankdata  # here: scipy.stats takes ~0.8 s to import

    models = list(next(iter(scores.values())))
    size = len(models)
    ascending = {s: dict(zip(models, rankdata([v[m] for m in models]), strict=True))
                 for s, v in scores.items()}
    combined = {m: float(np.mean([ascending[s][m] for s in scores])) for m in models}
    comps = {m: {key: value for s in scores
                 for key, value in ((s, float(scores[s][m])),
                                    (s + RANK_SUFFIX, float(size + 1 - ascending[s][m])))}
             for m in models}
    return combined, comps


def combine_pool(raw: Mapping[str, Components], *, prior: Mapping[str, Any] | None = None
                 ) -> tuple[dict[str, float], dict[str, Components]]:
    """The recommended score of every model of the pool (see the module docstring)."""
    return rank_average(member_scores(raw, prior))


def combine_scores(scores: Mapping[str, Mapping[str, float]], *,
                   prior: Mapping[str, Any] | None = None
                   ) -> tuple[dict[str, float], dict[str, Components]]:
    """The rule on a pool already scored, without features.

    Args:
        scores: method -> {model: pool score}, holding at least every member of
            :data:`ESTIMATORS` (e.g. the ``scores`` of ``nctk.rank(pool, y, "ncti")``;
            other methods are ignored), every member over the same models.
        prior: {model: value}, higher = better, or None.

    Returns:
        As :func:`combine_pool`: (model -> mean rank, higher = better; model -> each
        member's score and rank).
    """
    missing = [m for m in ESTIMATORS if m not in scores]
    if missing:
        raise InputError(f"scores: no scores of the member(s) {missing} (the rule averages "
                         f"{', '.join(ESTIMATORS)})")
    models = list(scores[ESTIMATORS[0]])
    chosen = {}
    for member in ESTIMATORS:
        values = scores[member]
        if sorted(values) != sorted(models):
            raise InputError(f"scores: '{member}' scores other models than "
                             f"'{ESTIMATORS[0]}'")
        bad = [m for m in models if not _is_number(values[m])]
        if bad:
            raise InputError(f"scores: '{member}' has no finite score for model(s) {bad}")
        chosen[member] = {m: float(values[m]) for m in models}
    if len(models) < 2:
        raise InputError(f"scores: a ranking needs at least 2 models, got {len(models)}")
    if prior is not None:
        chosen[PRIOR] = check_prior(prior, models)
    return rank_average(chosen)


def ranking(scores: Mapping[str, Mapping[str, float]], *,
            prior: Mapping[str, Any] | None = None) -> list[str]:
    """The models of a scored pool, best first, by the rule (:func:`combine_scores`; ties
    keep the order of the first member's scores)."""
    return rank_order(combine_scores(scores, prior=prior)[0])


def members_used(components: Mapping[str, Components]) -> list[str]:
    """The members a ``recommended`` result averaged, from its components."""
    first = next(iter(components.values()), {})
    return [k[:-len(RANK_SUFFIX)] for k in first if k.endswith(RANK_SUFFIX)]


def recommended_score(features: Any, labels: Any, **options: Any) -> float:
    """Not defined for one model: ``recommended`` ranks a pool."""
    raise InputError("'recommended' averages ranks within a pool of models; rank a pool with "
                     "nctk.rank(pool, labels, 'recommended') or nctk rank")


register(Method(
    name="recommended",
    score=recommended_score,
    summary="nctk's recommendation: mean rank of NCTI, ETran and a prior when given",
    components=recommended_components,
    combine=combine_pool,
    combine_options=("prior",),
    recommendation="the mean rank of NCTI, ETran and a data-free prior when given, members "
                   "chosen leave-one-target-out: on the public per-model scores of 10 models "
                   "x 11 targets its mean weighted Kendall tau is 0.768 with the ImageNet "
                   "prior (NCTI 0.663, ETran 0.668, the best prior 0.736); on small "
                   "self-trained pools a good prior can beat it (benchmarks/README.md)",
))
