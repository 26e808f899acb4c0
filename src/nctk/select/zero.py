"""The zero-training phase of ``nctk select``: every model scored from its (cached)
features, as ``nctk rank --models`` does, and the pool put in the hybrid order.

Each model is extracted and scored by :func:`nctk.scale.rank_models` (one unit of work
per model, through the feature cache, on the loop or Ray executor) with ``recommended``
(NCTI + ETran, and the prior when there is one) and NCTI; the prior is the one given, else
the source accuracy every model records (:mod:`nctk.priors`). Models that fail are left
out with a note.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nctk.errors import InputError
from nctk.priors import Prior, resolve_prior
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
        records: the models' :class:`~nctk.scale.ModelRecord`.
    """

    order: list[str]
    specs: dict[str, str]
    results: dict[str, Any]
    prior: Prior | None
    failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    samples: int = 0
    seconds: float = 0.0
    records: list[Any] = field(default_factory=list, repr=False)
    labels: Any = field(default=None, repr=False)

    def rank_of(self, model: str) -> int:
        """1-based position in the hybrid order."""
        return self.order.index(model) + 1

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
                  prior: str | Mapping[str, float] | None = None, progress: bool = False
                  ) -> ZeroTraining:
    """Score every model of ``specs`` on ``dataset`` and order the pool (module docstring).

    Args:
        specs: model specs (``NAME=SPEC`` names one).
        dataset: the labelled images (:class:`~nctk.extract.LabelledImages`).
        executor: an entered loop or Ray executor (:mod:`nctk.scale`).
        extract: :class:`~nctk.scale.ExtractSettings` (cache, device, image size).
        prior: a ``{model: value}`` JSON path or mapping; None: the recorded one.
        progress: show the progress bar of the models.

    Raises:
        InputError: fewer than two models scored.
    """
    from nctk.scale import rank_models

    started = time.perf_counter()
    run = rank_models(list(specs), dataset, list(METHODS), executor=executor,
                      extract=extract, progress=progress)
    failures = {r.spec: r.error for r in run.failures}
    notes = [f"left out {spec}: {error}" for spec, error in failures.items()] + run.notes
    if len(run.records) < 2:
        raise InputError(f"{len(run.records)} of {len(specs)} models could be scored; "
                         "selection needs at least 2" + (f" ({notes[0]})" if notes else ""),
                         parameter="models")
    resolved, note = _prior(prior, run.records)
    notes += [note] if note else []
    results = dict(run.results)
    if resolved is not None:
        from nctk.transfer.ranking import combine_terms
        from nctk.transfer.registry import get_method

        results["recommended"] = combine_terms(
            get_method("recommended"), {r.name: r.terms["recommended"] for r in run.records},
            results["recommended"].seconds, prior=resolved.values)
    zero = ordered(results, {r.name: r.spec for r in run.records}, resolved,
                   labels=dataset.label_values(), notes=notes)
    zero.failures, zero.seconds = failures, time.perf_counter() - started
    zero.records = run.records
    return zero


def ordered(results: Mapping[str, Any], specs: Mapping[str, str], prior: Prior | None, *,
            labels: Any, notes: Sequence[str] = ()) -> ZeroTraining:
    """The :class:`ZeroTraining` of a pool already scored (``results`` holding
    ``recommended``, combined with ``prior`` when there is one, and ``ncti``): the
    hybrid order of ``recommended`` and the prior."""
    notes = list(notes)
    if prior is None:
        notes.append("no prior: the shortlist follows recommended (NCTI + ETran) alone")
    order = hybrid_order(results["recommended"].ranking,
                         ranking(prior.values) if prior is not None else None)
    return ZeroTraining(order, dict(specs), {m: results[m] for m in METHODS}, prior,
                        notes=notes, samples=len(labels), labels=labels)


def _prior(prior: str | Mapping[str, float] | None, records: Sequence[Any]
           ) -> tuple[Prior | None, str | None]:
    """The prior given (a path or a mapping), else the recorded one; with its note."""
    if isinstance(prior, Mapping):
        from nctk.transfer.recommended import check_prior

        names = [r.name for r in records]
        return Prior(check_prior(prior, names), "given"), None
    return resolve_prior(prior, records)
