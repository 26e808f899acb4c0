"""``nctk rank``: rank a pool of pre-trained models for one labelled target dataset.

Two ways in (docs/contract.md):

* ``nctk rank FEATURES.npz... --method recommended,ncti,...|all`` scores saved feature
  files (default: ``recommended``, the rank average of NCTI, ETran and a prior);
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
import inspect
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from nctk.analyses import effective_options, supported_options
from nctk.cli import COMMANDS
from nctk.cli import _types as types
from nctk.cli._executor import add_executor_arguments, make_executor, report_failures
from nctk.cli._table import fmt_number, format_table
from nctk.errors import InputError
from nctk.evaluation import STATISTICS, evaluate, undefined_reason
from nctk.extract.specs import DATASET, MODEL, forms
from nctk.io import FeatureFile, load_ground_truth, load_pool, write_json
from nctk.paths import Input, Output, check_outputs
from nctk.priors import Prior, load_prior, resolve_prior
from nctk.validation import encode_labels

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
    extract.add_argument("--image-size", type=types.positive_int, metavar="S",
                         help="crop size of the preprocessing (default: the model's own)")
    extract.add_argument("--cache-dir", metavar="DIR",
                         help="reuse/keep extracted features here (default: $NCTK_CACHE_DIR, "
                              "else ~/.cache/nctk)")
    extract.add_argument("--no-cache", action="store_true",
                         help="extract afresh and keep nothing")
    extract.add_argument("--skip-bad-images", action="store_true",
                         help="skip unreadable images instead of stopping")
    extract.add_argument("--device", help="torch device for extraction (default: auto)")
    extract.add_argument("--no-progress", "--quiet", dest="no_progress", action="store_true",
                         help="hide the progress bars (shown on a terminal only anyway)")
    extract.add_argument("--trust-checkpoint", action="store_true",
                         help="load model files that carry code (see nctk extract --help)")
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
    outputs = [Output("--json", args.json), Output("--report", args.report)]
    inputs = input_files(args.features, args.ground_truth)
    if args.prior:
        inputs.append(Input("--prior", args.prior))
    if args.models is not None or args.data is not None:
        from nctk.cli.extract import cache_output, spec_inputs

        outputs.append(cache_output(args))
        inputs += spec_inputs(args.models, args.data)
    check_outputs(outputs, inputs)
    methods = resolve(args.method)
    weights = parse_weights(args.ncti_weights)
    if args.ground_truth:
        load_ground_truth(args.ground_truth)  # a bad file fails before any work
    if args.prior:
        load_prior(args.prior)
    if extracting(args):
        results, notes, failures, total, source, prior = rank_extracted(args, methods,
                                                                        weights)
        if not results:
            return report_failures("rank", failures, total, flags=args.flags)
    else:
        pool = load_pool(features_given(args))
        check_labels(pool)
        prior, prior_note = resolve_prior(args.prior, pool)
        methods, notes = drop_unrunnable(methods, pool, args.method)
        notes += [prior_note] if prior_note else []
        results = rank_with_options(pool, methods, seed=args.seed, ncti_weights=weights,
                                    prior=prior.values if prior else None)
        notes += subsample_notes(methods, pool[0].features.shape[0], args.seed)
        failures, total = [], len(pool)
        source = {"feature_files": [f.path or f.name for f in pool], "labels": pool[0].labels}
    from nctk.provenance import provenance
    from nctk.transfer.guidance import flag_notes, method_order, pool_flags, recommendation

    results = {name: results[name] for name in method_order(results)}
    options = {name: method_options(name, seed=args.seed, ncti_weights=weights)
               for name in results}
    models = list(next(iter(results.values())).scores) if results else []
    truth = load_ground_truth(args.ground_truth, models) if args.ground_truth else None
    evaluation = ({name: evaluate(r.scores, truth) for name, r in results.items()}
                  if truth is not None else None)
    flags = pool_flags(results, num_classes=len(set(source["labels"].tolist())),
                       options=options)
    notes += member_notes(results, prior) + flag_notes(flags) + evaluation_notes(results, truth)
    prior_evaluation = evaluate(prior.values, truth) if prior and truth is not None else None
    advice = recommendation(results)
    print(format_results(results, truth, evaluation, flags, prior, prior_evaluation))
    print("\n" + advice)
    origin = provenance(labels=source["labels"], data=source.get("data"),
                        feature_files=source.get("feature_files"), models=source.get("models"),
                        seed=args.seed, argv=args.argv, method_options={
                            name: effective_options(name, o) for name, o in options.items()},
                        extra={"per_class_draw": getattr(args, "per_class", None)}
                        if source.get("data") else None)
    written = []
    if args.json:
        data = result_json(results, evaluation, prior, prior_evaluation)
        if failures:
            data["failed"] = {record.spec: record.error for record in failures}
        data["provenance"] = origin
        data["guidance"] = {"recommended": advice,
                            "flags": {m: f.to_json() for m, f in flags.items()},
                            "notes": notes}
        written.append(write_json(args.json, data))
    if args.report:
        from nctk.report import write_report

        written.append(write_report(
            args.report, title=f"nctk rank: {len(models)} models", methods=results,
            evaluation=evaluation, truth=truth, notes=notes, flags=flags,
            recommendation=advice, provenance=origin, prior=prior,
            prior_evaluation=prior_evaluation))
    status = report_failures("rank", failures, total, flags=args.flags)
    print_notes(notes, written, source.get("cache_dir"))
    return status


def print_notes(notes: Sequence[str], written: Sequence[Any] = (),
                cache_dir: str | None = None) -> None:
    """The notes, then where files went, as one group on standard error (the tables on
    standard output stay clean for a pipe)."""
    lines = ["notes:", *(f"  - {note}" for note in notes)] if notes else []
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
        raise InputError("give either FEATURES.npz files or --models with --data, not both",
                         file="--models")
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
    check_pool_size(len(args.features), "FEATURES.npz")
    return args.features


def rank_extracted(args: argparse.Namespace, methods: Sequence[Any],
                   weights: Mapping[str, float] | None
                   ) -> tuple[dict[str, Any], list[str], list[Any], int, dict[str, Any],
                              Prior | None]:
    """Extract and score every ``--models`` spec through the chosen executor (one unit of
    work per model, see :mod:`nctk.scale`): (results, notes, failed records, models, where
    the features came from: data spec, labels, model specs, cache; the prior). The prior
    (``--prior``, else the source accuracy every model's weights recorded) is known once
    the models are loaded: ``recommended`` is combined with it then, from the per-model
    terms."""
    if not args.models or not args.data:
        raise InputError("--models and --data go together", file="--models" if not args.models
                         else "--data")
    from nctk.cli.extract import default_cache_dir, model_specs

    specs = model_specs(args.models)
    executor = make_executor(args)
    check_pool_size(len(specs), "--models")
    from nctk.extract import load_dataset, subsample_per_class
    from nctk.extract.preflight import check_models
    from nctk.scale import ExtractSettings, rank_models

    dataset = load_dataset(args.data)
    if args.per_class is not None:
        dataset = subsample_per_class(dataset, args.per_class, args.seed)
    settings = ExtractSettings(
        image_size=args.image_size, device=args.device, skip_bad_images=args.skip_bad_images,
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
        progress=not args.no_progress, trust_checkpoint=args.trust_checkpoint)
    options = {m.name: method_options(m, seed=args.seed, ncti_weights=weights)
               for m in methods}
    with executor:  # a Ray executor checks the models as tasks, where they will run
        check_models(specs, dataset, image_size=args.image_size, executor=executor,
                     trust_checkpoint=args.trust_checkpoint)
        run = rank_models(specs, dataset, [m.name for m in methods], executor=executor,
                          extract=settings, options=options,
                          optional_inputs=is_all(args.method),
                          progress=not args.no_progress)
    source = {"data": args.data, "labels": dataset.label_values(),
              "models": {r.name: r.spec for r in run.records},
              "cache_dir": settings.cache_dir}
    prior, note = resolve_prior(args.prior, run.records)
    if prior is not None and "recommended" in run.results:
        from nctk.transfer.ranking import combine_terms
        from nctk.transfer.registry import get_method

        run.results["recommended"] = combine_terms(
            get_method("recommended"), {r.name: r.terms["recommended"] for r in run.records},
            run.results["recommended"].seconds, prior=prior.values)
    notes = run.notes + ([note] if note else [])
    return run.results, notes, run.failures, len(specs), source, prior


def check_pool_size(models: int, where: str) -> None:
    """Ranking needs at least two models (one model has nothing to be ranked against)."""
    if models < 2:
        raise InputError(f"got {models} model; ranking needs at least 2 (for one model's "
                         "scores use nctk.score, or nctk analyze)", file=where)


def subsample_notes(methods: Sequence[Any], samples: int, seed: int) -> list[str]:
    """One note per method that scored a subsample (its ``max_samples`` default < N)."""
    notes = []
    for meth in methods:
        cap = inspect.signature(meth.score).parameters.get("max_samples")
        if cap is not None and isinstance(cap.default, int) and samples > cap.default:
            notes.append(f"{meth.name}: scored a stratified subsample of {cap.default:,} of "
                         f"the {samples:,} samples (seed {seed})")
    return notes


def input_files(features: Sequence[str], ground_truth: str | None) -> list[Input]:
    """Feature files and the ground truth, as inputs for :func:`nctk.paths.check_outputs`."""
    return ([Input("FEATURES.npz", path) for path in features]
            + ([Input("--ground-truth", ground_truth)] if ground_truth else []))


def drop_unrunnable(methods: Sequence[Any], pool: Sequence[FeatureFile], spec: str
                    ) -> tuple[list[Any], list[str]]:
    """With ``--method all``, leave out the methods needing source logits when a file lacks
    them (with a note). Methods named explicitly are kept, so they fail with a clear error.
    """
    if not is_all(spec) or all(f.source_logits is not None for f in pool):
        return list(methods), []
    kept = [m for m in methods if m.input != "source_logits"]
    skipped = [m.name for m in methods if m.input == "source_logits"]
    notes = [f"skipped {', '.join(skipped)}: some feature files have no source_logits"
             ] if skipped else []
    return kept, notes


def is_all(spec: str) -> bool:
    """Whether ``--method`` asks for every method (``all``, any case)."""
    return spec.strip().lower() == "all"


def check_labels(pool: Sequence[FeatureFile]) -> None:
    """The shared labels are usable (ints or strings, >= 2 classes); names the first file."""
    first = pool[0]
    try:
        encode_labels(first.labels, first.features.shape[0], "labels")
    except InputError as err:
        raise err.located(file=first.path or first.name) from None


def method_options(method: Any, *, seed: int | None = None,
                   ncti_weights: Mapping[str, float] | None = None,
                   prior: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The CLI options ``method`` takes: ``seed`` where its function has a ``seed``
    parameter, the NCTI weights and the prior where its ``combine_options`` name them."""
    candidates: dict[str, Any] = dict(ncti_weights or {})
    if seed is not None:
        candidates["seed"] = seed
    if prior is not None:
        candidates["prior"] = prior
    return supported_options(method, candidates)


def rank_with_options(pool: Sequence[FeatureFile], methods: Sequence[Any], *,
                      seed: int | None = None,
                      ncti_weights: Mapping[str, float] | None = None,
                      prior: Mapping[str, float] | None = None) -> dict[str, Any]:
    """``rank_pool_methods`` with the options each method takes (:func:`method_options`):
    every model's statistics are computed once and shared by all the methods."""
    from nctk.transfer.ranking import rank_pool_methods

    return rank_pool_methods(pool, methods, {
        m.name: method_options(m, seed=seed, ncti_weights=ncti_weights, prior=prior)
        for m in methods})


def _integral(value: float) -> float | int:
    """A rank as an int when it is whole (ties give halves)."""
    return int(value) if float(value).is_integer() else value


def member_notes(results: Mapping[str, Any], prior: Prior | None) -> list[str]:
    """For ``recommended``: which members it averaged, and where the prior came from."""
    if "recommended" not in results:
        return []
    from nctk.transfer.recommended import members_used

    members = ", ".join(members_used(results["recommended"].components))
    if prior is None:
        return [f"recommended: mean rank of {members}; no prior (give --prior PRIOR.json, or "
                "extract torchvision models, whose weights record their ImageNet top-1)"]
    return [f"recommended: mean rank of {members}; prior = {prior.source}"]


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


def result_json(results: Mapping[str, Any], evaluation: Mapping[str, dict] | None,
                prior: Prior | None = None, prior_evaluation: Mapping[str, float] | None = None
                ) -> dict[str, Any]:
    """The ``--json`` object of docs/contract.md: ``methods`` and, with a ground truth,
    ``evaluation``; with a prior also ``prior: {source, values[, evaluation]}``."""
    data: dict[str, Any] = {"methods": {name: r.to_json() for name, r in results.items()}}
    if evaluation is not None:
        data["evaluation"] = {name: dict(ev) for name, ev in evaluation.items()}
    if prior is not None:
        data["prior"] = prior.to_json()
        if prior_evaluation is not None:
            data["prior"]["evaluation"] = dict(prior_evaluation)
    return data


def format_results(results: Mapping[str, Any], truth: Mapping[str, float] | None,
                   evaluation: Mapping[str, dict] | None,
                   flags: Mapping[str, Any] | None = None, prior: Prior | None = None,
                   prior_evaluation: Mapping[str, float] | None = None) -> str:
    """The terminal output: one ranking block per method (in the order given: the caller
    puts the recommended method first; ``recommended`` with each member's rank), a
    saturated or tied score flagged in a last column; the prior's agreement with the
    truth; with several methods an overview of their ranks, rows in the first method's
    order; with a ground truth a summary of the correlations."""
    flags = flags or {}
    blocks = []
    for name, result in results.items():
        flag = flags.get(name)
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
        if evaluation is not None:
            ev = evaluation[name]
            block.append("  " + "   ".join(
                f"{STAT_TITLES[k]} {fmt_number(ev[k], 3, scientific=False)}" for k in STATISTICS))
        blocks.append("\n".join(block))
    if prior_evaluation is not None:
        blocks.append(f"prior ({prior.source})\n  " + "   ".join(
            f"{STAT_TITLES[k]} {fmt_number(prior_evaluation[k], 3, scientific=False)}"
            for k in STATISTICS))
    if len(results) > 1:
        blocks.append(rank_overview(results, truth, flags))
    if evaluation is not None and len(results) > 1:
        rows = [[name, *(evaluation[name][k] for k in STATISTICS), results[name].seconds]
                for name in results]
        blocks.append("summary\n" + format_table(
            ["method", *(STAT_TITLES[k] for k in STATISTICS), "seconds"], rows, digits=3,
            scientific=False, indent="  "))
    return "\n\n".join(blocks)


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
