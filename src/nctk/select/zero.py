"""The zero-training phase of ``nctk select``: every model scored from its (cached)
features through the rank workflow, exactly as ``nctk rank --models`` does, and the pool put
in the hybrid order.

:func:`nctk.workflow.rank_model_specs` checks every model on one image, extracts and scores
it (one unit of work per model, through the feature cache, on the loop or Ray executor)
with ``recommended`` (its rule, and the prior when there is one) and NCTI; the prior is
the one given, else the source accuracy every model records (:mod:`nctk.priors`). Models
that fail are left out with a note. The workflow's outcome gives the JSON document, the
provenance and the report that ``nctk select`` extends with its own keys and section.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nctk.errors import InputError
from nctk.priors import Prior
from nctk.select.shortlist import hybrid_order, ranking

#: The zero-training methods: the first orders the shortlist with the prior.
METHODS = ("recommended", "ncti")


@dataclass
class ZeroTraining:
    """The outcome of the zero-training phase.

    Attributes:
        order: every model that scored, in the hybrid order (best first).
        specs: model name -> spec.
        results: method -> :class:`~nctk.transfer.ranking.MethodResult`.
        prior: the data-free prior, None without one.
        failures: spec -> one-line error of the models that failed.
        notes: what the reader should know (failures, a missing prior).
        samples: N, the labelled images scored; ``labels`` their (N,) labels.
        seconds: wall-clock seconds of the phase.
        outcome: the rank workflow's :class:`~nctk.workflow.RankingOutcome` (None when
            the pool was scored elsewhere, as by ``nctk demo``).
    """

    order: list[str]
    specs: dict[str, str]
    results: dict[str, Any]
    prior: Prior | None
    failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    samples: int = 0
    seconds: float = 0.0
    labels: Any = field(default=None, repr=False)
    outcome: Any = field(default=None, repr=False)

    def top(self, method: str) -> str:
        """The first model of ``method`` (``prior``: the prior's best)."""
        if method == "prior":
            return ranking(self.prior.values)[0]
        return self.results[method].ranking[0]

    def to_json(self) -> dict[str, Any]:
        return {"order": self.order, "specs": self.specs,
                "methods": {name: r.to_json() for name, r in self.results.items()},
                "prior": self.prior.to_json() if self.prior else None,
                "failed": self.failures, "notes": self.notes, "samples": self.samples,
                "seconds": self.seconds}


def zero_training(specs: Sequence[str], dataset: Any, *, executor: Any, extract: Any,
                  prior: str | Mapping[str, float] | None = None, progress: bool = False,
                  seed: int = 0, argv: Sequence[str] | None = None) -> ZeroTraining:
    """Check, score and order every model of ``specs`` on ``dataset`` (module docstring).

    Args:
        specs: model specs (``NAME=SPEC`` names one).
        dataset: the labelled images (:class:`~nctk.extract.LabelledImages`).
        executor: a loop or Ray executor (:mod:`nctk.scale`), entered or not.
        extract: :class:`~nctk.scale.ExtractSettings` (cache, device, image size).
        prior: a ``{model: value}`` JSON path or mapping; None: the recorded one.
        progress: show the progress bar of the models.
        seed, argv: for the provenance.

    Raises:
        InputError: a model fails its check, or fewer than two models scored.
    """
    from nctk.transfer.registry import get_method
    from nctk.workflow import rank_model_specs

    started = time.perf_counter()
    if isinstance(prior, Mapping):
        from nctk.transfer.recommended import check_prior

        prior = Prior(check_prior(prior, list(prior)), "given")
    outcome = rank_model_specs(list(specs), dataset, [get_method(m) for m in METHODS],
                               executor=executor, extract=extract, prior=prior, seed=seed,
                               progress=progress, argv=argv)
    notes = [f"left out {spec}: {error}" for spec, error in outcome.failed.items()]
    if len(outcome.models) < 2:
        raise InputError(f"{len(outcome.models)} of {len(specs)} models could be scored; "
                         "selection needs at least 2" + (f" ({notes[0]})" if notes else ""),
                         parameter="models")
    zero = ordered(outcome.results, outcome.provenance["models"], outcome.prior,
                   labels=outcome.labels, notes=notes + outcome.notes)
    zero.failures, zero.seconds, zero.outcome = (dict(outcome.failed),
                                                 time.perf_counter() - started, outcome)
    return zero


def ordered(results: Mapping[str, Any], specs: Mapping[str, str], prior: Prior | None, *,
            labels: Any, notes: Sequence[str] = ()) -> ZeroTraining:
    """The :class:`ZeroTraining` of a pool already scored (``results`` holding
    ``recommended``, combined with ``prior`` when there is one, and ``ncti``): the
    hybrid order of ``recommended`` and the prior."""
    notes = list(notes)
    if prior is None:
        from nctk.transfer.recommended import WITHOUT_PRIOR

        notes.append(f"no prior: the shortlist follows recommended "
                     f"({WITHOUT_PRIOR.in_words()}) alone")
    order = hybrid_order(results["recommended"].ranking,
                         ranking(prior.values) if prior is not None else None)
    return ZeroTraining(order, {m: specs[m] for m in order},
                        {m: results[m] for m in METHODS}, prior, notes=notes,
                        samples=len(labels), labels=labels)
