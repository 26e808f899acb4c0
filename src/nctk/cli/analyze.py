"""``nctk analyze``: the NCTI paper's analyses over one pool with a ground truth.

Sub-commands (each over ``FEATURES.npz...`` of one target dataset; ``--json OUT``):

* ``ablation``  each NCTI term alone and each removed (Fig. 5);
* ``weights``   one term weight swept over 0.1..2.0, the others at 1 (Fig. 6a-c);
* ``fewshot``   k samples per class, R seeded draws, mean/std weighted tau (Fig. 6d);
* ``timing``    wall-clock seconds per model of each method (Fig. 4);
* ``source``    the terms computed on source-data features, vs the target truth (Fig. 7).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from nctk import analyses
from nctk.cli import COMMANDS
from nctk.cli import _types as types
from nctk.cli._table import fmt_number, format_table
from nctk.cli.extract import add_progress_argument
from nctk.cli.rank import add_method_arguments, input_files, parse_weights, print_notes, resolve
from nctk.errors import InputError
from nctk.evaluation import evaluate
from nctk.io import FeatureFile, load_feature_file, load_ground_truth, load_pool, write_json
from nctk.paths import Input, Output, check_outputs
from nctk.priors import Prior, load_prior, resolve_prior
from nctk.validation import encode_labels
from nctk.workflow import RECOMMENDED, check_labels, method_options, prior_phrase, random_init_notes


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze", help=COMMANDS["analyze"],
        description="Analyses of a ranking method over one pool with a ground truth.")
    sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    specs: dict[str, tuple[str, Callable[[argparse.Namespace], int], str, bool]] = {
        "ablation": ("each term alone and each removed (Fig. 5)", run_ablation, "ncti", True),
        "weights": ("sweep one term weight, the others at 1 (Fig. 6a-c)", run_weights, "ncti",
                    True),
        "fewshot": ("k samples per class, repeated seeded draws (Fig. 6d)", run_fewshot, "all",
                    True),
        "timing": ("wall-clock seconds per model (Fig. 4)", run_timing, "all", False),
        "source": ("terms on source-data features vs the target truth (Fig. 7)", run_source,
                   "ncti", True),
    }
    for name, (help_text, func, default_method, needs_truth) in specs.items():
        # source: the positional files first, since --source takes every file after it
        usage = ("nctk analyze source FEATURES.npz [FEATURES.npz ...] --source SOURCE.npz "
                 "[SOURCE.npz ...] --ground-truth GT.json [options]" if name == "source"
                 else None)
        p = sub.add_parser(name, help=help_text, description=help_text, usage=usage)
        p.add_argument("features", nargs="+", metavar="FEATURES.npz",
                       help="one feature file per model, same target samples")
        p.add_argument("--ground-truth", metavar="GT.json", required=needs_truth,
                       help="JSON {model: accuracy} on the target dataset")
        p.add_argument("--json", metavar="OUT.json",
                       help="write the result as JSON (- for standard output)")
        add_method_arguments(p, default=default_method)
        p.set_defaults(func=func)
        if name in ("fewshot", "timing"):
            p.add_argument("--prior", metavar="PRIOR.json",
                           help="JSON {model: value}, higher = better, for 'recommended' "
                                "(default: the source accuracy recorded for the models, when "
                                "all have one), as in nctk rank")
        if name == "weights":
            p.add_argument("--values", type=types.real_list(),
                           default=",".join(map(str, analyses.PAPER_WEIGHT_VALUES)),
                           help="weight values to try (default: the paper's)")
        if name == "fewshot":
            p.add_argument("--shots", type=types.positive_int_list,
                           default=",".join(map(str, analyses.DEFAULT_SHOTS)),
                           help="samples per class, comma list (default: %(default)s)")
            p.add_argument("--repeats", type=types.positive_int, default=5,
                           help="seeded draws per k (default: 5)")
        if name == "timing":
            p.add_argument("--repeat", type=types.positive_int, default=3,
                           help="times each method scores the pool (default: 3)")
            add_progress_argument(p, help="no progress bar (it is shown on a terminal only "
                                          "anyway)")
        if name == "source":
            p.add_argument("--source", nargs="+", required=True, metavar="SOURCE.npz",
                           help="per model, features of a subset of its pre-training data "
                                "(matched to FEATURES by file stem; labels may differ)")


def _load(args: argparse.Namespace) -> tuple[list[FeatureFile], dict[str, float] | None]:
    sources = [Input("--source", path) for path in getattr(args, "source", None) or []]
    prior = getattr(args, "prior", None)
    check_outputs([Output("--json", args.json)],
                  input_files(args.features, args.ground_truth) + sources
                  + ([Input("--prior", prior)] if prior else []))
    if prior:
        load_prior(prior)  # a bad file fails before any work
    pool = load_pool(args.features)
    check_labels(pool)
    truth = (load_ground_truth(args.ground_truth, [f.name for f in pool])
             if args.ground_truth else None)
    return pool, truth


def _term_method(args: argparse.Namespace) -> Any:
    methods = resolve(args.method)
    if len(methods) != 1:
        raise InputError("this analysis takes one method", file="--method")
    try:
        analyses.term_names(methods[0])
    except InputError as err:
        raise err.located(file="--method") from None
    return methods[0]


def _components_options(method: Any, args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in method_options(method, seed=args.seed).items()
            if k not in method.combine_options}


def _target_components(method: Any, pool: list[FeatureFile], args: argparse.Namespace
                       ) -> dict[str, dict[str, float]]:
    return analyses.components_per_model(pool, method, **_components_options(method, args))


def _prior(args: argparse.Namespace, pool: list[FeatureFile], methods: list[Any]
           ) -> tuple[Prior | None, list[str]]:
    """``recommended``'s prior as ``nctk rank`` resolves it (``--prior``, else the source
    accuracy every file records), and the notes saying which, or that there is none."""
    if all(m.name != RECOMMENDED for m in methods):
        return None, []
    prior, note = resolve_prior(args.prior, pool)
    return prior, [*([note] if note else []), f"{RECOMMENDED}: {prior_phrase(prior)}"]


def _options(args: argparse.Namespace, methods: list[Any], prior: Prior | None
             ) -> dict[str, dict[str, Any]]:
    weights = parse_weights(args.ncti_weights)
    return {m.name: method_options(m, seed=args.seed, ncti_weights=weights,
                                   prior=prior.values if prior else None) for m in methods}


def _finish(args: argparse.Namespace, text: str, result: dict[str, Any],
            pool: list[FeatureFile], prior: Prior | None = None, notes: list[str] = ()) -> int:
    """Print ``text`` and the ``notes`` (first the randomly initialised models of the pool,
    as ``rank`` and ``collapse`` flag them); with ``--json`` write the result, the prior,
    ``random_init`` (those models, when there are any) and the ``provenance`` record."""
    random_init = [f.name for f in pool if f.random_init]
    print(text)
    print_notes([*random_init_notes(random_init), *notes], flags=args.flags)
    if prior is not None:
        result = {**result, "prior": prior.to_json()}
    if random_init:
        result = {**result, "random_init": random_init}
    if args.json:
        from nctk.provenance import provenance

        inputs = {"ground_truth": args.ground_truth,
                  "source_files": getattr(args, "source", None)}
        origin = provenance(labels=pool[0].labels, feature_files=[f.path or f.name for f in pool],
                            seed=args.seed, argv=args.argv,
                            extra={k: v for k, v in inputs.items() if v is not None})
        write_json(args.json, {"analysis": args.analysis, "method": args.method, **result,
                               "provenance": origin})
    return 0


def run_ablation(args: argparse.Namespace) -> int:
    method = _term_method(args)
    pool, truth = _load(args)
    result = analyses.ablation(_target_components(method, pool, args), truth, method)
    terms = analyses.term_names(method)
    rows = [[name, *(v["weights"][t] for t in terms), v["weighted_tau"]]
            for name, v in result.items()]
    text = f"{method.name} term ablation ({len(pool)} models)\n" + format_table(
        ["variant", *(f"w_{t}" for t in terms), "weighted tau"], rows, digits=3,
        scientific=False, indent="  ")
    return _finish(args, text, {"ablation": result}, pool)


def run_weights(args: argparse.Namespace) -> int:
    method = _term_method(args)
    values = args.values
    pool, truth = _load(args)
    raw = _target_components(method, pool, args)
    result = analyses.weight_sweep(raw, truth, method, values)
    rows = [[f"w_{term}", *taus.values()] for term, taus in result.items()]
    text = (f"{method.name} weighted tau vs one term weight (the others at 1), "
            f"{len(pool)} models\n" + format_table(
                ["term", *(fmt_number(v, 2) for v in values)], rows, digits=3,
                scientific=False, indent="  "))
    return _finish(args, text, {"weights": result}, pool)


def run_fewshot(args: argparse.Namespace) -> int:
    methods = resolve(args.method)
    pool, truth = _load(args)
    prior, notes = _prior(args, pool, methods)
    result = analyses.few_shot_files(pool, truth, methods, shots=args.shots,
                                     repeats=args.repeats, seed=args.seed,
                                     options=_options(args, methods, prior))
    rows = [[name, *(few_shot_cell(cell, args.repeats) for cell in per_k.values())]
            for name, per_k in result["methods"].items()]
    text = (f"weighted tau with k samples per class (mean ± std over {args.repeats} draws, "
            f"seed {args.seed}; n = the draws with a defined tau, when fewer)\n"
            + format_table(["method", *(f"k={k}" for k in result["shots"])], rows,
                           indent="  "))
    text += "".join(f"\nnote: {n}" for n in result["notes"])
    return _finish(args, text, {"fewshot": result}, pool, prior, notes)


def few_shot_cell(cell: dict[str, Any], repeats: int) -> str:
    """``mean ± std``; with fewer defined draws than ``repeats`` their number ``(n=K)``,
    and no spread from a single draw (its std of 0 says nothing)."""
    defined = sum(1 for tau in cell["taus"] if tau == tau)  # NaN != NaN
    mean = fmt_number(cell["mean"], 3, scientific=False)
    if defined <= 1:
        return f"{mean} (n={defined})"
    spread = f"{mean} ± {fmt_number(cell['std'], 3, scientific=False)}"
    return spread if defined == repeats else f"{spread} (n={defined})"


def run_timing(args: argparse.Namespace) -> int:
    methods = resolve(args.method)
    pool, truth = _load(args)
    prior, notes = _prior(args, pool, methods)
    options = _options(args, methods, prior)
    result = analyses.timing(pool, methods, repeat=args.repeat, options=options,
                             progress=not args.no_progress)
    headers = ["method", "s/model (min)", "s/model (mean)"]
    rows = [[name, r["per_model_min"], r["per_model_mean"]] for name, r in result.items()]
    if truth is not None:
        headers.append("weighted tau")
        for row, name in zip(rows, result, strict=True):
            result[name]["weighted_tau"] = evaluate(result[name]["scores"], truth)["weighted_tau"]
            row.append(result[name]["weighted_tau"])
    text = (f"wall-clock over {len(pool)} models, best and mean of {args.repeat} runs\n"
            + format_table(headers, rows, digits=5, indent="  "))
    return _finish(args, text, {"timing": result}, pool, prior, notes)


def run_source(args: argparse.Namespace) -> int:
    method = _term_method(args)
    pool, truth = _load(args)
    by_name: dict[str, FeatureFile] = {}
    for path in args.source:
        f = load_feature_file(path)
        if f.name in by_name:
            raise InputError("model name appears twice among --source files", file=path)
        by_name[f.name] = f
    missing = [f.name for f in pool if f.name not in by_name]
    if missing:
        raise InputError(f"no source feature file for model(s) {missing} (matched by file "
                         "stem)", file="--source")
    sources = [by_name[f.name] for f in pool]
    for f in sources:
        try:
            encode_labels(f.labels, f.features.shape[0], "labels")
        except InputError as err:
            raise err.located(file=f.path) from None
    opts = _components_options(method, args)
    source_raw = analyses.components_per_model(sources, method, **opts)
    target_raw = analyses.components_per_model(pool, method, **opts)
    result = analyses.source_terms(source_raw, truth, method, target_raw=target_raw)
    rows = [[name, v["source"], v["target"]] for name, v in result.items()]
    text = (f"{method.name} terms vs the target ground truth (weighted tau), {len(pool)} "
            "models\n" + format_table(["term", "source features", "target features"], rows,
                                      digits=3, scientific=False, indent="  "))
    return _finish(args, text, {"source": result}, pool)
