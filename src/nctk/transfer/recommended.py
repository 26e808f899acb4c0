"""``recommended``: the ranking nctk recommends, registered methods and a prior combined.

For a pool of M models (docs/methods-recommended.md, "The recommended ranking"):

* the rule: :data:`WITHOUT_PRIOR` when no prior is given (the mean rank of ``ncti``, the
  reference pool score n(seli) + n(ncc) - n(vc), and ``logme``, LogME's evidence), and
  :data:`WITH_PRIOR` when one is (the mean rank of ``ncti`` and the prior); each member
  scores the pool as its registered method does on its own, and the members are combined by
  an aggregator of :mod:`nctk.transfer.aggregate` (``mean_rank``: the Borda count;
  ``z_mean``; ``median_rank``);
* the prior: a data-free value per model, higher = better (the models' ImageNet top-1,
  their source accuracy, or any {model: value} the user trusts).

The rules were chosen among members that take no seed (the ranking is a function of the
pool, the same for any sample order), leave-one-collection-out over the public tmlr scores,
the demo pool, nctk's zoo and its selection targets (``benchmarks/bench_recommended.py``;
figures and the goals they miss in benchmarks/README.md, "The rule"). No ground truth is
needed. Each model's ``components`` hold every member's score and rank (1 = best), under the
member's registered name.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nctk.errors import InputError
from nctk.transfer import logme, ncti  # noqa: F401  (registers the members)
from nctk.transfer.aggregate import AGGREGATORS, IN_WORDS, RANK_SUFFIX, aggregate
from nctk.transfer.ranking import model_terms, rank_order
from nctk.transfer.registry import Components, Method, get_method, register, supported_options

PRIOR = "prior"


@dataclass(frozen=True)
class Rule:
    """``members`` (registered method names; with a prior, the prior is one more member)
    combined by ``aggregator`` (one of :data:`~nctk.transfer.aggregate.AGGREGATORS`)."""

    members: tuple[str, ...]
    aggregator: str

    def __post_init__(self) -> None:
        if self.aggregator not in AGGREGATORS:
            raise ValueError(f"unknown aggregator {self.aggregator!r}")

    def in_words(self, members: tuple[str, ...] | list[str] | None = None) -> str:
        """"mean rank of ncti and logme": the aggregator over ``members`` (default: the
        rule's own; a result's :func:`members_used`)."""
        names = list(members or self.members)
        listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        return f"{IN_WORDS[self.aggregator]} of {listed}"


#: The rule without a prior and with one (benchmarks/README.md, "The rule").
WITHOUT_PRIOR = Rule(("ncti", "logme"), "mean_rank")
WITH_PRIOR = Rule(("ncti",), "mean_rank")
#: Every method a model is scored with (the prior is only known when the pool is combined).
ESTIMATORS = tuple(dict.fromkeys(WITHOUT_PRIOR.members + WITH_PRIOR.members))
#: The key of a per-model score in the components of a member that is not pool-relative.
SCORE = "score"


def rule_for(prior: Mapping[str, Any] | None) -> Rule:
    """The rule that applies with (``prior`` given) or without a prior."""
    return WITHOUT_PRIOR if prior is None else WITH_PRIOR


def recommended_components(features: Any, labels: Any, *, seed: int = 0,
                           device: Any = None) -> Components:
    """The raw terms of every member of one model, keyed ``<member>.<term>`` (a member
    that is not pool-relative: ``<member>.score``); ``seed`` and ``device`` go to the
    members that take them."""
    out = {}
    for member in ESTIMATORS:
        method = get_method(member)
        terms = model_terms(method, features, labels,
                            **supported_options(method, {"seed": seed, "device": device}))
        terms = terms if isinstance(terms, dict) else {SCORE: terms}
        out.update({f"{member}.{key}": value for key, value in terms.items()})
    return out


def _member_raw(raw: Mapping[str, Components], member: str) -> dict[str, Components]:
    prefix = f"{member}."
    return {m: {k[len(prefix):]: v for k, v in c.items() if k.startswith(prefix)}
            for m, c in raw.items()}


def _pool_scores(member: str, raw: Mapping[str, Components]) -> dict[str, float]:
    """One member's scores over the pool, as the method gives them on its own."""
    method = get_method(member)
    terms = _member_raw(raw, member)
    if method.pool_relative:
        return method.combine(terms)[0]
    return {m: float(t[SCORE]) for m, t in terms.items()}


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
    return (not isinstance(value, bool) and isinstance(value, numbers.Real)
            and math.isfinite(value))


def member_scores(raw: Mapping[str, Components], prior: Mapping[str, Any] | None = None
                  ) -> dict[str, dict[str, float]]:
    """member -> {model: score}: each member of the rule that applies, scoring the pool as
    the method named by the member does, and the prior if given."""
    scores = {member: _pool_scores(member, raw) for member in rule_for(prior).members}
    if prior is not None:
        scores[PRIOR] = check_prior(prior, list(raw))
    return scores


def combine_pool(raw: Mapping[str, Components], *, prior: Mapping[str, Any] | None = None
                 ) -> tuple[dict[str, float], dict[str, Components]]:
    """The recommended score of every model of the pool (see the module docstring):
    (model -> combined score, higher = better; model -> each member's score and rank)."""
    return aggregate(member_scores(raw, prior), rule_for(prior).aggregator)


def combine_scores(scores: Mapping[str, Mapping[str, float]], *,
                   prior: Mapping[str, Any] | None = None
                   ) -> tuple[dict[str, float], dict[str, Components]]:
    """The rule on a pool already scored, without features.

    Args:
        scores: method -> {model: pool score}, holding at least every member of the rule
            that applies (:func:`rule_for`; e.g. the ``scores`` of
            ``nctk.rank(pool, y, "ncti")``; other methods are ignored), every member over
            the same models.
        prior: {model: value}, higher = better, or None.

    Returns:
        As :func:`combine_pool`.
    """
    rule = rule_for(prior)
    missing = [m for m in rule.members if m not in scores]
    if missing:
        raise InputError(f"scores: no scores of the member(s) {missing} (the rule combines "
                         f"{', '.join(rule.members)})")
    models = list(scores[rule.members[0]])
    chosen = {}
    for member in rule.members:
        values = scores[member]
        if sorted(values) != sorted(models):
            raise InputError(f"scores: '{member}' scores other models than "
                             f"'{rule.members[0]}'")
        bad = [m for m in models if not _is_number(values[m])]
        if bad:
            raise InputError(f"scores: '{member}' has no finite score for model(s) {bad}")
        chosen[member] = {m: float(values[m]) for m in models}
    if len(models) < 2:
        raise InputError(f"scores: a ranking needs at least 2 models, got {len(models)}")
    if prior is not None:
        chosen[PRIOR] = check_prior(prior, models)
    return aggregate(chosen, rule.aggregator)


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
    summary=(f"nctk's recommendation: {WITHOUT_PRIOR.in_words()}; with a prior, "
             f"{WITH_PRIOR.in_words([*WITH_PRIOR.members, PRIOR])}"),
    components=recommended_components,
    combine=combine_pool,
    combine_options=("prior",),
    recommendation=(f"the {WITH_PRIOR.in_words([*WITH_PRIOR.members, 'a data-free prior'])} "
                    f"when one is given, else the {WITHOUT_PRIOR.in_words()}, chosen "
                    "leave-one-collection-out on public ImageNet-model scores and nctk's "
                    "pools of small networks: it is never worse than NCTI beyond the "
                    "bootstrap noise there, but no rule was best on every collection "
                    "(benchmarks/README.md, 'The rule')"),
))
