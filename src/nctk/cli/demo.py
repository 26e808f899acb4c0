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
import math
import shutil
import time
from pathlib import Path
from typing import Any

from nctk.cli import COMMANDS
from nctk.cli import _types as types
from nctk.cli._table import fmt_number, format_table
from nctk.cli.rank import STAT_TITLES, evaluation_notes, member_notes, print_notes, result_json
from nctk.evaluation import STATISTICS
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
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                        help="no progress bars (they are shown on a terminal only anyway)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nctk.analyses import effective_options, supported_options
    from nctk.demo.assets import ASSETS, GROUND_TRUTH, asset
    from nctk.demo.run import provenance, run_demo
    from nctk.provenance import provenance as run_record
    from nctk.transfer.guidance import flag_notes, method_order, pool_flags, recommendation

    check_outputs([Output("--out", args.out,
                          names=(DEMO_JSON, REPORT, GROUND_TRUTH, f"{FEATURES}/*.npz"))],
                  [Input("the shipped demo assets", ASSETS)])
    started = time.perf_counter()
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    result = run_demo(models=models, methods=args.methods, seed=args.seed,
                      progress=not args.quiet)
    result.methods = {name: result.methods[name] for name in method_order(result.methods)}
    candidates = {"seed": args.seed, **({"prior": result.prior.values} if result.prior else {})}
    options = {name: supported_options(name, candidates) for name in result.methods}
    labels = result.pool[0].labels
    flags = pool_flags(result.methods, num_classes=len(set(labels.tolist())), options=options)
    story = provenance(result.info, len(labels))
    notes = (member_notes(result.methods, result.prior) + flag_notes(flags)
             + evaluation_notes(result.methods, result.truth))
    advice = recommendation(result.methods)
    print(f"nctk demo: ranking {len(result.pool)} models, offline\n")
    print("\n".join(f"  {line}" for line in story) + "\n")
    print(pool_table(result) + "\n")
    print(method_table(result) + "\n")
    width = max(len("ground truth"), *map(len, result.methods))
    by_truth = sorted(result.truth, key=result.truth.__getitem__, reverse=True)
    print(f"{'ground truth':<{width}}  {' > '.join(by_truth)}")
    for name, ranked in result.methods.items():
        print(f"{name:<{width}}  {' > '.join(ranked.ranking)}")
    print("\n" + advice)

    out = Path(args.out)
    features = out / FEATURES
    features.mkdir(parents=True, exist_ok=True)
    for file in result.pool:
        save_feature_file(features / f"{file.name}.npz", file.features, file.labels,
                          source_logits=file.source_logits, layers=file.layers,
                          source_accuracy=file.source_accuracy)
    with atomic_path(out / GROUND_TRUTH) as tmp:
        shutil.copyfile(asset(GROUND_TRUTH), tmp)
    record = run_record(labels=labels, data="demo:target",
                        models={f.name: f"demo:{f.name}" for f in result.pool}, seed=args.seed,
                        argv=args.argv,
                        method_options={name: effective_options(name, o)
                                        for name, o in options.items()})
    data = result_json(result.methods, result.evaluation, result.prior, result.prior_evaluation)
    data.update(ground_truth=result.truth, layers=result.layers, pool=result.info,
                seconds=result.seconds, notes=story + notes, provenance=record,
                guidance={"recommended": advice,
                          "flags": {m: f.to_json() for m, f in flags.items()}})
    write_json(out / DEMO_JSON, data)
    written = [out / DEMO_JSON, features, out / GROUND_TRUTH]
    if not args.no_report:
        from nctk.report import write_report

        written.append(write_report(
            out / REPORT, title=f"nctk demo: {len(result.pool)} models pre-trained "
            "on CIFAR-10 source classes", methods=result.methods, evaluation=result.evaluation,
            truth=result.truth, layers=result.layers, notes=story + notes, flags=flags,
            recommendation=advice, provenance=record, prior=result.prior,
            prior_evaluation=result.prior_evaluation))
    print_notes(notes, written)
    print(f"\nre-rank the saved features: nctk rank {features}/*.npz --method all "
          f"--ground-truth {out / GROUND_TRUTH}")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(f"done in {time.perf_counter() - started:.1f} s ({stages})")
    return 0


def pool_table(result: Any) -> str:
    """The models: size, source accuracy, ground truth and its rank."""
    figures = {m["name"]: m for m in result.info["models"]}
    by_truth = sorted(result.truth, key=result.truth.__getitem__, reverse=True)
    rows = [[by_truth.index(f.name) + 1, f.name, figures[f.name]["parameters"],
             figures[f.name]["source_epochs"], figures[f.name]["source_test_accuracy"],
             result.truth[f.name]] for f in result.pool]
    rows.sort(key=lambda row: row[0])
    return "the pool, best ground truth first\n" + format_table(
        ["rank", "model", "params", "src epochs", "source acc", "fine-tuned acc (truth)"],
        rows, digits=4, indent="  ")


def method_table(result: Any) -> str:
    """One row per method and one for the data-free prior, best weighted tau first:
    correlations, top pick, seconds."""
    rows = [[name, *(result.evaluation[name][k] for k in STATISTICS),
             result.methods[name].ranking[0], result.methods[name].seconds]
            for name in result.methods]
    if result.prior_evaluation is not None:
        values = result.prior.values
        rows.append(["prior: source accuracy", *(result.prior_evaluation[k] for k in STATISTICS),
                     max(values, key=values.get), 0.0])

    def tau(row: list[Any]) -> float:
        value = row[1]
        return float("-inf") if value is None or math.isnan(value) else value

    rows.sort(key=tau, reverse=True)
    return ("methods, best weighted tau first (weighted tau = scipy.stats.weightedtau of "
            "scores vs truth)\n" + format_table(
                ["method", *(STAT_TITLES[k] for k in STATISTICS), "top pick", "seconds"],
                rows, digits=3, indent="  ") + "\n  "
            + f"best model by ground truth: {max(result.truth, key=result.truth.get)} "
            f"({fmt_number(max(result.truth.values()), 4)})")
