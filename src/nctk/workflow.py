"""The rank workflow: from a pool of models to everything nctk says about its ranking.

One path for ``nctk rank``, ``nctk demo``, ``nctk analyze`` and ``nctk select``:

* :func:`rank_feature_files` scores loaded feature files, :func:`rank_model_specs` extracts
  and scores model specs (one unit of work per model, :mod:`nctk.scale`);
* :func:`conclude` turns any scored pool (``{method: MethodResult}``) into a
  :class:`RankingOutcome`: the results in display order (the recommended method first),
  the prior and the ground truth with their evaluations, the flags of scores that do not
  separate models, the notes, the recommendation and the provenance record;
* the outcome gives the JSON document (:meth:`RankingOutcome.to_json`, the contract of
  docs/contract.md plus ``prior``, ``failed``, ``provenance`` and ``guidance``) and the HTML
  report (:meth:`RankingOutcome.write_report`). A caller adds its own top-level JSON keys
  (:meth:`RankingOutcome.add_json`) and report sections (:meth:`RankingOutcome.add_section`).

Nothing here prints: the command line prints the tables and the notes, and shows each
parameter named in a note (``prior=...``) as its own option.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nctk.errors import InputError
from nctk.evaluation import evaluate, undefined_reason
from nctk.io import FeatureFile, load_ground_truth
from nctk.priors import Prior, resolve_prior
from nctk.transfer.guidance import (
    ScoreFlags,
    flag_notes,
    method_order,
    pool_flags,
    recommendation,
    rule_caveats,
)
from nctk.transfer.registry import Method, effective_options, get_method, supported_options

#: The method whose members and prior the notes describe.
RECOMMENDED = "recommended"


@dataclass(frozen=True)
class ReportSection:
    """A section a caller adds to the report: its anchor, heading and HTML body (the body's
    text escaped by the caller, e.g. with :func:`html.escape`)."""

    anchor: str
    heading: str
    html: str


@dataclass
class RankingOutcome:
    """Everything nctk reports about one ranked pool.

    Attributes:
        results: method -> :class:`~nctk.transfer.ranking.MethodResult`, the recommended
            method first.
        labels: (N,) the target labels the pool was scored on.
        options: method -> the options it was given (for the flags and the provenance).
        truth: model -> ground-truth accuracy, or None.
        evaluation: method -> ``evaluate(scores, truth)``, with a ground truth.
        prior: the data-free prior ``recommended`` used, or None.
        prior_evaluation: ``evaluate(prior.values, truth)``, with both.
        flags: method -> saturated and tied scores (methods without any left out).
        notes: plain-language lines for the user (what was skipped, subsampled, flagged...).
        advice: the line saying which method is recommended and why.
        provenance: the :func:`nctk.provenance.provenance` record.
        failed: model spec -> the one-line error of each model that failed.
        random_init: the models whose weights are a random initialisation (``:none``
            specs), flagged in the notes and the JSON.
        extra: further top-level JSON keys, added by the caller.
        sections: further report sections, added by the caller.
    """

    results: dict[str, Any]
    labels: np.ndarray
    options: dict[str, dict[str, Any]]
    truth: dict[str, float] | None
    evaluation: dict[str, dict[str, float]] | None
    prior: Prior | None
    prior_evaluation: dict[str, float] | None
    flags: dict[str, ScoreFlags]
    notes: list[str]
    advice: str
    provenance: dict[str, Any]
    failed: dict[str, str] = field(default_factory=dict)
    random_init: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    sections: list[ReportSection] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        """The ranked models, in pool order."""
        return list(next(iter(self.results.values())).scores) if self.results else []

    def add_json(self, key: str, value: Any) -> None:
        """Add a top-level key to :meth:`to_json` (the contract's keys are refused)."""
        if key in CONTRACT_KEYS:
            raise ValueError(f"{key!r} is a key of the JSON contract")
        self.extra[key] = value

    def add_section(self, anchor: str, heading: str, html: str) -> None:
        """Add a section to the report, shown before nctk's own (``html`` escaped by the
        caller; figures embedded with :func:`nctk.report.html.figure_html`)."""
        self.sections.append(ReportSection(anchor, heading, html))

    def to_json(self) -> dict[str, Any]:
        """The JSON document: ``methods`` and, with a ground truth, ``evaluation`` (the
        contract), ``prior``, ``failed``, ``random_init``, ``provenance``, ``guidance`` and
        the added keys."""
        data: dict[str, Any] = {"methods": {n: r.to_json() for n, r in self.results.items()}}
        if self.evaluation is not None:
            data["evaluation"] = {name: dict(ev) for name, ev in self.evaluation.items()}
        if self.prior is not None:
            data["prior"] = self.prior.to_json()
            if self.prior_evaluation is not None:
                data["prior"]["evaluation"] = dict(self.prior_evaluation)
        if self.failed:
            data["failed"] = dict(self.failed)
        if self.random_init:
            data["random_init"] = list(self.random_init)
        data["provenance"] = self.provenance
        data["guidance"] = {"recommended": self.advice,
                            "flags": {m: f.to_json() for m, f in self.flags.items()},
                            "notes": list(self.notes)}
        return data | self.extra

    def write_report(self, path: str | os.PathLike, *, title: str,
                     layers: Mapping[str, Any] | None = None,
                     notes: Sequence[str] | None = None) -> Path:
        """The HTML report (:func:`nctk.report.write_report`) with the added sections;
        ``notes`` replace the outcome's notes at the top of the page when given."""
        from nctk.report import write_report

        return write_report(
            path, title=title, methods=self.results, evaluation=self.evaluation,
            truth=self.truth, layers=layers, flags=self.flags, recommendation=self.advice,
            notes=self.notes if notes is None else notes, provenance=self.provenance,
            prior=self.prior, prior_evaluation=self.prior_evaluation,
            sections=[(s.anchor, s.heading, s.html) for s in self.sections])


#: The top-level keys of the JSON contract and of nctk's own additions.
CONTRACT_KEYS = ("methods", "evaluation", "prior", "failed", "random_init", "provenance",
                 "guidance")


def method_options(method: str | Method, *, seed: int | None = None,
                   ncti_weights: Mapping[str, float] | None = None,
                   prior: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The options ``method`` takes among a run's: ``seed`` where its function has a
    ``seed`` parameter, NCTI's term weights and the prior where its ``combine_options``
    name them."""
    candidates: dict[str, Any] = dict(ncti_weights or {})
    if seed is not None:
        candidates["seed"] = seed
    if prior is not None:
        candidates["prior"] = prior
    return supported_options(method, candidates)


def conclude(results: Mapping[str, Any], *, labels: Any,
             options: Mapping[str, Mapping[str, Any]] | None = None,
             prior: Prior | None = None, ground_truth: Any = None,
             notes: Sequence[str] = (), source: Mapping[str, Any] | None = None,
             seed: int | None = None, argv: Sequence[str] | None = None,
             failed: Mapping[str, str] | None = None,
             random_init: Sequence[str] = (),
             shapes: Mapping[str, tuple[int, int]] | None = None) -> RankingOutcome:
    """The :class:`RankingOutcome` of a scored pool.

    Args:
        results: method -> MethodResult over the same models.
        labels: (N,) the target labels the pool was scored on.
        options: method -> the options it was given.
        prior: the prior ``recommended`` ran with (None: a note says it ran without).
        ground_truth: ``{model: accuracy}``, a JSON file of it, or None.
        notes: notes of the scoring so far (kept first).
        source: where the features came from, for the provenance: ``data`` (the dataset
            spec), ``feature_files``, ``models`` (name -> spec), ``per_class_draw``.
        seed, argv: the run's seed and command line, for the provenance.
        failed: model spec -> error of each model that failed.
        random_init: the models whose weights are a random initialisation (flagged).
        shapes: model -> (samples, feature dimension), for the advice's caveats.
    """
    from nctk.provenance import provenance

    results = {name: results[name] for name in method_order(results)}
    options = {name: dict((options or {}).get(name, {})) for name in results}
    models = list(next(iter(results.values())).scores) if results else []
    truth = _ground_truth(ground_truth, models)
    evaluation = ({n: evaluate(r.scores, truth) for n, r in results.items()}
                  if truth is not None and results else None)
    labels = np.asarray(labels)
    flags = pool_flags(results, num_classes=len(set(labels.tolist())), options=options)
    source = dict(source or {})
    extra = ({"per_class_draw": source["per_class_draw"]} if "per_class_draw" in source
             else None)
    record = provenance(labels=labels, data=source.get("data"),
                        feature_files=source.get("feature_files"), models=source.get("models"),
                        seed=seed, argv=argv, extra=extra, method_options={
                            n: effective_options(n, o | method_options(
                                n, prior=prior.values if prior else None))
                            for n, o in options.items()})
    return RankingOutcome(
        results=results, labels=labels, options=options, truth=truth, evaluation=evaluation,
        prior=prior, prior_evaluation=(evaluate(prior.values, truth)
                                       if prior is not None and truth is not None else None),
        flags=flags, advice=recommendation(results, caveats=rule_caveats(
            models=len(models), prior=prior is not None,
            dims=[d for _, d in (shapes or {}).values()]) if RECOMMENDED in results else ()),
        provenance=record,
        notes=[*random_init_notes(random_init), *notes, *member_notes(results, prior),
               *flag_notes(flags), *evaluation_notes(results, truth)],
        failed=dict(failed or {}), random_init=list(random_init))


def _ground_truth(ground_truth: Any, models: Sequence[str]) -> dict[str, float] | None:
    """A ground-truth mapping or file, checked to cover ``models``."""
    if ground_truth is None:
        return None
    if isinstance(ground_truth, Mapping):
        missing = [m for m in models if m not in ground_truth]
        if missing:
            raise InputError(f"no value for model(s) {missing}", parameter="ground_truth")
        return {m: float(ground_truth[m]) for m in models}
    return load_ground_truth(ground_truth, models)


def rank_feature_files(pool: Sequence[FeatureFile], methods: Sequence[Method], *,
                       seed: int = 0, ncti_weights: Mapping[str, float] | None = None,
                       prior: str | os.PathLike | Prior | None = None,
                       ground_truth: Any = None, optional_inputs: bool = False,
                       source: Mapping[str, Any] | None = None,
                       argv: Sequence[str] | None = None) -> RankingOutcome:
    """Score loaded feature files with ``methods`` and conclude.

    Args:
        pool: the feature files, one per model, on the same labelled samples.
        methods: the methods to run.
        seed, ncti_weights: options of the methods that take them.
        prior: a :class:`~nctk.priors.Prior`, a JSON file ``{model: value}``, or None for
            the source accuracy every file records (when all do).
        ground_truth: as for :func:`conclude`.
        optional_inputs: leave out, with a note, the methods that need source logits when
            a file lacks them (for "every method"), instead of failing.
        source: where the features came from, for the provenance (see :func:`conclude`;
            default: the feature files).
    """
    from nctk.transfer.ranking import rank_pool_methods

    check_labels(pool)
    prior, prior_note = _prior(prior, pool)
    methods, notes = drop_unrunnable(methods, pool, optional_inputs)
    given = {m.name: method_options(m, seed=seed, ncti_weights=ncti_weights) for m in methods}
    results = rank_pool_methods(pool, methods, {
        m.name: method_options(m, seed=seed, ncti_weights=ncti_weights,
                               prior=prior.values if prior else None) for m in methods})
    notes += [prior_note] if prior_note else []
    notes += subsample_notes(methods, pool[0].features.shape[0], seed)
    shapes = {f.name: f.features.shape for f in pool}
    notes += shape_notes(shapes)
    return conclude(results, labels=pool[0].labels, options=given, prior=prior,
                    ground_truth=ground_truth, notes=notes, seed=seed, argv=argv, shapes=shapes,
                    random_init=[f.name for f in pool if f.random_init],
                    source=source or {"feature_files": [f.path or f.name for f in pool]})


def _prior(prior: str | os.PathLike | Prior | None, pool: Sequence[Any]
           ) -> tuple[Prior | None, str | None]:
    """(prior, note): a Prior as it is, else :func:`nctk.priors.resolve_prior`."""
    if isinstance(prior, Prior):
        return prior, None
    return resolve_prior(prior, pool)


def rank_model_specs(models: Sequence[str], dataset: Any, methods: Sequence[Method], *,
                     executor: Any, extract: Any = None, seed: int = 0,
                     ncti_weights: Mapping[str, float] | None = None,
                     prior: str | os.PathLike | Prior | None = None, ground_truth: Any = None,
                     optional_inputs: bool = False, progress: bool = True,
                     per_class: int | None = None,
                     argv: Sequence[str] | None = None) -> RankingOutcome:
    """Check, extract and score model specs (one unit of work per model, through
    ``executor``: see :func:`nctk.scale.rank_models`) and conclude.

    Every model is loaded and tried on one image first (:func:`nctk.extract.preflight.
    check_models`). The prior (``prior``, else the source accuracy every model's weights
    record) is known once the models are loaded: ``recommended`` is combined with it then,
    from the per-model terms. Models that fail are in ``failed``; an outcome without
    results means every model failed.

    Args:
        models: model specs. dataset: the (subsampled) target
            :class:`~nctk.extract.LabelledImages`. extract: :class:`nctk.scale.ExtractSettings`.
        per_class: the per-class draw the dataset was subsampled with, for the record.
        Others: as for :func:`rank_feature_files`.
    """
    from nctk.extract.preflight import check_models
    from nctk.scale import ExtractSettings, rank_models

    settings = extract or ExtractSettings()
    given = {m.name: method_options(m, seed=seed, ncti_weights=ncti_weights) for m in methods}
    with executor:  # a Ray executor checks the models as tasks, where they will run
        check_models(models, dataset, image_size=settings.image_size, executor=executor,
                     trust_checkpoint=settings.trust_checkpoint, parts=settings.parts)
        run = rank_models(models, dataset, list(given), executor=executor, extract=settings,
                          options=given, optional_inputs=optional_inputs, progress=progress)
    prior, note = _prior(prior, run.records)
    if prior is not None and RECOMMENDED in run.results:
        _combine_with_prior(run, prior)
    shapes = {r.name: (r.samples, r.dim) for r in run.records}
    notes = [*run.notes, *([note] if note else []), *shape_notes(shapes)]
    source = {"data": dataset.spec, "models": {r.name: r.spec for r in run.records},
              "per_class_draw": per_class}
    return conclude(run.results, labels=dataset.label_values(), options=given, prior=prior,
                    ground_truth=ground_truth if run.results else None, notes=notes,
                    source=source, seed=seed, argv=argv, shapes=shapes,
                    failed={r.spec: r.error for r in run.failures},
                    random_init=[r.name for r in run.records if r.random_init])


def _combine_with_prior(run: Any, prior: Prior) -> None:
    """``recommended`` of a scaled run, combined again with the prior."""
    from nctk.transfer.ranking import combine_terms

    run.results[RECOMMENDED] = combine_terms(
        get_method(RECOMMENDED), {r.name: r.terms[RECOMMENDED] for r in run.records},
        run.results[RECOMMENDED].seconds, prior=prior.values)


def check_labels(pool: Sequence[FeatureFile]) -> None:
    """The shared labels are usable (ints or strings, >= 2 classes); names the first file."""
    from nctk.validation import encode_labels

    first = pool[0]
    try:
        encode_labels(first.labels, first.features.shape[0], "labels")
    except InputError as err:
        raise err.located(file=first.path or first.name) from None


def drop_unrunnable(methods: Sequence[Method], pool: Sequence[FeatureFile],
                    optional_inputs: bool) -> tuple[list[Method], list[str]]:
    """With ``optional_inputs``, leave out the methods needing source logits when a file
    lacks them (with a note). Otherwise they are kept, so they fail with a clear error."""
    if not optional_inputs or all(f.source_logits is not None for f in pool):
        return list(methods), []
    kept = [m for m in methods if m.input != "source_logits"]
    skipped = [m.name for m in methods if m.input == "source_logits"]
    notes = [f"skipped {', '.join(skipped)}: some feature files have no source_logits"
             ] if skipped else []
    return kept, notes


def random_init_notes(models: Sequence[str]) -> list[str]:
    """A note naming the models whose weights are a random initialisation, when any."""
    if not models:
        return []
    return [f"randomly initialised weights (a ':none' spec), not pre-trained: "
            f"{', '.join(models)}; their figures describe random features"]


def subsample_notes(methods: Sequence[Method], samples: int, seed: int) -> list[str]:
    """One note per method that scored a subsample (its ``max_samples`` default < N)."""
    notes = []
    for meth in methods:
        cap = inspect.signature(meth.score).parameters.get("max_samples")
        if cap is not None and isinstance(cap.default, int) and samples > cap.default:
            notes.append(f"{meth.name}: scored a stratified subsample of {cap.default:,} of "
                         f"the {samples:,} samples (seed {seed})")
    return notes


def shape_notes(shapes: Mapping[str, tuple[int, int]]) -> list[str]:
    """A note naming the models whose features have more dimensions than the pool has
    samples: their covariances are singular, so their scores lean on each method's
    regularisation (and on how many samples there are)."""
    wide = {name: int(d) for name, (n, d) in shapes.items() if d > n}
    if not wide:
        return []
    samples = next(iter(shapes.values()))[0]
    listed = ", ".join(f"{name} (d = {d:,})" for name, d in list(wide.items())[:4])
    more = f" and {len(wide) - 4} more" if len(wide) > 4 else ""
    return [f"fewer samples ({samples:,}) than feature dimensions: {listed}{more}; their "
            "covariances are singular, so their scores rest on each method's "
            "regularisation (more samples make them firmer)"]


def member_notes(results: Mapping[str, Any], prior: Prior | None) -> list[str]:
    """For ``recommended``: which members it averaged, and where its prior came from or
    that it ran without one."""
    if RECOMMENDED not in results:
        return []
    from nctk.transfer.recommended import members_used, rule_for

    words = rule_for(prior).in_words(members_used(results[RECOMMENDED].components))
    return [f"{RECOMMENDED}: {words}; {prior_phrase(prior)}"]


def prior_phrase(prior: Prior | None) -> str:
    """Where ``recommended``'s prior came from, or that it ran without one and how to give
    one."""
    if prior is None:
        return ("no prior (give prior=PRIOR.json, or extract torchvision models, whose "
                "weights record their ImageNet top-1)")
    return f"prior = {prior.source}"


def evaluation_notes(results: Mapping[str, Any], truth: Mapping[str, float] | None
                     ) -> list[str]:
    """One line per method whose correlations are undefined (NaN), saying why."""
    if truth is None:
        return []
    notes = []
    for name, result in results.items():
        reason = undefined_reason(result.scores, truth)
        if reason:
            notes.append(f"{name}: correlations are NaN: {reason}")
    return notes
