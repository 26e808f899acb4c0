"""``nctk select``: pick the model to fine-tune under a compute budget (docs/select.md).

Scores every ``--models`` spec without training (as ``nctk rank --models`` does), prints
the plan the ``--budget`` buys, runs successive halving with real fine-tuning on the
shortlist, and prints the pick with the rung table and the compute spent against brute
force. ``--out`` holds the resumable state, the checkpoints and the pick's weights; the
same command again resumes an interrupted run.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nctk.cli import COMMANDS
from nctk.cli import _types as types
from nctk.cli._executor import add_executor_arguments, make_executor
from nctk.cli._table import format_table
from nctk.cli.extract import add_extraction_arguments
from nctk.cli.finetune import add_training_arguments
from nctk.errors import InputError
from nctk.paths import Input, Output, check_outputs

METHODS = ("full", "lp", "layer", "scl")
SCHEDULES = ("sync", "asha")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "select", help=COMMANDS["select"],
        description="Pick the model to fine-tune: score every model without training, then "
                    "successive halving with real fine-tuning on a shortlist, within a "
                    "compute budget (docs/select.md).")
    parser.add_argument("--models", required=True, metavar="SPEC,SPEC,...",
                        help="model specs (see nctk extract --help); NAME=SPEC names one")
    parser.add_argument("--data", required=True, metavar="SPEC",
                        help="the labelled training data (never the test data)")
    parser.add_argument("--budget", required=True, metavar="B",
                        help="E-epoch fine-tuning runs of the average model (3), or wall time "
                             "(90s, 20m, 1h)")
    parser.add_argument("--epochs", type=types.positive_int, required=True, metavar="E",
                        help="the pick's fine-tuning: the length of the last rung")
    parser.add_argument("--eta", type=types.integer(2), default=3,
                        help="halving factor: rungs at E/eta^k epochs, 1/eta promoted "
                             "(default 3)")
    parser.add_argument("--ties", choices=("exact", "noise"), default="exact",
                        help="which rung scores tie (ties go to the better zero-training "
                             "rank): exact (equal scores, the default) or noise (within the "
                             "standard error of a difference of two validation accuracies)")
    parser.add_argument("--method", choices=METHODS, default="full",
                        help="fine-tuning method (default full)")
    parser.add_argument("--unit", help="unit number (1-based) or name for layer/scl")
    parser.add_argument("--unit-modules", help="comma-separated sub-module names to use as "
                        "units (models whose blocks are not discovered)")
    parser.add_argument("--val-data", metavar="SPEC",
                        help="validation data with the classes of --data (instead of "
                             "--val-fraction)")
    add_training_arguments(parser, val_fraction=0.2)
    parser.add_argument("--prior", metavar="PRIOR.json", help="JSON {model: value}, higher = "
                        "better (default: the source accuracy the models record)")
    parser.add_argument("--out", default="nctk-select", metavar="DIR",
                        help="state, checkpoints and the pick's weights (default: "
                             "%(default)s); the same command resumes from it")
    parser.add_argument("--json", metavar="OUT.json", help="write the result (- for stdout)")
    parser.add_argument("--report", metavar="OUT.html", help="write an HTML report")
    parser.add_argument("--schedule", choices=SCHEDULES, default="sync",
                        help="sync (successive halving, default) or asha (Ray Tune's "
                             "asynchronous ASHA, with --executor ray)")
    add_extraction_arguments(parser, device=False, skip_bad_images=False)
    add_executor_arguments(parser)
    parser.set_defaults(func=run)


def output_names() -> tuple[str, ...]:
    """Everything select writes in --out (glob patterns relative to it)."""
    from nctk.select.api import PICK_NAME, RUNS_NAME
    from nctk.select.state import STATE_NAME

    return (STATE_NAME, PICK_NAME, f"{RUNS_NAME}/*/*")


def check_paths(args: argparse.Namespace) -> None:
    """No output onto an input (``--out``, ``--json``, ``--report``, the cache)."""
    from nctk.cli.extract import cache_output, spec_inputs
    from nctk.extract.datasets import dataset_paths

    inputs = spec_inputs(args.models, args.data)
    inputs += [Input("--val-data", p) for p in dataset_paths(args.val_data or "")]
    inputs += [Input("--prior", args.prior)] if args.prior else []
    check_outputs([Output("--out", args.out, names=output_names()),
                   Output("--json", args.json), Output("--report", args.report),
                   cache_output(args)], inputs)


def run(args: argparse.Namespace) -> int:
    from nctk.cli.extract import default_cache_dir, model_specs
    from nctk.cli.finetune import train_config
    from nctk.select.api import prepare
    from nctk.select.budget import parse_budget

    check_paths(args)
    parse_budget(args.budget)  # a bad budget fails before anything loads
    specs = model_specs(args.models)
    if args.schedule == "asha" and args.executor != "ray":
        raise InputError("--schedule asha runs Ray Tune trials: add --executor ray",
                         parameter="schedule")
    config = train_config(args)
    unit_names = [u for u in args.unit_modules.split(",") if u] if args.unit_modules else None
    with make_executor(args) as executor:
        prepared = prepare(
            specs, args.data, budget=args.budget, config=config, eta=args.eta,
            method=args.method, unit=args.unit, unit_names=unit_names, val_data=args.val_data,
            prior=args.prior, image_size=args.image_size,
            trust_checkpoint=args.trust_checkpoint, out_dir=args.out, executor=executor,
            cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
            progress=not args.no_progress, argv=args.argv, ties=args.ties)
        print(plan_lines(prepared.plan, prepared.zero), flush=True)
        if prepared.resumed:
            print(f"resuming: {prepared.resumed} rung results from {prepared.state.path}",
                  flush=True)
        try:
            if args.schedule == "asha":
                from nctk.select.asha import run_asha

                selection = run_asha(prepared)
            else:
                selection = prepared.run()
        except KeyboardInterrupt:
            print(f"nctk select: the finished rungs and every model's last batch are kept in "
                  f"{args.out}; the same command resumes", file=sys.stderr)
            raise
    print("\n" + result_text(selection))
    write_outputs(args, selection)
    return 0


def plan_lines(plan: Any, zero: Any) -> str:
    """The plan, before any training: shortlist, rungs, cost, expected time."""
    from nctk.finetune.estimate import format_duration

    rungs = ", ".join(f"{r} ({n} model{'s' if n > 1 else ''})"
                      for r, n in zip(plan.rungs, plan.sizes, strict=True))
    lines = [f"nctk select: {plan.pool} models scored without training in "
             f"{zero.seconds:.1f} s; shortlist of {plan.shortlist} ("
             + ("hybrid of recommended and the prior" if zero.prior else "recommended")
             + f"): {', '.join(zero.order[:plan.shortlist])}",
             f"plan: rungs at epochs {rungs}; {plan.halving_epochs} model-epochs of "
             f"fine-tuning + {plan.zero_epochs:.2f} for the zero-training phase = "
             f"{plan.cost_fraction:.1%} of brute force ({plan.pool} models x {plan.epochs} "
             f"epochs), budget {plan.budget_epochs:.4g} model-epochs"]
    if plan.epoch_seconds:
        expected = format_duration(plan.halving_epochs * plan.epoch_seconds)
        lines.append(f"expected time: about {expected} on this machine "
                     f"({plan.epoch_seconds:.2g} s per epoch of the average model, "
                     "measured now)")
    return "\n".join(lines)


def rung_table(selection: Any) -> str:
    """Every model of the pool: zero-training rank, validation accuracy (%) at each rung
    it reached, and where it stopped."""
    from nctk.select.report import outcome

    schedule, zero = selection.schedule, selection.zero
    rows_by_model = {row.model: row for row in schedule.rows}
    headers = ["zero rank", "model", *(f"ep {r}" for r in schedule.rungs), "outcome"]
    rows = []
    for rank, model in enumerate(zero.order, start=1):
        row = rows_by_model.get(model)
        scores = [100 * v for v in row.scores] if row else []
        cells = scores + ["-"] * (len(schedule.rungs) - len(scores))
        rows.append([rank, model, *cells, outcome(row, selection.pick)])
    return format_table(headers, rows, digits=1, scientific=False, indent="  ")


def result_text(selection: Any) -> str:
    """The rung table, the pick and why, the compute spent."""
    plan = selection.plan
    best = selection.schedule.rows[[r.model for r in selection.schedule.rows]
                                   .index(selection.pick)]
    zero_note = "counted" if plan.zero_epochs else "not counted"
    return "\n".join([
        f"rung table (validation accuracy %, {selection.val_samples} validation images; "
        "ties go to the better zero-training rank)", rung_table(selection), "",
        f"pick: {selection.pick} ({selection.spec}): best validation accuracy "
        f"{100 * best.scores[-1]:.1f} % after {best.epochs} epochs, zero-training rank "
        f"{best.zero_rank} of {plan.pool}",
        f"compute: {plan.zero_epochs + selection.schedule.epochs_trained:.2f} model-epochs "
        f"= {selection.cost_fraction:.1%} of brute force ({plan.brute_force_epochs} = "
        f"{plan.pool} models x {plan.epochs} epochs; the zero-training phase is "
        f"{zero_note}: {plan.zero_epochs:.2f})"])


def write_outputs(args: argparse.Namespace, selection: Any) -> None:
    """--json (the rank workflow's document with the selection's keys) and --report; the
    files written, on stderr."""
    from nctk.cli.rank import print_notes
    from nctk.io import write_json

    written: list[Any] = [selection.weights] if selection.weights else []
    if args.json:
        data = selection.to_json()
        data["provenance"]["validation"] = (args.val_data or
                                            f"fraction {args.val_fraction:g} of --data")
        written.append(write_json(args.json, data))
    if args.report:
        from nctk.select.report import write_select_report

        written.append(write_select_report(args.report, selection))
    print_notes(selection.notes, written, flags=args.flags)
