"""``nctk demo``: the embedded, offline demonstration (docs/contract.md).

Ranks the shipped pool of small models (trained by the project on CIFAR-10 source
classes, see :mod:`nctk.demo.run`) on a shipped target subset with every registered
method, evaluates each ranking against the shipped fine-tuning ground truth, prints the
result, and writes into ``--out``: ``demo.json`` (the ``rank --json`` object plus the
ground truth, the layer profiles and the build record), ``report.html``, the feature
files and the ground truth, so ``nctk rank`` can be re-run on them.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

from nctk.cli import COMMANDS
from nctk.cli import _types as types
from nctk.cli._table import fmt_number, format_table
from nctk.cli.extract import add_progress_argument
from nctk.cli.rank import STAT_TITLES, print_notes
from nctk.evaluation import STATISTICS, by_weighted_tau
from nctk.io import atomic_path, save_feature_file, write_json
from nctk.paths import Input, Output, check_outputs

DEMO_JSON = "demo.json"
REPORT = "report.html"
FEATURES = "features"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help=COMMANDS["demo"],
        description="Offline demo: rank the shipped pool of small models (pre-trained by "
                    "nctk on the CIFAR-10 classes airplane, automobile, bird, cat, deer) for "
                    "the CIFAR-10 classes dog, frog, horse, ship, truck with every method, "
                    "and compare each ranking with the measured fine-tuning accuracies.")
    parser.add_argument("--out", default="nctk-demo", metavar="DIR",
                        help="output folder (default: %(default)s in the current folder)")
    parser.add_argument("--methods", default="all", metavar="NAME[,NAME...]|all",
                        help="transferability methods to run (default: all)")
    parser.add_argument("--models", metavar="NAME,NAME,...",
                        help="use only these pool members (at least 2; default: all)")
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report")
    parser.add_argument("--seed", type=types.seed, default=0,
                        help="seed for seeded methods (default: 0)")
    add_progress_argument(parser)
    parser.add_argument("--select-budget", type=types.positive_float, default=2.0,
                        metavar="B", help="budget of the closing nctk select step, in "
                        "fine-tuning runs of the average model (default: 2.0)")
    parser.add_argument("--no-select", action="store_true",
                        help="skip the closing nctk select step (fine-tuning)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nctk.demo.assets import ASSETS, GROUND_TRUTH
    from nctk.demo.run import provenance, run_demo

    check_outputs([Output("--out", args.out,
                          names=(DEMO_JSON, REPORT, GROUND_TRUTH, f"{FEATURES}/*.npz"))],
                  [Input("the shipped demo assets", ASSETS)])
    started = time.perf_counter()
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    result = run_demo(models=models, methods=args.methods, seed=args.seed,
                      progress=not args.no_progress, argv=args.argv)
    story = provenance(result.info, len(result.pool[0].labels))
    print_summary(result, story, args.flags)
    selection = None if args.no_select else select_step(result, args)
    written = write_outputs(result, story, Path(args.out), report=not args.no_report,
                            selection=selection)
    print_notes(result.outcome.notes, written, flags=args.flags)
    print(f"\nre-rank the saved features: nctk rank {written[1]}/*.npz --method all "
          f"--ground-truth {written[2]}")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(f"done in {time.perf_counter() - started:.1f} s ({stages})")
    return 0


def print_summary(result: Any, story: list[str], flags: dict[str, str]) -> None:
    """What the demo is, the pool, each method's evaluation, every ranking and the advice
    (a parameter it names shown as the command's option, ``flags``)."""
    from nctk.cli import in_flags

    outcome = result.outcome
    print(f"nctk demo: ranking {len(result.pool)} models, offline\n")
    print("\n".join(f"  {line}" for line in story) + "\n")
    print(pool_table(result) + "\n")
    print(method_table(outcome) + "\n")
    width = max(len("ground truth"), *map(len, outcome.results))
    by_truth = sorted(outcome.truth, key=outcome.truth.__getitem__, reverse=True)
    print(f"{'ground truth':<{width}}  {' > '.join(by_truth)}")
    for name, ranked in outcome.results.items():
        print(f"{name:<{width}}  {' > '.join(ranked.ranking)}")
    print("\n" + in_flags(outcome.advice, flags))


def select_step(result: Any, args: argparse.Namespace) -> Any:
    """The closing ``nctk select`` on the pool, at ``--select-budget``: the plan, the rung
    table, the pick beside the true best; the :class:`~nctk.select.api.Selection`."""
    from nctk.cli.select import plan_lines, result_text
    from nctk.demo.selection import select_demo

    started = time.perf_counter()
    selection = select_demo(result, budget=args.select_budget, progress=not args.no_progress)
    result.seconds["select"] = time.perf_counter() - started
    truth = result.outcome.truth
    best = max(truth, key=truth.get)
    print(f"\nnctk select: which model to fine-tune, spending {args.select_budget:g} "
          f"fine-tuning runs of {selection.plan.epochs} epochs (the ground truth's recipe)")
    print(plan_lines(selection.plan, selection.zero) + "\n\n" + result_text(selection))
    print(f"true best: {best} ({fmt_number(truth[best], 4)}); the pick "
          f"{selection.pick} ({fmt_number(truth[selection.pick], 4)}), regret "
          f"{100 * (truth[best] - truth[selection.pick]):.2f} points; the select step took "
          f"{result.seconds['select']:.1f} s")
    return selection


def write_outputs(result: Any, story: list[str], out: Path, *, report: bool,
                  selection: Any = None) -> list[Path]:
    """``demo.json``, the feature files, the ground truth and (``report``) the report, in
    ``out``; the paths written, in that order. With a ``selection``, demo.json holds it
    under ``selection`` and the report gets its section."""
    from nctk.demo.assets import GROUND_TRUTH, asset

    outcome = result.outcome
    if selection is not None:
        from nctk.select.report import selection_section

        outcome.add_json("selection", selection.to_json())
        outcome.add_section("selection", "Selection by successive halving",
                            selection_section(selection))
    features = out / FEATURES
    features.mkdir(parents=True, exist_ok=True)
    for file in result.pool:
        save_feature_file(features / f"{file.name}.npz", file.features, file.labels,
                          source_logits=file.source_logits, layers=file.layers,
                          source_accuracy=file.source_accuracy)
    with atomic_path(out / GROUND_TRUTH) as tmp:
        shutil.copyfile(asset(GROUND_TRUTH), tmp)
    data = outcome.to_json() | {"ground_truth": outcome.truth, "layers": result.layers,
                                "pool": result.info, "seconds": result.seconds,
                                "notes": story + outcome.notes}
    written = [write_json(out / DEMO_JSON, data), features, out / GROUND_TRUTH]
    if report:
        written.append(outcome.write_report(
            out / REPORT, title=f"nctk demo: {len(result.pool)} models pre-trained on "
            "CIFAR-10 source classes", layers=result.layers, notes=story + outcome.notes))
    return written


def pool_table(result: Any) -> str:
    """The models: size, source accuracy, ground truth and its rank."""
    figures = {m["name"]: m for m in result.info["models"]}
    truth = result.outcome.truth
    by_truth = sorted(truth, key=truth.__getitem__, reverse=True)
    rows = [[by_truth.index(f.name) + 1, f.name, figures[f.name]["parameters"],
             figures[f.name]["source_epochs"], figures[f.name]["source_test_accuracy"],
             truth[f.name]] for f in result.pool]
    rows.sort(key=lambda row: row[0])
    return "the pool, best ground truth first\n" + format_table(
        ["rank", "model", "params", "src epochs", "source acc", "fine-tuned acc (truth)"],
        rows, digits=4, indent="  ")


def method_table(outcome: Any) -> str:
    """One row per method and one for the data-free prior, best weighted tau first (as
    ``nctk rank``'s summary and the report): correlations, top pick, seconds."""
    rows = {name: [*(outcome.evaluation[name][k] for k in STATISTICS),
                   outcome.results[name].ranking[0], outcome.results[name].seconds]
            for name in outcome.results}
    evaluations = dict(outcome.evaluation)
    if outcome.prior_evaluation is not None:
        values = outcome.prior.values
        rows["prior: source accuracy"] = [*(outcome.prior_evaluation[k] for k in STATISTICS),
                                          max(values, key=values.get), 0.0]
        evaluations["prior: source accuracy"] = outcome.prior_evaluation
    truth = outcome.truth
    return ("methods, best weighted tau first (weighted tau = scipy.stats.weightedtau of "
            "scores vs truth)\n" + format_table(
                ["method", *(STAT_TITLES[k] for k in STATISTICS), "top pick", "seconds"],
                [[name, *rows[name]] for name in by_weighted_tau(evaluations)], digits=3,
                indent="  ") + "\n  "
            + f"best model by ground truth: {max(truth, key=truth.get)} "
            f"({fmt_number(max(truth.values()), 4)})")
