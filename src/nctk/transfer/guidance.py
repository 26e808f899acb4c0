"""Reading a ranking: the recommended method, the order methods are shown in, and the scores
that do not separate models (saturated at the method's upper bound, or tied).

A saturated score sits at the largest value its method can give (the H-score at C - 1 when
the features are collapsed onto their class means, SFDA at 1.0 when every posterior is
certain): every model at the bound looks equally good, whatever their real transfer
accuracy. Tied scores rank in input order, which means nothing. Both are flagged rather
than hidden.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nctk.errors import InputError
from nctk.transfer import registry
from nctk.transfer.registry import get_method

#: A score within this relative distance of its method's upper bound is saturated.
SATURATION_RTOL = 1e-6
#: Two scores within this relative distance of each other are tied.
TIE_RTOL = 1e-9
#: Below this many models the rule's order is uncertain (nctk's demo pool, 9 models: the 95 %
#: bootstrap interval of its weighted tau spans about +-0.4).
FEW_MODELS = 10
#: Pools whose every feature dimension is at most this look like nctk's zoo of small networks
#: (48-256 dimensions), where the rule is weakest (the ImageNet models of the public tmlr
#: scores have 384-2,208).
SMALL_FEATURES = 256
NO_PRIOR_CAVEAT = ("no data-free prior was given, and without one this ranking is weaker on "
                   "every collection nctk measured (benchmarks/README.md): give each model's "
                   "ImageNet or source-task accuracy as prior=...")
SMALL_NETWORKS_CAVEAT = (f"every model has at most {SMALL_FEATURES} feature dimensions, like "
                         "nctk's zoo of small networks, where no zero-training score ranked "
                         "reliably: take the order as a shortlist and fine-tune its top "
                         "models (nctk select) before choosing")


def method_order(names: Iterable[str]) -> list[str]:
    """``names`` with the default method first, the others in their given order."""
    names = list(names)
    return sorted(names, key=lambda name: name != registry.DEFAULT_METHOD)


def primary_method(names: Iterable[str]) -> str:
    """The method whose ranking orders tables: the default when it ran, else the first."""
    return method_order(names)[0]


def recommendation(ran: Iterable[str] = (), caveats: Sequence[str] = ()) -> str:
    """One line: the recommended method and why (its ``recommendation`` in the registry),
    with a hint when it is not among the methods that ran, then ``caveats``
    (:func:`rule_caveats`)."""
    default = registry.DEFAULT_METHOD
    try:
        reason = registry.default_method().recommendation
    except InputError:  # a registry without the default (a toy registry in a test)
        reason = ""
    line = f"Recommended: the '{default}' ranking"
    if default not in set(ran):
        line += f" (not run here; run it too: method={default})"
    line += f", {reason}" if reason else ""
    return line + (f". Weak here: {'; '.join(caveats)}" if caveats else "")


def rule_caveats(*, models: int, prior: bool, dims: Iterable[int] = ()) -> list[str]:
    """Where the recommended rule is known to be weak for this pool, each in words a user
    can act on (benchmarks/README.md, "The rule"): no prior, few models, small networks.

    Args:
        models: the pool's size. prior: whether the rule ran with a prior.
        dims: the models' feature dimensions (empty: unknown).
    """
    caveats = []
    if not prior:
        caveats.append(NO_PRIOR_CAVEAT)
    if models < FEW_MODELS:
        caveats.append(f"{models} models are few for a ranking to be sure of its order: "
                       f"fine-tune the top {min(3, models)} (nctk select) before choosing")
    dims = list(dims)
    if dims and max(dims) <= SMALL_FEATURES:
        caveats.append(SMALL_NETWORKS_CAVEAT)
    return caveats


@dataclass
class ScoreFlags:
    """What one method's scores cannot tell apart.

    Attributes:
        upper_bound: the method's largest possible score for this pool, or None.
        saturated: models whose score is at ``upper_bound``, best-ranked first.
        ties: groups of two or more models with equal scores, best group first.
    """

    upper_bound: float | None = None
    saturated: list[str] = field(default_factory=list)
    ties: list[list[str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.saturated or self.ties)

    def of(self, model: str) -> str:
        """``"saturated"``, ``"tie"``, both joined by ``", "``, or ``""`` for ``model``."""
        marks = ["saturated"] if model in self.saturated else []
        marks += ["tie"] if any(model in group for group in self.ties) else []
        return ", ".join(marks)

    def to_json(self) -> dict[str, Any]:
        return {"upper_bound": self.upper_bound, "saturated": self.saturated,
                "ties": self.ties}


def tied_groups(scores: Mapping[str, float], ranking: Sequence[str] | None = None
                ) -> list[list[str]]:
    """Groups (of 2 or more) of models with equal finite scores, within :data:`TIE_RTOL`,
    in ranking order (``ranking`` defaults to the descending score order)."""
    order = [m for m in (ranking or sorted(scores, key=scores.__getitem__, reverse=True))
             if _finite(scores.get(m))]
    groups: list[list[str]] = []
    for model in order:
        if groups and _close(scores[groups[-1][-1]], scores[model], TIE_RTOL):
            groups[-1].append(model)
        else:
            groups.append([model])
    return [group for group in groups if len(group) > 1]


def score_flags(method: str, scores: Mapping[str, float], ranking: Sequence[str], *,
                num_classes: int, options: Mapping[str, Any] | None = None) -> ScoreFlags:
    """The saturated and tied scores of one method (see the module docstring).

    ``num_classes`` and ``options`` (the method's options, e.g. LEEP's ``log``) give its
    upper bound through the registry's ``upper_bound``.
    """
    bound_of = get_method(method).upper_bound
    bound = float(bound_of(num_classes, **(options or {}))) if bound_of else None
    saturated = [m for m in ranking if bound is not None and _finite(scores.get(m))
                 and scores[m] >= bound - SATURATION_RTOL * max(1.0, abs(bound))]
    return ScoreFlags(bound, saturated, tied_groups(scores, ranking))


def pool_flags(results: Mapping[str, Any], *, num_classes: int,
               options: Mapping[str, Mapping[str, Any]] | None = None
               ) -> dict[str, ScoreFlags]:
    """:func:`score_flags` of every method result (``MethodResult``) that has a flag."""
    flags = {name: score_flags(name, r.scores, r.ranking, num_classes=num_classes,
                               options=(options or {}).get(name))
             for name, r in results.items()}
    return {name: f for name, f in flags.items() if f}


def flag_notes(flags: Mapping[str, ScoreFlags]) -> list[str]:
    """One plain-language line per saturated bound and per group of tied models."""
    notes = []
    for method, flag in flags.items():
        if flag.saturated:
            notes.append(f"{method}: {_names(flag.saturated)} at the method's upper bound "
                         f"{flag.upper_bound:g} (saturated): it cannot rank "
                         f"{'them' if len(flag.saturated) > 1 else 'it'} against other "
                         "models at the bound; prefer another method's order")
        for group in flag.ties:
            if group == flag.saturated:
                continue
            notes.append(f"{method}: {_names(group)} tie (equal scores); their order is "
                         "the input order, not a ranking")
    return notes


def _names(models: Sequence[str]) -> str:
    return ", ".join(models[:6]) + (f" and {len(models) - 6} more" if len(models) > 6 else "")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _close(a: float, b: float, rtol: float) -> bool:
    return abs(a - b) <= rtol * max(abs(a), abs(b)) or a == b
