"""``--schedule asha``: the shortlist as Ray Tune trials under its ASHA scheduler.

ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020) is
the asynchronous form of successive halving: a trial reaching a rung is promoted at once
when it is in the top 1/eta of the trials that reached that rung so far, instead of
waiting for the whole rung, so no worker idles at a rung's end. It suits clusters; its
decisions depend on the order in which trials report, so unlike the synchronous schedule
(:func:`nctk.select.schedule.successive_halving`) two runs need not pick the same model.

Each trial fine-tunes one shortlisted model epoch by epoch (:func:`~nctk.select.trials.
run_trial`, resuming its checkpoint) and reports the best validation accuracy so far;
``ray.tune.schedulers.ASHAScheduler`` (``time_attr="epoch"``, ``grace_period`` = the first
rung, ``reduction_factor`` = eta, ``max_t`` = E) stops the others. The rung table is read
back from the checkpoints' histories. Needs ``pip install 'nctk[ray]'`` (Ray Tune is part
of Ray; its result storage uses pyarrow, declared in the extra).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from nctk.select.schedule import Row, Schedule


def _trainable(config: dict[str, Any], job: Any = None, specs: Any = None) -> None:
    """One Tune trial: fine-tune ``config["model"]`` epoch by epoch, reporting its score."""
    from ray import tune

    from nctk.select.trials import Trial, run_trial

    name = config["model"]
    for epoch in range(1, job.config.epochs + 1):
        result = run_trial(job, Trial(name, specs[name], epoch))
        tune.report({"score": result.score, "epoch": epoch})


def _tune(prepared: Any) -> None:
    """Run the Tune experiment on the shortlist (in the Ray instance the executor holds);
    Tune's console output and its warnings are off (nctk prints the table)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    plan, executor = prepared.plan, prepared.executor
    scheduler = ASHAScheduler(time_attr="epoch", max_t=plan.epochs,
                              grace_period=plan.rungs[0], reduction_factor=plan.eta)
    resources = {"cpu": executor.cpus_per_task, "gpu": executor.gpus_per_task or 0}
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, job=prepared.job, specs=prepared.zero.specs),
        resources)
    storage = Path(prepared.job.runs_dir).parent / "tune"
    tuner = tune.Tuner(
        trainable, param_space={"model": tune.grid_search(prepared.shortlist)},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler),
        run_config=tune.RunConfig(storage_path=str(storage.resolve()), name="asha",
                                  verbose=0))
    quiet = logging.getLogger("ray.tune")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # e.g. "TensorboardX is not installed"
    try:
        tuner.fit()
    finally:
        quiet.setLevel(level)


def asha_schedule(prepared: Any) -> Schedule:
    """The rung table of the trials, from their checkpoints' histories: each model's best
    validation accuracy at every rung it reached; the pick is the best at E (ties: the
    better zero-training rank)."""
    from nctk.finetune.train import checkpoint_history
    from nctk.select.trials import run_dir

    plan = prepared.plan
    rows = []
    for rank, model in enumerate(prepared.shortlist, start=1):
        curve = [h["val_accuracy"] for h in checkpoint_history(run_dir(prepared.job, model))]
        reached = [r for r in plan.rungs if r <= len(curve)]
        row = Row(model, rank, [max(curve[:r]) for r in reached], epochs=len(curve))
        if len(reached) < len(plan.rungs):
            row.dropped_at = len(reached) - 1 if reached else 0
        if not curve:
            row.failure = "trained no epoch"
        rows.append(row)
    finished = [r for r in rows if r.dropped_at is None]
    best = min(finished or [r for r in rows if r.scores],
               key=lambda r: (-r.scores[-1], r.zero_rank), default=None)
    return Schedule(list(plan.rungs), list(plan.sizes), rows, best.model if best else None)


def run_asha(prepared: Any) -> Any:
    """Select with ASHA on Ray Tune; the :class:`~nctk.select.api.Selection`."""
    started = time.perf_counter()
    _tune(prepared)
    schedule = asha_schedule(prepared)
    prepared.seconds["fine_tuning"] = time.perf_counter() - started
    return prepared.finish(schedule)
