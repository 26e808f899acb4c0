"""Ranking quality of every method, every data-free prior and ``recommended``, per target,
and the leave-one-collection-out (LOCO) choice of the rule that ``recommended`` ships.

Collections (``recommended_data.py``): ``tmlr`` (public per-model scores of 10 timm models
x 11 targets), ``published`` (the SFDA/NCTI tables: priors only), ``demo`` (the 9 models of
``nctk demo``), ``zoo`` (24 small models x 4 tasks x LP/FT), ``select`` (the same 24 models
on the 3 selection targets, fine-tuned with nctk's recipe).

Priors (need no target data): the source accuracy (ImageNet top-1 for tmlr and the
published supervised pool, the CIFAR-5 source test accuracy elsewhere), the parameter
count, and the other-targets prior: a model's mean z-scored fine-tuned accuracy over the
other targets of the collection (on the zoo, the twin LP/FT target of the same task is left
out too).

Every weighted tau is ``scipy.stats.weightedtau(scores, truth)``; the per-target interval
is the 95 % percentile bootstrap over models (the draws of
``nctk.evaluation.bootstrap_weighted_tau``); the interval of the mean over targets resamples
the models once per replicate (the same draw in every target); differences are paired on
the same draws, and "worse beyond the noise" means the whole 95 % interval is below 0.

The rule (``rule_selection.py``): candidates are declared there; with and without a prior,
each collection is held out in turn, the rule is chosen on the others and scored on it; the
rule chosen on every collection is the one ``recommended`` ships, and this script checks
that the shipped method's rows equal it.

Per-model scores of the demo, the zoo and the selection targets are kept in
``benchmarks/results/`` so that the figures re-print without the features; ``--rescore``
recomputes them (``--zoo DIR``: build_zoo.py's output; ``--select DIR``:
build_select_data.py's, whose targets not yet kept are scored even without ``--rescore``);
``--restate`` recomputes only the ``recommended`` rows, from the kept member rows, by the
rule the library ships now.

Usage (from the repository root)::

    python benchmarks/bench_recommended.py [--collections tmlr,published,demo,zoo,select]
        [--shared ../shared/data] [--rescore] [--restate] [--zoo ZOO_DIR]
        [--select SELECT_DIR]
        [--n-boot 2000] [--seed 0] [--markdown OUT.md]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nctk.evaluation import weighted_tau
from nctk.io import write_json
from recommended_data import (
    RECOMMENDED,
    SOURCE_PRIOR,
    TMLR_PRIOR,
    Collection,
    demo_scores,
    load_published,
    load_tmlr,
    own_collection,
    restate_recommended,
    select_scores,
    zoo_scores,
)
from rule_report import rule_lines
from rule_selection import Evidence, Rule, bootstrap_draws, bootstrap_taus, target_pairs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
#: The figures data/tmlr/README.md states (the former rule, NCTI + ETran (+ prior), among
#: them), reproduced by this script from the public rows.
TMLR_EXPECTED = {"etran_equal": 0.668, "ncti": 0.663, TMLR_PRIOR: 0.646,
                 "prior: other targets": 0.736}
OWN = ("demo", "zoo", "select")


# --------------------------------------------------------------------------- evaluation


def interval(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def evaluate_collection(col: Collection, n_boot: int, seed: int) -> dict:
    """Per row: per-target tau with its interval, the mean with its interval; and
    ``recommended`` minus each prior, paired, per target and on average."""
    draws = bootstrap_draws(len(next(iter(col.truth.values()))), n_boot, seed)
    rows = [r for r in col.rows if col.kinds[r] != "seed"]  # seed rows: the rule's table
    boot = {row: bootstrap_taus(target_pairs(col.rows[row], col.truth), draws) for row in rows}
    result = {"targets": col.targets, "kinds": col.kinds, "notes": col.notes, "rows": {}}
    for row in rows:
        per_target = {}
        for i, (t, (x, y)) in enumerate(zip(col.targets, target_pairs(col.rows[row],
                                                                       col.truth), strict=True)):
            low, high = interval(boot[row][:, i])
            per_target[t] = {"tau": weighted_tau(x, y), "low": low, "high": high}
        low, high = interval(np.nanmean(boot[row], axis=1))
        result["rows"][row] = {"per_target": per_target, "low": low, "high": high,
                               "mean": float(np.mean([v["tau"] for v in per_target.values()]))}
    if RECOMMENDED in col.rows:
        result["versus_priors"] = {prior: paired(result, boot, RECOMMENDED, prior)
                                   for prior, kind in col.kinds.items() if kind == "prior"}
    result["n_boot"], result["seed"] = n_boot, seed
    return result


def paired(result: dict, boot: Mapping[str, np.ndarray], row: str, other: str) -> dict:
    """``row`` minus ``other``, per target and on average, with paired intervals."""
    diff = boot[row] - boot[other]
    per_target = {}
    for i, t in enumerate(result["targets"]):
        low, high = interval(diff[:, i])
        per_target[t] = {"diff": (result["rows"][row]["per_target"][t]["tau"]
                                  - result["rows"][other]["per_target"][t]["tau"]),
                         "low": low, "high": high, "worse_beyond_noise": bool(high < 0)}
    low, high = interval(np.nanmean(diff, axis=1))
    return {"per_target": per_target, "low": low, "high": high,
            "mean": result["rows"][row]["mean"] - result["rows"][other]["mean"]}


# ----------------------------------------------------------------------------- printing


def _cell(v: Mapping[str, float]) -> str:
    return f"{v['tau']:.3f} [{v['low']:.2f}, {v['high']:.2f}]"


def markdown(col: Collection, ev: dict, paper: Mapping | None = None) -> list[str]:
    targets = ev["targets"]
    order = sorted(ev["rows"], key=lambda r: -ev["rows"][r]["mean"])
    lines = [f"### {col.name}: {len(next(iter(col.truth.values())))} models x "
             f"{len(targets)} targets", "",
             "| row | kind | mean tau [95% CI] | " + " | ".join(targets) + " |",
             "|---|---|---|" + "---|" * len(targets)]
    for row in order:
        r = ev["rows"][row]
        name = f"**{row}**" if row == RECOMMENDED else row
        lines.append(f"| {name} | {ev['kinds'][row]} | {r['mean']:.3f} [{r['low']:.3f}, "
                     f"{r['high']:.3f}] | "
                     + " | ".join(_cell(r["per_target"][t]) for t in targets) + " |")
    for method, taus in (paper or {}).items():
        if all(t in taus for t in targets):
            lines.append(f"| {method} (paper) | published | "
                         f"{float(np.mean([taus[t] for t in targets])):.3f} | "
                         + " | ".join(f"{taus[t]:.3f}" for t in targets) + " |")
    lines.append("")
    for prior, v in ev.get("versus_priors", {}).items():
        worse = [t for t, d in v["per_target"].items() if d["worse_beyond_noise"]]
        lines.append(f"- recommended minus {prior}: mean {v['mean']:+.3f} [{v['low']:+.3f}, "
                     f"{v['high']:+.3f}]; targets worse beyond the noise: "
                     f"{', '.join(worse) if worse else 'none'}")
    return lines + [f"- {note}" for note in col.notes] + [""]


# --------------------------------------------------------------------------------- main


def own_scores(name: str, args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict:
    """The kept per-model scores of ``demo``, ``zoo`` or ``select`` (recomputed first with
    ``--rescore`` or when missing; ``--select DIR`` without ``--rescore`` scores the
    targets of DIR not yet kept)."""
    path = RESULTS / f"{name}_scores.json"
    adding = name == "select" and args.select is not None and path.exists()
    if args.rescore or adding or not path.exists():
        folder = {"zoo": args.zoo, "select": args.select}.get(name, True)
        if folder is None:
            parser.error(f"--rescore of {name} needs --{name} DIR")
        if name == "demo":
            kept = demo_scores(args.seed)
        elif name == "zoo":
            kept = zoo_scores(args.zoo, args.seed)
            write_json(RESULTS / "zoo_build.json", kept.pop("record"))
        else:
            kept = select_scores(args.select, json.loads(
                (RESULTS / "zoo_build.json").read_text()), args.seed,
                json.loads(path.read_text()) if adding and not args.rescore else None)
        write_json(path, kept)
    if args.restate:
        write_json(path, restate_recommended(json.loads(path.read_text())))
    return json.loads(path.read_text())


def collections(args: argparse.Namespace, parser: argparse.ArgumentParser
                ) -> list[tuple[Collection, str | None, Mapping | None]]:
    """(collection, its prior row for the rule or None, the paper's taus or None), in the
    order asked."""
    wanted = [c.strip() for c in args.collections.split(",") if c.strip()]
    out = []
    for name in wanted:
        if name == "tmlr":
            out.append((load_tmlr(args.shared / "tmlr" / "scores.txt"), TMLR_PRIOR, None))
        elif name == "published":
            for pool in ("supervised", "self_supervised"):
                col, paper = load_published(args.shared / "published", pool)
                out.append((col, None, paper))
        elif name in OWN:
            out.append((own_collection(name, own_scores(name, args, parser)), SOURCE_PRIOR,
                        None))
        else:
            parser.error(f"unknown collection {name!r}")
    return out


def tmlr_check(ev: dict, col: Collection) -> str:
    """The figures of data/tmlr/README.md, reproduced (the former rule among them)."""
    evidence = Evidence("tmlr", col.rows, col.truth, TMLR_PRIOR, np.zeros((0, 0), int))
    former = {"ncti+etran_equal": 0.734, "ncti+etran_equal+prior": 0.768}
    got = [f"{row} {ev['rows'][row]['mean']:.3f} (README {want:.3f})"
           for row, want in TMLR_EXPECTED.items()]
    got += [f"{name} {evidence.mean_tau(Rule(tuple(name.split('+')))):.3f} (README {want:.3f})"
            for name, want in former.items()]
    return "README figures reproduced: " + "; ".join(got)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", default="tmlr,published,demo,zoo,select")
    parser.add_argument("--shared", type=Path, default=SHARED,
                        help="the shared data folder (default: ../shared/data beside the "
                             "repository)")
    parser.add_argument("--zoo", type=Path, help="build_zoo.py's output (--rescore)")
    parser.add_argument("--select", type=Path, help="build_select_data.py's output "
                                                     "(--rescore)")
    parser.add_argument("--rescore", action="store_true",
                        help="recompute the kept per-model scores of demo, zoo, select")
    parser.add_argument("--restate", action="store_true",
                        help="recompute the kept recommended rows of demo, zoo, select from "
                             "their member rows by the rule the library ships now")
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path, help="write the tables here too")
    args = parser.parse_args()
    started = time.perf_counter()
    lines: list[str] = []
    results: dict = {}
    chosen = collections(args, parser)
    for col, _, paper in chosen:
        ev = evaluate_collection(col, args.n_boot, args.seed)
        lines += markdown(col, ev, paper)
        if col.name == "tmlr":
            lines += [tmlr_check(ev, col), ""]
        results[col.name] = ev
    rule_text, results["rule"] = rule_lines(
        [(col, prior) for col, prior, _ in chosen if prior is not None], args.n_boot,
        args.seed)
    lines += rule_text
    lines.append(f"\n(n_boot = {args.n_boot}, seed = {args.seed}; "
                 f"{time.perf_counter() - started:.0f} s)")
    text = "\n".join(lines)
    print(text)
    path = RESULTS / "recommended.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    write_json(path, {**kept, **results})
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
