"""``nctk rank``: rank a pool of pre-trained models for one labelled target dataset.

Two ways in (docs/contract.md):

* ``nctk rank FEATURES.npz... --method recommended,ncti,...|all`` scores saved feature
  files (default: ``recommended``, the rank average of NCTI and a prior, or of NCTI and
  LogME without one);
* ``nctk rank --models SPEC,SPEC --data SPEC`` extracts and scores one model per unit of
  work through :mod:`nctk.scale` (``--executor loop|ray``; torch is imported only then).

A data-free prior (``--prior FILE.json``, else the source accuracy recorded for every
model, see :mod:`nctk.priors`) goes to the methods that take one (``recommended``).
It prints one table per method, the recommended (default) method first, then an overview
of every method's ranks sorted by it (and the rank correlations when ``--ground-truth`` is
given) and which method is recommended and why; it optionally writes the contract's JSON
(``--json``, plus ``provenance`` and ``guidance`` objects) and an HTML report
(``--report``). Notes (skipped methods, saturated or tied scores, undefined correlations)
and the files written go to standard error, grouped at the end. Every bad input is an
:class:`~nctk.errors.InputError`: one line, exit 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nctk import workflow
from nctk.cli import COMMANDS
from nctk.cli import _types as types
from nctk.cli._executor import add_executor_arguments, make_executor, report_failures
from nctk.cli._parts import add_parts_arguments
from nctk.cli._table import fmt_number, format_table
from nctk.cli.extract import add_extraction_arguments
from nctk.errors import InputError
from nctk.evaluation import STATISTICS, by_weighted_tau
from nctk.extract.specs import DATASET, MODEL, forms
from nctk.io import load_ground_truth, load_pool, write_json
from nctk.paths import Input, Output, check_outputs, input_file
from nctk.priors import load_prior

#: NCTI's term weights, in the order of ``--ncti-weights`` (its ``combine_options``).
NCTI_WEIGHTS = ("w_seli", "w_ncc", "w_vc")

#: Column titles of the evaluation statistics.
STAT_TITLES = {"weighted_tau": "weighted tau", "kendall_tau": "kendall tau",
               "spearman": "spearman", "pearson": "pearson", "top1_relative": "top-1 rel"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rank", help=COMMANDS["rank"],
        description="Score every model of a pool with one or more transferability methods "
                    "and rank them (higher score = predicted more transferable).")
    parser.add_argument("features", nargs="*", metavar="FEATURES.npz",
                        help="one feature file per model (the model name is the file stem)")
    add_method_arguments(parser)
    parser.add_argument("--ground-truth", metavar="GT.json",
                        help="JSON {model: accuracy}; adds weighted tau and other correlations")
    parser.add_argument("--prior", metavar="PRIOR.json",
                        help="JSON {model: value}, higher = better, needing no target data "
                             "(e.g. source accuracy); used by 'recommended' (default: the "
                             "source accuracy recorded for the models, when all have one)")
    parser.add_argument("--json", metavar="OUT.json",
                        help="write scores and evaluation as JSON (- for standard output)")
    parser.add_argument("--report", metavar="OUT.html", help="write a self-contained HTML report")
    extract = parser.add_argument_group("extracting features first (instead of FEATURES.npz)")
    extract.add_argument("--models", metavar="SPEC,SPEC,...",
                         help=f"model specs: {forms(MODEL)}, or a checkpoint path; NAME=SPEC "
                              "names a model (see nctk extract --help). All are loaded and "
                              "tried before any extraction")
    extract.add_argument("--data", metavar="SPEC",
                         help=f"target dataset: {forms(DATASET)}")
    extract.add_argument("--per-class", type=types.positive_int, metavar="K",
                         help="use at most K samples per class (seeded draw)")
    add_extraction_arguments(extract)
    add_parts_arguments(extract)
    add_executor_arguments(parser)
    parser.set_defaults(func=run)


def add_method_arguments(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--method`` (default: ``default``, else the registry's recommended method), ``--seed``
    and ``--ncti-weights`` (shared with ``nctk analyze``)."""
    import nctk.transfer  # noqa: F401  (registers every method)
    from nctk.transfer.registry import DEFAULT_METHOD, available_methods

    parser.add_argument("--method", default=default or DEFAULT_METHOD,
                        metavar="NAME[,NAME...]|all",
                        help="transferability method(s), in any case: "
                             f"{', '.join(available_methods())}, or all (default: "
                             f"%(default)s; the recommended method is {DEFAULT_METHOD})")
    parser.add_argument("--seed", type=types.seed, default=0,
                        help="seed of seeded methods and of random draws (--per-class, "
                             "few-shot) (default: %(default)s)")
    parser.add_argument("--ncti-weights", metavar="W_SELI,W_NCC,W_VC",
                        help="NCTI term weights (default 1,1,1)")


def run(args: argparse.Namespace) -> int:
    extracting(args)  # usage errors (files and --models both given) before anything else
    check_files(args)
    methods = resolve(args.method)
    weights = parse_weights(args.ncti_weights)
    if extracting(args):
        outcome, total, cache_dir = rank_extracted(args, methods, weights)
    else:
        pool = load_pool(features_given(args))
        outcome = workflow.rank_feature_files(
            pool, methods, seed=args.seed, ncti_weights=weights, prior=args.prior,
            ground_truth=args.ground_truth, optional_inputs=is_all(args.method),
            argv=args.argv)
        total, cache_dir = len(pool), None
    failures = list(outcome.failed.items())
    if not outcome.results:
        return report_failures("rank", failures, total, flags=args.flags)
    from nctk.cli import in_flags

    print(format_results(outcome, args.flags))
    print("\n" + in_flags(outcome.advice, args.flags))
    written = []
    if args.json:
        written.append(write_json(args.json, outcome.to_json()))
    if args.report:
        written.append(outcome.write_report(args.report,
                                            title=f"nctk rank: {len(outcome.models)} models"))
    status = report_failures("rank", failures, total, flags=args.flags)
    print_notes(outcome.notes, written, cache_dir, flags=args.flags)
    return status


def check_files(args: argparse.Namespace) -> None:
    """Outputs that would overwrite an input are refused, and the ground truth and prior
    files are read, before any work."""
    outputs = [Output("--json", args.json), Output("--report", args.report)]
    inputs = input_files(args.features, args.ground_truth)
    if args.prior:
        inputs.append(Input("--prior", args.prior))
    if args.models is not None or args.data is not None:
        from nctk.cli.extract import cache_output, spec_inputs

        outputs.append(cache_output(args))
        inputs += spec_inputs(args.models, args.data)
    check_outputs(outputs, inputs)
    if args.ground_truth:
        load_ground_truth(args.ground_truth)
    if args.prior:
        load_prior(args.prior)


def print_notes(notes: Sequence[str], written: Sequence[Any] = (),
                cache_dir: str | None = None, *, flags: Mapping[str, str] | None = None) -> None:
    """The notes (parameters they name shown as the command's ``flags``, see
    :func:`nctk.cli.in_flags`), then where files went, as one group on standard error (the
    tables on standard output stay clean for a pipe)."""
    from nctk.cli import in_flags

    lines = ["notes:", *(f"  - {in_flags(note, flags or {})}" for note in notes)] if notes else []
    if cache_dir:
        lines.append(f"features cached in {cache_dir}")
    if written:
        lines.append("wrote " + ", ".join(str(path) if isinstance(path, str | os.PathLike)
                                          else "standard output" for path in written))
    if lines:
        print("\n" + "\n".join(lines), file=sys.stderr)


def resolve(spec: str) -> list[Any]:
    """``--method`` -> registered methods (imports :mod:`nctk.transfer` to register them)."""
    import nctk.transfer  # noqa: F401  (registers every method)
    from nctk.transfer.registry import resolve_methods

    try:
        return resolve_methods(spec)
    except InputError as err:
        raise err.located(file="--method") from None


def parse_weights(text: str | None) -> dict[str, float] | None:
    """``"1,0.5,1"`` -> ``{w_seli: 1, w_ncc: 0.5, w_vc: 1}``; None when not given."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != len(NCTI_WEIGHTS) or not all(math.isfinite(v) for v in values):
        raise InputError(f"expected three finite numbers W_SELI,W_NCC,W_VC, got {text!r}",
                         file="--ncti-weights")
    return dict(zip(NCTI_WEIGHTS, values, strict=True))


def extracting(args: argparse.Namespace) -> bool:
    """Whether the models are given as specs (``--models``/``--data``) rather than files."""
    wanted = args.models is not None or args.data is not None
    if args.features and wanted:
        stray = types.spaced_list(args.argv, args.features, ["--models"])
        raise InputError(stray) if stray else InputError(
            "give either FEATURES.npz files or --models with --data, not both", file="--models")
    if not wanted:
        from nctk.cli._executor import RAY_OPTIONS

        if args.executor != "loop" or any(getattr(args, o) is not None for o in RAY_OPTIONS):
            raise InputError("applies to --models (extracting features); feature files are "
                             "scored in this process", file="--executor")
    return wanted


def features_given(args: argparse.Namespace) -> list[str]:
    if not args.features:
        raise InputError("no feature files given (or use --models with --data)",
                         file="FEATURES.npz")
    for path in args.features:  # a directory (or FIFO, device) says so before the count
        input_file(path, f"pass the feature files in it ({Path(path) / '*.npz'})")
    check_pool_size(len(args.features), "FEATURES.npz")
    return args.features


def rank_extracted(args: argparse.Namespace, methods: Sequence[Any],
                   weights: Mapping[str, float] | None
                   ) -> tuple[workflow.RankingOutcome, int, str | None]:
    """Extract and score every ``--models`` spec through the chosen executor
    (:func:`nctk.workflow.rank_model_specs`): (outcome, models, the feature cache)."""
    if not args.models or not args.data:
        raise InputError("--models and --data go together", file="--models" if not args.models
                         else "--data")
    from nctk.cli.extract import extract_settings, model_specs, target_dataset

    specs = model_specs(args.models)
    executor = make_executor(args)
    check_pool_size(len(specs), "--models")
    dataset = target_dataset(args)
    settings = extract_settings(args)
    outcome = workflow.rank_model_specs(
        specs, dataset, methods, executor=executor, extract=settings, seed=args.seed,
        ncti_weights=weights, prior=args.prior, ground_truth=args.ground_truth,
        optional_inputs=is_all(args.method), progress=not args.no_progress,
        per_class=args.per_class, argv=args.argv)
    return outcome, len(specs), settings.cache_dir


def check_pool_size(models: int, where: str) -> None:
    """Ranking needs at least two models (one model has nothing to be ranked against)."""
    if models < 2:
        raise InputError(f"got {models} model; ranking needs at least 2 (for one model's "
                         "scores use nctk.score, or nctk analyze)", file=where)


def input_files(features: Sequence[str], ground_truth: str | None) -> list[Input]:
    """Feature files and the ground truth, as inputs for :func:`nctk.paths.check_outputs`."""
    return ([Input("FEATURES.npz", path) for path in features]
            + ([Input("--ground-truth", ground_truth)] if ground_truth else []))


def is_all(spec: str) -> bool:
    """Whether ``--method`` asks for every method (``all``, any case)."""
    return spec.strip().lower() == "all"


def _integral(value: float) -> float | int:
    """A rank as an int when it is whole (ties give halves)."""
    return int(value) if float(value).is_integer() else value


def format_results(outcome: workflow.RankingOutcome, flags: Mapping[str, str] | None = None
                   ) -> str:
    """The terminal output: one ranking block per method (the recommended method first;
    ``recommended`` with each member's rank), a saturated or tied score flagged in a last
    column; the prior's agreement with the truth; with several methods an overview of
    their ranks, rows in the first method's order, and with a ground truth a summary of
    the correlations of each method and of the prior, best weighted tau first (as the
    report). ``flags`` show the prior's source in the command's options."""
    from nctk.cli import in_flags

    blocks = [method_block(name, result, outcome) for name, result in outcome.results.items()]
    prior = (f"prior ({in_flags(outcome.prior.source, flags or {})})"
             if outcome.prior is not None else "")
    if outcome.prior_evaluation is not None:
        blocks.append(f"{prior}\n  {statistics_line(outcome.prior_evaluation)}")
    if len(outcome.results) > 1:
        blocks.append(rank_overview(outcome.results, outcome.truth, outcome.flags))
    if outcome.evaluation is not None and len(outcome.results) > 1:
        rows = {name: [*(ev[k] for k in STATISTICS), outcome.results[name].seconds]
                for name, ev in outcome.evaluation.items()}
        if outcome.prior_evaluation is not None:
            rows[prior] = [*(outcome.prior_evaluation[k] for k in STATISTICS), None]
        order = by_weighted_tau({name: dict(zip(STATISTICS, row, strict=False))
                                 for name, row in rows.items()})
        blocks.append("summary, best weighted tau first\n" + format_table(
            ["method", *(STAT_TITLES[k] for k in STATISTICS), "seconds"],
            [[name, *rows[name]] for name in order], digits=3, scientific=False,
            indent="  "))
    return "\n\n".join(blocks)


def method_block(name: str, result: Any, outcome: workflow.RankingOutcome) -> str:
    """One method's ranking: rank, model, score, member ranks (``recommended``), the
    truth, a flag; its correlations with the truth under the table."""
    flag = outcome.flags.get(name)
    truth = outcome.truth
    first = next(iter(result.components.values()), {}) if result.components else {}
    member_ranks = [k for k in first if k.endswith("_rank")]
    headers = (["rank", "model", "score"] + [k[:-len("_rank")] + " rank" for k in member_ranks]
               + (["truth"] if truth is not None else []) + (["flag"] if flag else []))
    rows = []
    for position, model in enumerate(result.ranking, start=1):
        row: list[Any] = [position, model, result.scores[model]]
        row += [_integral(result.components[model][k]) for k in member_ranks]
        if truth is not None:
            row.append(truth[model])
        if flag:
            row.append(flag.of(model))
        rows.append(row)
    title = f"{name}  ({len(result.scores)} models, {fmt_number(result.seconds, 3)} s)"
    block = [title, format_table(headers, rows, indent="  ")]
    if outcome.evaluation is not None:
        block.append("  " + statistics_line(outcome.evaluation[name]))
    return "\n".join(block)


def statistics_line(evaluation: Mapping[str, float]) -> str:
    """``weighted tau 0.812   kendall tau ...`` on one line."""
    return "   ".join(f"{STAT_TITLES[k]} {fmt_number(evaluation[k], 3, scientific=False)}"
                      for k in STATISTICS)


def rank_overview(results: Mapping[str, Any], truth: Mapping[str, float] | None,
                  flags: Mapping[str, Any] | None = None) -> str:
    """Every method's rank of every model (1 = best, - for a NaN score; tied models share
    the best rank of their group, marked ``=``), rows sorted by the first method's ranking,
    with the ground truth's rank when given."""
    from nctk.transfer.ranking import rank_order

    first = next(iter(results))
    ranks: dict[str, dict[str, Any]] = {}
    for name, result in results.items():
        finite = [m for m in result.ranking if math.isfinite(result.scores[m])]
        ranks[name] = {m: i for i, m in enumerate(finite, start=1)}
        for group in getattr((flags or {}).get(name), "ties", []):
            shared = f"{ranks[name][group[0]]}="
            ranks[name].update(dict.fromkeys(group, shared))
    headers = ["model", *(["truth"] if truth is not None else []), *results]
    truth_rank = ({m: i for i, m in enumerate(rank_order(dict(truth)), start=1)}
                  if truth is not None else {})
    rows = [[model, *([truth_rank.get(model, "-")] if truth is not None else []),
             *(ranks[name].get(model, "-") for name in results)]
            for model in results[first].ranking]
    return (f"ranks by method (1 = best, = a tie), sorted by {first}\n"
            + format_table(headers, rows, indent="  "))
