"""The driver of a pool run: one unit of work per model through an executor, then the
ranking (pool-relative methods combined here, from every model's components).

    from nctk.scale import ExtractSettings, LoopExecutor, RayExecutor, rank_models
    with RayExecutor(gpus_per_task=0.25) as executor:
        run = rank_models(specs, dataset, ["ncti", "logme"], executor=executor,
                          extract=ExtractSettings(cache_dir="~/.cache/nctk"))
    run.results["ncti"].ranking, run.failures

Records stream back as each model finishes (a progress bar shows models done / total and
the current leader); the result is assembled in the order the models were given, so it is
the same whichever executor ran the units and in whatever order they finished.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nctk.errors import InputError
from nctk.extract.datasets import LabelledImages
from nctk.extract.models import ModelAdapter
from nctk.io import save_feature_file
from nctk.progress import progress_bar
from nctk.scale.unit import (
    ExtractSettings,
    ModelRecord,
    PoolJob,
    ScoreSettings,
    describe_model,
    run_model,
)
from nctk.transfer.ranking import MethodResult, combine_terms
from nctk.transfer.registry import get_method

Model = str | ModelAdapter


@dataclass
class PoolRanking:
    """The outcome of :func:`rank_models`.

    Attributes:
        results: method -> :class:`~nctk.transfer.ranking.MethodResult` over the models
            that succeeded (empty when none did).
        records: the successful models' records, in the order given.
        failures: the failed models' records (``error`` set), in the order given.
        notes: methods left out and why.
    """

    results: dict[str, MethodResult]
    records: list[ModelRecord]
    failures: list[ModelRecord]
    notes: list[str] = field(default_factory=list)


def run_models(models: Sequence[Model], job: PoolJob, executor: Any, *,
               progress: bool = True, leader: tuple[str, Mapping[str, Any]] | None = None
               ) -> Iterator[tuple[int, ModelRecord]]:
    """Run :func:`~nctk.scale.unit.run_model` for every model; yield ``(position, record)``
    as each finishes (a failure is a record with ``error`` set).

    With a remote executor the dataset is packed (:meth:`LabelledImages.packed`) and the
    per-image progress bars are off. ``leader`` = (method, its options) shows the current
    best model in the progress bar.
    """
    if getattr(executor, "remote", False):
        job = dataclasses.replace(job, dataset=job.dataset.packed(),
                                  extract=dataclasses.replace(job.extract, progress=False))
    finished: list[ModelRecord] = []
    failed = 0
    bar = progress_bar(total=len(models), unit="model", desc="models", enabled=progress)
    try:
        for outcome in executor.map_unordered(run_model, job, list(models)):
            record = outcome.value if outcome.error is None else ModelRecord(
                spec=describe_model(models[outcome.index]), error=outcome.error)
            if record.ok:
                finished.append(record)
            else:
                failed += 1
            bar.update(1)
            bar.set_postfix_str(_status(finished, failed, leader), refresh=True)
            yield outcome.index, record
    finally:
        bar.close()


def _status(finished: Sequence[ModelRecord], failed: int,
            leader: tuple[str, Mapping[str, Any]] | None) -> str:
    parts = []
    if leader is not None:
        best = best_model(finished, *leader)
        if best is not None:
            parts.append(f"best {best[0]} ({leader[0]} {best[1]:.4g})")
    if failed:
        parts.append(f"{failed} failed")
    return ", ".join(parts)


def best_model(records: Sequence[ModelRecord], method: str,
               options: Mapping[str, Any] | None = None) -> tuple[str, float] | None:
    """The leading model among ``records`` for ``method`` and its score (a pool-relative
    method is combined over these records only); None without a finite score yet."""
    terms = {r.name: r.terms[method] for r in records
             if r.ok and r.terms.get(method) is not None}
    if not terms:
        return None
    result = combine_terms(get_method(method), terms, 0.0, **(options or {}))
    best = result.ranking[0]
    score = result.scores[best]
    return None if math.isnan(score) else (best, score)


def rank_models(models: Sequence[Model], dataset: LabelledImages, methods: Sequence[str], *,
                executor: Any, extract: ExtractSettings | None = None,
                options: Mapping[str, Mapping[str, Any]] | None = None,
                optional_inputs: bool = False, progress: bool = True) -> PoolRanking:
    """Extract, score and rank ``models`` on ``dataset`` with each of ``methods``.

    Args:
        models: model specs (or adapters), at least one.
        dataset: the (already subsampled) target dataset, shared by every model.
        methods: registry names.
        executor: a :class:`~nctk.scale.executors.LoopExecutor` or an entered
            :class:`~nctk.scale.executors.RayExecutor`.
        extract: extraction settings (cache, device, layers, ...).
        options: method -> options (seed; NCTI's weights are used when combining).
        optional_inputs: leave out, with a note, the methods whose input (source logits)
            some model lacks (``--method all``), instead of failing those models.
        progress: show the progress bar.

    Raises:
        InputError: the models that succeeded do not share their labels.
    """
    options = {m: dict((options or {}).get(m, {})) for m in methods}
    job = PoolJob(dataset, extract or ExtractSettings(),
                  ScoreSettings(tuple(methods), options, optional_inputs))
    leader = (methods[0], options[methods[0]]) if methods else None
    records = _in_order(models, run_models(models, job, executor, progress=progress,
                                           leader=leader))
    ok, failures = _split(records)
    if not ok:
        return PoolRanking({}, [], failures)
    _check_labels(ok)
    runnable = [m for m in methods if all(r.terms.get(m) is not None for r in ok)]
    skipped = [m for m in methods if m not in runnable]
    notes = [f"skipped {', '.join(skipped)}: some models have no source_logits"
             ] if skipped else []
    results = {}
    for name in runnable:
        seconds = sum(r.seconds.get(name, 0.0) for r in ok)
        results[name] = combine_terms(get_method(name), {r.name: r.terms[name] for r in ok},
                                      seconds, **options[name])
    return PoolRanking(results, ok, failures, notes)


def extract_models(models: Sequence[Model], dataset: LabelledImages, out_dir: str | Path, *,
                   executor: Any, extract: ExtractSettings | None = None,
                   progress: bool = True) -> Iterator[tuple[ModelRecord, Path | None]]:
    """Extract every model and write ``out_dir/<name>.npz`` as each finishes; yields
    ``(record, path)``, or ``(failed record, None)``. A second model with a name already
    written fails (feature files are named after their model)."""
    job = PoolJob(dataset, extract or ExtractSettings(), keep_features=True)
    written: set[str] = set()
    for _, record in run_models(models, job, executor, progress=progress):
        if record.ok and record.name in written:
            record = ModelRecord(spec=record.spec, error=f"two models are named "
                                 f"'{record.name}'; give distinct names (feature files are "
                                 "named after their model)")
        if not record.ok:
            yield record, None
            continue
        result = record.features
        path = save_feature_file(Path(out_dir) / f"{record.name}.npz", result.features,
                                 result.labels, source_logits=result.source_logits,
                                 layers=result.layers, source_accuracy=result.source_accuracy,
                                 random_init=result.random_init)
        written.add(record.name)
        yield record, path


def _in_order(models: Sequence[Model], stream: Iterator[tuple[int, ModelRecord]]
              ) -> list[ModelRecord]:
    records: list[ModelRecord | None] = [None] * len(models)
    for index, record in stream:
        records[index] = record
    return [r for r in records if r is not None]


def _split(records: Sequence[ModelRecord]) -> tuple[list[ModelRecord], list[ModelRecord]]:
    """Successful and failed records; a repeated name fails all but its first model."""
    ok: list[ModelRecord] = []
    failures: list[ModelRecord] = []
    names: set[str] = set()
    for record in records:
        if record.ok and record.name in names:
            record = ModelRecord(spec=record.spec, error=f"two models are named "
                                 f"'{record.name}'; give distinct names")
        (ok if record.ok else failures).append(record)
        if record.ok:
            names.add(record.name)
    return ok, failures


def _check_labels(records: Sequence[ModelRecord]) -> None:
    first = records[0]
    for other in records[1:]:
        if other.labels_digest != first.labels_digest:
            raise InputError(f"its labels differ from those of '{first.name}'; all models of "
                             "a pool must be scored on the same samples in the same order",
                             file=other.name, array="labels")
