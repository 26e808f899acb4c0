"""``nctk.select``: pick the model to fine-tune under a compute budget (docs/select.md).

Two phases. (1) Zero training: every model is scored from its (cached) features and the
pool is put in the hybrid order of ``recommended`` and the data-free prior
(:mod:`nctk.select.zero`). (2) Fine-tuning: the first n models of that order, n bought by
the budget (:mod:`nctk.select.budget`), go through successive halving with real
fine-tuning (:mod:`nctk.select.schedule`), each rung a prefix of one E-epoch run
(:mod:`nctk.select.trials`); the pick is the best at the last rung, and it has had its full
E-epoch fine-tuning. Everything is written to a resumable state as it happens
(:mod:`nctk.select.state`).

    prepared = prepare(models, "imagefolder:train/", budget="3",
                       config=TrainConfig(epochs=10, val_fraction=0.2), out_dir="sel")
    prepared.plan                     # what the budget buys, before any training
    selection = prepared.run()        # selection.pick, selection.schedule.rows
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nctk.errors import InputError
from nctk.finetune.methods import METHODS
from nctk.finetune.train import TrainConfig
from nctk.select.budget import Budget, Plan, parse_budget, plan
from nctk.select.schedule import Failure, Schedule, successive_halving
from nctk.select.state import STATE_NAME, SelectState
from nctk.select.trials import TrainJob, Trial, run_trial
from nctk.select.zero import ZeroTraining, zero_training

#: The pick's fine-tuned weights in the output folder.
PICK_NAME = "pick.pt"
#: The models' checkpoint folders in the output folder.
RUNS_NAME = "runs"
#: How rung scores tie (see :func:`prepare`), and the default.
TIES = ("exact", "noise")
DEFAULT_TIES = "exact"
#: ``nctk select``'s validation share (``finetune``'s own default is 0.1).
DEFAULT_CONFIG = TrainConfig(epochs=10, val_fraction=0.2)


@dataclass
class Selection:
    """The outcome of a selection.

    Attributes:
        pick: the chosen model's name; ``spec`` its spec.
        schedule: the rung table (:class:`~nctk.select.schedule.Schedule`).
        plan: what the budget bought.
        zero: the zero-training phase.
        curves: model -> validation accuracy of every epoch it was trained.
        cost_fraction: (zero-training + fine-tuning model-epochs) / brute force (M x E).
        seconds: wall-clock seconds of each phase.
        weights: the pick's fine-tuned weights (None without an output folder).
        notes: failures and other remarks.
    """

    pick: str
    spec: str
    schedule: Schedule
    plan: Plan
    zero: ZeroTraining
    curves: dict[str, list[float]]
    cost_fraction: float
    seconds: dict[str, float]
    weights: Path | None = None
    notes: list[str] = field(default_factory=list)
    val_samples: int = 0

    def to_json(self) -> dict[str, Any]:
        """The selection's keys; after the rank workflow's document of the zero-training
        phase (``methods``, ``prior``, ``provenance``, ``guidance``) when there is one."""
        ranked = self.zero.outcome.to_json() if self.zero.outcome is not None else {}
        return ranked | self._keys()

    def _keys(self) -> dict[str, Any]:
        return {"pick": self.pick, "spec": self.spec, "cost_fraction": self.cost_fraction,
                "cost": {"zero_training_epochs": self.plan.zero_epochs,
                         "fine_tuning_epochs": self.schedule.epochs_trained,
                         "brute_force_epochs": self.plan.brute_force_epochs,
                         "zero_training_counted": True},
                "plan": self.plan.to_json(), "schedule": self.schedule.to_json(),
                "zero_training": self.zero.to_json(), "curves": self.curves,
                "val_samples": self.val_samples, "seconds": self.seconds,
                "weights": str(self.weights) if self.weights else None, "notes": self.notes}


@dataclass
class Prepared:
    """A selection scored and planned, ready to train (:meth:`run`)."""

    zero: ZeroTraining
    plan: Plan
    job: TrainJob
    state: SelectState
    executor: Any
    out_dir: Path | None
    seconds: dict[str, float]
    resumed: int = 0
    ties: str = "exact"
    #: the temporary folder of the checkpoints without ``out_dir`` (removed with this)
    scratch: Any = field(default=None, repr=False)

    @property
    def shortlist(self) -> list[str]:
        return self.zero.order[:self.plan.shortlist]

    def run(self) -> Selection:
        """Successive halving on the shortlist, then the pick's weights (module docstring)."""
        started = time.perf_counter()
        from nctk.select.budget import binomial_margin
        from nctk.select.trials import validation_size

        margin = binomial_margin(validation_size(self.job)) if self.ties == "noise" else None
        schedule = successive_halving(self.shortlist, self.plan.rungs, self.plan.eta,
                                      self._evaluate, margin=margin)
        self.seconds["fine_tuning"] = time.perf_counter() - started
        return self.finish(schedule)

    def finish(self, schedule: Schedule) -> Selection:
        """The :class:`Selection` of a finished ``schedule``: curves from the models'
        checkpoints, the pick's weights saved, the cost."""
        from nctk.finetune.train import checkpoint_history
        from nctk.select.trials import run_dir, validation_size

        if schedule.pick is None:
            reasons = "; ".join(f"{r.model}: {r.failure}" for r in schedule.rows[:3])
            raise InputError(f"every candidate failed ({reasons})", parameter="models")
        weights = (save_pick(self.job, schedule.pick, self.zero.specs[schedule.pick],
                             self.out_dir / PICK_NAME) if self.out_dir is not None else None)
        curves = {row.model: [h["val_accuracy"] for h in
                              checkpoint_history(run_dir(self.job, row.model))][:row.epochs]
                  for row in schedule.rows}
        notes = self.zero.notes + [f"{r.model} failed at rung {r.dropped_at + 1} and was "
                                   f"dropped: {r.failure}" for r in schedule.rows if r.failure]
        spent = self.plan.zero_epochs + schedule.epochs_trained
        return Selection(schedule.pick, self.zero.specs[schedule.pick], schedule, self.plan,
                         self.zero, {m: c for m, c in curves.items() if c},
                         spent / self.plan.brute_force_epochs, dict(self.seconds), weights,
                         notes, validation_size(self.job))

    def _evaluate(self, epoch: int, models: Sequence[str]) -> dict[str, float | Failure]:
        """Train the models not yet at ``epoch`` (through the executor), record each as it
        ends; every model's score or failure at ``epoch``."""
        todo = [Trial(m, self.zero.specs[m], epoch) for m in models
                if not self.state.done(m, epoch)]
        for outcome in self.executor.map_unordered(run_trial, self.job, todo):
            trial = todo[outcome.index]
            self.state.record(trial.name, epoch, outcome.value if outcome.error is None
                              else Failure(outcome.error))
        scores: dict[str, float | Failure] = {}
        for model in models:
            outcome = self.state.outcome(model, epoch)
            scores[model] = outcome if isinstance(outcome, Failure) else outcome.score
        return scores


def save_pick(job: TrainJob, name: str, spec: str, path: Path) -> Path:
    """Write the pick's fine-tuned network (its best-validation weights, the state dict of
    :class:`~nctk.finetune.methods.FineTuneNet`) with what it is, atomically."""
    import torch

    from nctk.finetune.data import dataset_labels
    from nctk.io import atomic_path
    from nctk.select.trials import train_to

    result = train_to(job, spec, name, None)  # at epoch E already: loads, trains nothing
    classes = sorted({v.item() if hasattr(v, "item") else v
                      for v in dataset_labels(job.train)})
    payload = {"format": "nctk-select-pick/1", "model": name, "spec": spec,
               "method": result.method, "unit": result.unit, "classes": classes,
               "epochs": job.config.epochs, "val_accuracy": result.val_accuracy,
               "best_epoch": result.best_epoch, "state_dict": result.network.state_dict()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def check_settings(method: str, unit: int | str | None, eta: int, config: TrainConfig,
                   has_val_data: bool, ties: str = DEFAULT_TIES) -> None:
    """Raise :class:`InputError` for a method, unit, eta, tie rule or split that cannot
    select."""
    if ties not in TIES:
        raise InputError(f"unknown tie rule {ties!r}; choose one of {', '.join(TIES)}",
                         parameter="ties")
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}",
                         parameter="method")
    if method in ("layer", "scl") and unit is None:
        raise InputError(f"method {method!r} needs a unit", parameter="unit")
    if unit == "auto":
        raise InputError("select tunes one unit of every model: give its number or name "
                         "('auto' probes units of one model: nctk finetune)", parameter="unit")
    if method in ("lp", "full") and unit is not None:
        raise InputError(f"method {method!r} takes no unit", parameter="unit")
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise InputError(f"eta must be an integer >= 2, got {eta!r}", parameter="eta")
    config.check()
    if not has_val_data and config.val_fraction == 0:
        raise InputError("selection scores models on validation data: give validation data "
                         "or a validation fraction > 0", parameter="val_fraction")


def check_split(train: Any, val: Any, config: TrainConfig) -> tuple[int, int]:
    """(training, validation) sizes; InputError when a class cannot be on both sides of
    the stratified split, or explicit validation data has other classes."""
    import numpy as np

    from nctk.finetune.data import encode_dataset, encode_validation
    from nctk.sampling import train_validation_split

    _, encoded = encode_dataset(train, "training data")
    if val is not None:
        if (val.spec, val.identity) == (train.spec, train.identity):
            raise InputError("the validation data are the training data", parameter="val_data")
        encode_validation(val, encoded.classes)
        return len(train), len(val)
    train_idx, val_idx = train_validation_split(encoded.codes, config.val_fraction,
                                                config.seed)
    for side, idx in (("validation", val_idx), ("training", train_idx)):
        counts = np.bincount(encoded.codes[idx], minlength=encoded.num_classes)
        if counts.min() == 0:
            small = int(np.argmin(counts))
            raise InputError(f"class '{encoded.classes[small]}' has "
                             f"{int(encoded.counts[small])} images, too few for a "
                             f"validation fraction of {config.val_fraction:g} (its "
                             f"{side} share is empty)", array="training data")
    return len(train_idx), len(val_idx)


def epoch_seconds(job: TrainJob, specs: Mapping[str, str], train: int, val: int
                  ) -> dict[str, float]:
    """Seconds of one epoch of every model, measured on real training steps
    (:func:`nctk.finetune.estimate.measure`) on this machine."""
    from nctk.finetune import estimate
    from nctk.select.trials import load

    run = estimate.Run(job.method, job.unit, 1, train, val)
    seconds = {}
    for name, spec in specs.items():
        adapter, data, _, unit_names = load(job, spec)
        timings = estimate.measure(adapter.module, data, [run], job.config, unit_names)
        seconds[name] = estimate.epoch_seconds(run, timings,
                                               batch_size=job.config.batch_size)
    return seconds


def measured_plan(budget: Budget, zero: ZeroTraining, job: TrainJob, *, eta: int,
                  samples: int, train: int, val: int) -> Plan:
    """The plan with the measured seconds per epoch of the average model: of the shortlist
    for a budget in runs (the plan does not depend on them), of the whole pool for a
    wall-time budget (which it turns into model-epochs)."""
    sizes = dict(pool=len(zero.order), epochs=job.config.epochs, eta=eta, samples=samples,
                 train=train, val=val)
    chosen = plan(budget, **sizes) if budget.runs is not None else None
    timed = zero.order[:chosen.shortlist] if chosen is not None else zero.order
    timing = epoch_seconds(job, {m: zero.specs[m] for m in timed}, train, val)
    mean = sum(timing.values()) / len(timing)
    if chosen is not None:
        return dataclasses.replace(chosen, epoch_seconds=mean)
    return plan(budget, **sizes, epoch_seconds=mean)


def _dataset(data: Any, split: str | None) -> Any:
    from nctk.extract import load_dataset

    return load_dataset(data, split=split) if isinstance(data, str) else data


def identity(specs: Sequence[str], train: Any, val: Any, job: TrainJob, eta: int,
             budget: Budget, prior: Any, ties: str) -> dict[str, Any]:
    """What a resumed selection must share with the interrupted one."""
    config = dataclasses.asdict(job.config)
    for volatile in ("progress", "device", "amp", "eval_batch_size"):
        config.pop(volatile)
    return {"models": list(specs), "data": [train.spec, train.identity, len(train)],
            "validation": [val.spec, val.identity, len(val)] if val is not None else None,
            "method": job.method, "unit": job.unit, "unit_names": job.unit_names,
            "config": config, "eta": eta, "budget": dataclasses.asdict(budget),
            "prior": prior if isinstance(prior, str | None) else dict(prior),
            "image_size": job.image_size, "ties": ties}


def _train_job(train: Any, val: Any, config: TrainConfig, *, method: str,
               unit: int | str | None, unit_names: Sequence[str] | None, runs: Path,
               image_size: int | None, trust_checkpoint: bool, remote: bool) -> TrainJob:
    """The shared settings of every run (datasets packed for a remote executor)."""
    return TrainJob(train.packed() if remote else train,
                    (val.packed() if remote else val) if val is not None else None,
                    method, unit, tuple(unit_names) if unit_names else None,
                    dataclasses.replace(config, progress=config.progress and not remote),
                    str(runs.resolve()), image_size, trust_checkpoint)


def _zero_phase(models: Sequence[str], train: Any, job: TrainJob, *, executor: Any,
                prior: Any, cache_dir: str | None, progress: bool,
                argv: Sequence[str] | None) -> ZeroTraining:
    """Every model tried on one image, then scored without training (the rank workflow)."""
    from nctk.scale import ExtractSettings

    return zero_training(models, train, executor=executor, extract=ExtractSettings(
        image_size=job.image_size, device=job.config.device, cache_dir=cache_dir,
        trust_checkpoint=job.trust_checkpoint), prior=prior, progress=progress,
        seed=job.config.seed, argv=argv)


def prepare(models: Sequence[str], data: Any, *, budget: str | float,
            config: TrainConfig | None = None, eta: int = 3, method: str = "full",
            unit: int | str | None = None, unit_names: Sequence[str] | None = None,
            val_data: Any = None, prior: str | Mapping[str, float] | None = None,
            image_size: int | None = None, trust_checkpoint: bool = False,
            out_dir: str | Path | None = None, executor: Any = None,
            cache_dir: str | None = None, progress: bool = False,
            zero: ZeroTraining | None = None, timed: bool = True,
            argv: Sequence[str] | None = None, ties: str = DEFAULT_TIES) -> Prepared:
    """Check, score and plan a selection; nothing is trained yet (see :func:`select`).
    ``zero``: the zero-training phase when the caller has scored the pool already (as
    ``nctk demo`` has); it is then not run again. ``timed=False`` skips measuring the
    seconds per epoch for a budget in runs (the plan's expected time is then unknown).
    ``argv``: the command line, for the provenance. ``ties``: ``exact`` (only equal rung
    scores tie) or ``noise`` (scores within the standard error of a difference of two
    validation accuracies tie); ties go to the better zero-training rank."""
    from nctk.scale import LoopExecutor

    config = config or DEFAULT_CONFIG
    check_settings(method, unit, eta, config, val_data is not None, ties)
    parsed = parse_budget(budget)
    train, val = _dataset(data, "train"), (_dataset(val_data, None)
                                           if val_data is not None else None)
    n_train, n_val = check_split(train, val, config)
    if parsed.runs is not None:  # a budget too small fails before any model loads
        plan(parsed, pool=len(models), epochs=config.epochs, eta=eta, samples=len(train),
             train=n_train, val=n_val)
    executor = executor or LoopExecutor()
    out = Path(out_dir) if out_dir is not None else None
    scratch = tempfile.TemporaryDirectory(prefix="nctk-select-") if out is None else None
    runs = (out if out is not None else Path(scratch.name)) / RUNS_NAME
    job = _train_job(train, val, config, method=method, unit=unit, unit_names=unit_names,
                     runs=runs, image_size=image_size, trust_checkpoint=trust_checkpoint,
                     remote=getattr(executor, "remote", False))
    state = SelectState.open(out / STATE_NAME if out is not None else None,
                             identity(models, train, val, job, eta, parsed, prior, ties))
    started = time.perf_counter()
    if zero is None:
        zero = _zero_phase(models, train, job, executor=executor, prior=prior,
                           cache_dir=cache_dir, progress=progress, argv=argv)
    seconds = {"zero_training": time.perf_counter() - started}
    chosen = _committed_plan(state, parsed, zero, job, eta=eta, timed=timed, seconds=seconds,
                             sizes=(len(train), n_train, n_val))
    runs.mkdir(parents=True, exist_ok=True)
    state.commit(chosen.to_json(), zero.order)
    return Prepared(zero, chosen, job, state, executor, out, seconds,
                    resumed=len(state.results), scratch=scratch, ties=ties)


def _committed_plan(state: SelectState, budget: Budget, zero: ZeroTraining, job: TrainJob,
                    *, eta: int, timed: bool, seconds: dict[str, float],
                    sizes: tuple[int, int, int]) -> Plan:
    """The plan an interrupted run committed to, else a new one (timed unless ``timed``
    is False and the budget is in runs; the timing's seconds go to ``seconds``)."""
    samples, train, val = sizes
    if state.plan is not None:
        return Plan(**{k: v for k, v in state.plan.items() if k != "cost_fraction"})
    if budget.runs is not None and not timed:
        return plan(budget, pool=len(zero.order), epochs=job.config.epochs, eta=eta,
                    samples=samples, train=train, val=val)
    started = time.perf_counter()
    chosen = measured_plan(budget, zero, job, eta=eta, samples=samples, train=train, val=val)
    seconds["timing"] = time.perf_counter() - started
    return chosen


def select(models: Sequence[str], data: Any, *, budget: str | float, **options: Any
           ) -> Selection:
    """Pick the model of ``models`` to fine-tune on ``data`` within ``budget``.

    Args:
        models: model specs (``NAME=SPEC`` names one), at least 2.
        data: the labelled training data: a dataset spec or
            :class:`~nctk.extract.LabelledImages`; never the test data.
        budget: E-epoch fine-tuning runs of the average model (``3``), or wall time
            (``"20m"``, ``"1h"``, ``"90s"``).
        **options: ``config`` (:class:`~nctk.finetune.train.TrainConfig`: ``epochs`` = E,
            the pick's fine-tuning; ``val_fraction``; seed, lr, ...), ``eta`` (3),
            ``method`` (``full``; ``lp``, ``layer``, ``scl``) and ``unit``,
            ``unit_names``, ``val_data``, ``prior``, ``image_size``, ``trust_checkpoint``,
            ``out_dir`` (resumable state, checkpoints, the pick's weights), ``executor``
            (an entered :class:`nctk.scale.RayExecutor` runs each rung's fine-tuning as
            Ray tasks), ``cache_dir`` (features), ``progress``.

    Returns:
        :class:`Selection`: ``pick``, the rung table, ``cost_fraction``, curves.
    """
    return prepare(models, data, budget=budget, **options).run()
