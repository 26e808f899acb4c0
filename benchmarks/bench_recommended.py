"""Ranking quality of every method, every data-free prior and ``recommended``, per target.

Four collections (docs/methods-recommended.md, benchmarks/README.md):

1. ``tmlr``: the public per-model scores of 10 timm models x 11 targets
   (``../shared/data/tmlr/scores.txt``): every published score row, the ImageNet top-1
   prior, the other-targets prior, and ``recommended`` (the mean rank of NCTI, ETran and
   the ImageNet prior, as nctk ships it), plus the leave-one-target-out (LOTO) selection
   that chose its members: in each fold the subset of nctk's scores with the best mean
   weighted tau on the other 10 targets, evaluated on the held-out one.
2. ``published``: the fine-tuned accuracies of the SFDA/NCTI benchmark
   (``../shared/data/published``). Only the priors are applicable (the tables hold no
   per-model scores, so no estimator and no ``recommended`` can be computed); the papers'
   per-target weighted tau of their methods are printed beside them, without intervals.
3. ``demo``: the 9 models of ``nctk demo`` on its 300 target images (features extracted
   from the shipped assets), ground truth = full fine-tuning.
4. ``zoo``: the 24 models of ``benchmarks/build_zoo.py`` on 4 tasks, each with a
   linear-probe (``_lp``) and a full fine-tuning (``_ft``) ground truth: 8 targets.

Priors (need no target data): the source accuracy (ImageNet top-1 for tmlr and the
published supervised pool, the CIFAR-5 source test accuracy for the demo and the zoo),
the parameter count (demo, zoo), and the other-targets prior: a model's mean z-scored
fine-tuned accuracy over the other targets of the collection (on the zoo, the twin
target of the same task, LP or FT, is left out too). ``recommended`` is the fixed rule
chosen on tmlr; nothing is tuned on the demo or the zoo.

Every weighted tau is ``scipy.stats.weightedtau(scores, truth)``; the per-target interval
is the 95 % percentile bootstrap over models (the draws of
``nctk.evaluation.bootstrap_weighted_tau``, checked equal in benchmarks/README.md);
the interval of the mean over targets resamples the models once per replicate (the same
draw in every target). ``recommended`` minus a prior is a paired bootstrap on the same
draws: a target where the whole interval is below 0 is a loss beyond the noise.

The demo's and the zoo's per-model scores are kept in ``benchmarks/results/`` (with the
zoo's ground truth and build record), so the figures re-print without the features;
``--rescore`` recomputes them (the zoo needs ``--zoo DIR``, the output of build_zoo.py).

Usage (from the repository root)::

    python benchmarks/bench_recommended.py [--collections tmlr,published,demo,zoo]
        [--shared ../shared/data] [--zoo ZOO_DIR] [--rescore] [--n-boot 2000] [--seed 0]
        [--markdown OUT.md]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nctk.transfer  # noqa: F401  (registers every method)
from bench_published import PAPER_DATASETS, SIMCLR
from nctk.evaluation import weighted_tau
from nctk.io import load_pool, write_json
from nctk.transfer import available_methods, get_method, rank_pool
from nctk.transfer.recommended import rank_average

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
#: nctk's scores present in the public tmlr file (pactran and tmi are not in nctk).
TMLR_NCTK = ("hscore", "nce", "leep", "nleep", "parc", "reg_hscore", "sfda", "logme", "gbc",
             "etran_equal", "ncti")
#: The public rows named otherwise in nctk: the tmlr ``etran`` row is the equal-weight ETran.
TMLR_NAMES = {"etran": "etran_equal"}
#: The figures data/tmlr/README.md states, reproduced by this script.
TMLR_EXPECTED = {"etran_equal": 0.668, "ncti": 0.663, "prior: imagenet top-1": 0.646,
                 "ncti+etran": 0.734, "recommended": 0.768, "prior: other targets": 0.736}
RECOMMENDED = "recommended"
#: The ``recommended`` method without a prior (the mean rank of NCTI and ETran).
NO_PRIOR = "ncti+etran"
ESTIMATORS = ("ncti", "etran_equal")


@dataclass
class Collection:
    """Ground truth and per-model scores of one collection.

    Attributes:
        truth: target -> model -> ground-truth accuracy.
        rows: row -> target -> model -> score (higher = better).
        kinds: row -> "method", "prior", "recommended" or "other" (published, not nctk).
        notes: lines printed under the collection's table.
    """

    name: str
    truth: dict[str, dict[str, float]]
    rows: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def targets(self) -> list[str]:
        return list(self.truth)

    def add(self, row: str, kind: str, scores: dict[str, dict[str, float]]) -> None:
        self.rows[row] = scores
        self.kinds[row] = kind


# ------------------------------------------------------------------------- priors, rules


def zscore(values: Mapping[str, float]) -> dict[str, float]:
    v = np.array(list(values.values()), dtype=np.float64)
    return dict(zip(values, (v - v.mean()) / v.std(), strict=True))


def other_targets_prior(truth: Mapping[str, Mapping[str, float]],
                        excluded: Mapping[str, Sequence[str]] | None = None
                        ) -> dict[str, dict[str, float]]:
    """Per target: each model's mean z-scored accuracy over the other targets (and not over
    ``excluded[target]``), a data-free prior that uses other targets' fine-tuning."""
    out = {}
    for target in truth:
        others = [t for t in truth if t != target and t not in (excluded or {}).get(target, ())]
        z = [zscore(truth[t]) for t in others]
        out[target] = {m: float(np.mean([zt[m] for zt in z])) for m in truth[target]}
    return out


def recommended_row(col: Collection, prior_row: str | None) -> dict[str, dict[str, float]]:
    """``recommended`` re-stated from public per-model scores (tmlr): the mean rank of NCTI,
    ETran (and the prior) per target. The public ``etran`` row is the equal-weight ETran
    that ``recommended`` uses; the demo and the zoo run the method itself (``score_pool``)."""
    out = {}
    for t in col.targets:
        members = {m: col.rows[m][t] for m in ESTIMATORS}
        if prior_row is not None:
            members["prior"] = col.rows[prior_row][t]
        out[t] = rank_average(members)[0]
    return out


def rank_average_row(col: Collection, rows: Sequence[str]) -> dict[str, dict[str, float]]:
    return {t: rank_average({r: col.rows[r][t] for r in rows})[0] for t in col.targets}


# ----------------------------------------------------------------------- the collections


def load_tmlr(path: Path) -> Collection:
    """The public scores: target blocks ``D name``, rows ``<row> v1 .. v10``."""
    models: list[str] = []
    blocks: dict[str, dict[str, list[float]]] = {}
    current = None
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "#":
            models = parts[2:]
        elif parts[0] == "D":
            current = parts[1]
            blocks[current] = {}
        else:
            blocks[current][TMLR_NAMES.get(parts[0], parts[0])] = [float(v) for v in parts[1:]]

    def row(name: str) -> dict[str, dict[str, float]]:
        return {t: dict(zip(models, b[name], strict=True)) for t, b in blocks.items()}

    col = Collection("tmlr", row("test"))
    for name in next(iter(blocks.values())):
        if name not in ("test", "imagenet"):
            col.add(name, "method" if name in TMLR_NCTK else "other", row(name))
    col.add("prior: imagenet top-1", "prior", row("imagenet"))
    col.add("prior: other targets", "prior", other_targets_prior(col.truth))
    col.add(NO_PRIOR, "recommended", recommended_row(col, None))
    col.add(RECOMMENDED, "recommended", recommended_row(col, "prior: imagenet top-1"))
    col.notes.append("pactran and tmi are published rows that nctk does not implement "
                     "(kind 'other'). The public etran row is the equal-weight ETran (0..2), "
                     "shown as etran_equal; ncti is the pool NCTI (-1..2): "
                     "docs/methods-recommended.md.")
    return col


def loto_selection(col: Collection, candidates: Sequence[str], sizes: Sequence[int],
                   prior: str | None) -> dict:
    """Leave-one-target-out choice of the rank-averaged subset (optionally + a prior).

    In each fold the subset with the best mean weighted tau over the other targets is
    chosen and evaluated on the held-out target.
    """
    subsets = [s for k in sizes for s in itertools.combinations(candidates, k)]
    taus = {}
    for s in subsets:
        rows = [*s, prior] if prior else list(s)
        scores = rank_average_row(col, rows)
        taus[s] = np.array([_tau(scores[t], col.truth[t]) for t in col.targets])
    chosen, held_out = [], []
    for i, _ in enumerate(col.targets):
        best = max(subsets, key=lambda s, i=i: float(np.mean(np.delete(taus[s], i))))
        chosen.append(best)
        held_out.append(float(taus[best][i]))
    return {"prior": prior, "sizes": list(sizes),
            "chosen": {"+".join(s): n for s, n in Counter(chosen).most_common()},
            "per_target": dict(zip(col.targets, ("+".join(s) for s in chosen), strict=True)),
            "loto_mean": float(np.mean(held_out)),
            "best_in_sample": {"+".join(s): float(taus[s].mean()) for s in sorted(
                subsets, key=lambda s: -taus[s].mean())[:3]}}


def load_published(folder: Path, pool: str) -> tuple[Collection, dict]:
    """The published accuracies with the applicable priors; the paper's taus beside."""
    accuracy = json.loads((folder / "finetune_accuracy.json").read_text())[pool]
    paper = json.loads((folder / "paper_weighted_tau.json").read_text())[pool]
    targets = [t for t in accuracy if pool == "supervised" or t in PAPER_DATASETS]
    models = [m for m in accuracy[targets[0]] if m not in SIMCLR]
    truth = {t: {m: accuracy[t][m] for m in models} for t in targets}
    col = Collection(f"published {pool}", truth)
    col.add("prior: other targets (mean accuracy)", "prior", {
        t: {m: float(np.mean([truth[u][m] for u in targets if u != t])) for m in models}
        for t in targets})
    col.add("prior: other targets", "prior", other_targets_prior(truth))
    if pool == "supervised":
        top1 = torchvision_top1(models)
        col.add("prior: imagenet top-1", "prior", {t: top1 for t in targets})
        col.notes.append("ImageNet top-1: acc@1 of the torchvision IMAGENET1K_V1 weights "
                         "(their metadata, offline), the weights the benchmark used.")
    col.notes.append("Not applicable: every nctk estimator and recommended (the tables hold "
                     "no features and no per-model scores). The papers' taus are shown "
                     "without intervals.")
    if pool == "self_supervised":
        col.notes.append("simclr-v1/v2 left out (0 placeholders on two datasets); the paper's "
                         "11 datasets.")
    return col, paper


def torchvision_top1(models: Sequence[str]) -> dict[str, float]:
    """ImageNet acc@1 of each model's torchvision IMAGENET1K_V1 weights (metadata only)."""
    import torchvision.models as tvm

    from nctk.extract.models import imagenet_top1

    return {m: imagenet_top1(tvm.get_model_weights(m).IMAGENET1K_V1) for m in models}


def score_pool(files: Sequence[Path], seed: int, prior: Mapping[str, float]
               ) -> dict[str, dict[str, float]]:
    """method -> model -> score for every registered method, ``recommended`` as shipped
    (with ``prior``) and without a prior (row ``ncti+etran``)."""
    from nctk.transfer.registry import supported_options

    pool = load_pool([str(f) for f in files])
    out = {}
    for name in available_methods():
        method = get_method(name)
        options = supported_options(method, {"seed": seed})
        if name == RECOMMENDED:
            out[NO_PRIOR] = rank_pool(pool, method, **options).scores
            options["prior"] = {f.name: prior[f.name] for f in pool}
        out[name] = rank_pool(pool, method, **options).scores
    return out


def demo_scores(seed: int) -> dict:
    """The demo pool's features (extracted from the shipped assets) scored by every method."""
    import tempfile

    from nctk.demo.models import pool_names
    from nctk.demo.run import asset, extract_pool_features, pool_info
    from nctk.extract import write_pool
    from nctk.io import load_ground_truth

    pool = extract_pool_features(pool_names())
    info = pool_info()
    accuracy = {m["name"]: m["source_test_accuracy"] for m in info["models"]}
    with tempfile.TemporaryDirectory() as tmp:
        files = write_pool(pool, tmp)
        scores = score_pool(files, seed, accuracy)
    return {"scores": {"demo": scores},
            "truth": {"demo": load_ground_truth(asset("ground_truth.json"))},
            "source_accuracy": accuracy,
            "parameters": {m["name"]: m["parameters"] for m in info["models"]}}


def zoo_scores(zoo: Path, seed: int) -> dict:
    """The zoo's feature files (one folder per task) scored by every method."""
    record = json.loads((zoo / "zoo.json").read_text())
    tasks = [t["name"] for t in record["tasks"]]
    accuracy = {m["name"]: m["source_test_accuracy"] for m in record["models"]}
    scores = {}
    for task in tasks:
        started = time.perf_counter()
        scores[task] = score_pool(sorted((zoo / "features" / task).glob("*.npz")), seed,
                                  accuracy)
        print(f"zoo {task}: scored in {time.perf_counter() - started:.1f} s", flush=True)
    return {"scores": scores, "truth": json.loads((zoo / "ground_truth.json").read_text()),
            "source_accuracy": accuracy,
            "parameters": {m["name"]: m["parameters"] for m in record["models"]},
            "record": record}


def own_collection(name: str, kept: dict) -> Collection:
    """Demo or zoo: every method, the priors and ``recommended`` (prior: source accuracy).

    A target ``<task>_lp`` / ``<task>_ft`` is scored on the features of ``<task>``.
    """
    truth = kept["truth"]
    task_of = {t: t.rsplit("_", 1)[0] if t.endswith(("_lp", "_ft")) else t for t in truth}
    col = Collection(name, truth)
    methods = [m for m in next(iter(kept["scores"].values())) if m not in (RECOMMENDED, NO_PRIOR)]
    for method in methods:
        col.add(method, "method", {t: kept["scores"][task_of[t]][method] for t in truth})
    col.add("prior: source accuracy", "prior", {t: kept["source_accuracy"] for t in truth})
    col.add("prior: parameters", "prior",
            {t: {m: float(v) for m, v in kept["parameters"].items()} for t in truth})
    if len(truth) > 1:
        twins = {t: [u for u in truth if u != t and task_of[u] == task_of[t]] for t in truth}
        col.add("prior: other targets", "prior", other_targets_prior(truth, twins))
    for row in (NO_PRIOR, RECOMMENDED):  # the shipped method, not a re-statement of it
        col.add(row, "recommended", {t: kept["scores"][task_of[t]][row] for t in truth})
    return col


# --------------------------------------------------------------------------- evaluation


def _tau(scores: Mapping[str, float], truth: Mapping[str, float]) -> float:
    models = list(truth)
    return weighted_tau([scores[m] for m in models], [truth[m] for m in models])


def _arrays(col: Collection, row: str) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for t in col.targets:
        models = list(col.truth[t])
        out.append((np.array([col.rows[row][t][m] for m in models], dtype=np.float64),
                    np.array([col.truth[t][m] for m in models], dtype=np.float64)))
    return out


def bootstrap_draws(col: Collection, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, M) model indices, drawn as ``bootstrap_weighted_tau`` draws them."""
    size = len(next(iter(col.truth.values())))
    return np.random.default_rng(seed).integers(0, size, size=(n_boot, size))


def replicate_taus(col: Collection, row: str, draws: np.ndarray) -> np.ndarray:
    """(n_boot, targets) taus on the resampled models."""
    pairs = _arrays(col, row)
    return np.array([[weighted_tau(x[idx], y[idx]) for x, y in pairs] for idx in draws])


def interval(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def evaluate_collection(col: Collection, n_boot: int, seed: int) -> dict:
    """Per row: per-target tau with its interval, the mean with its interval; and
    ``recommended`` minus each prior, paired, per target and on average."""
    draws = bootstrap_draws(col, n_boot, seed)
    boot_taus = {row: replicate_taus(col, row, draws) for row in col.rows}
    result = {"targets": col.targets, "kinds": col.kinds, "notes": col.notes, "rows": {}}
    for row in col.rows:
        per_target = {}
        for i, t in enumerate(col.targets):
            # the draws and percentiles of nctk.evaluation.bootstrap_weighted_tau (same seed,
            # same model count): its interval, computed once for the paired differences too
            low, high = interval(boot_taus[row][:, i])
            per_target[t] = {"tau": _tau(col.rows[row][t], col.truth[t]), "low": low,
                             "high": high}
        mean = float(np.mean([v["tau"] for v in per_target.values()]))
        low, high = interval(np.nanmean(boot_taus[row], axis=1))
        result["rows"][row] = {"per_target": per_target, "mean": mean, "low": low,
                               "high": high}
    if RECOMMENDED in col.rows:
        result["versus_priors"] = {}
        for prior in (r for r, k in col.kinds.items() if k == "prior"):
            diff = boot_taus[RECOMMENDED] - boot_taus[prior]
            per_target = {}
            for i, t in enumerate(col.targets):
                est = (result["rows"][RECOMMENDED]["per_target"][t]["tau"]
                       - result["rows"][prior]["per_target"][t]["tau"])
                low, high = interval(diff[:, i])
                per_target[t] = {"diff": est, "low": low, "high": high,
                                 "worse_beyond_noise": bool(high < 0)}
            low, high = interval(np.nanmean(diff, axis=1))
            result["versus_priors"][prior] = {
                "per_target": per_target, "low": low, "high": high,
                "mean": result["rows"][RECOMMENDED]["mean"] - result["rows"][prior]["mean"]}
    result["n_boot"], result["seed"] = n_boot, seed
    return result


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
    if paper:
        for method, taus in paper.items():
            if all(t in taus for t in targets):
                mean = float(np.mean([taus[t] for t in targets]))
                lines.append(f"| {method} (paper) | published | {mean:.3f} | "
                             + " | ".join(f"{taus[t]:.3f}" for t in targets) + " |")
    lines.append("")
    for prior, v in ev.get("versus_priors", {}).items():
        worse = [t for t, d in v["per_target"].items() if d["worse_beyond_noise"]]
        lines.append(f"- recommended minus {prior}: mean {v['mean']:+.3f} [{v['low']:+.3f}, "
                     f"{v['high']:+.3f}]; targets worse beyond the noise: "
                     f"{', '.join(worse) if worse else 'none'}")
    lines += [f"- {note}" for note in col.notes]
    lines.append("")
    return lines


def best_rows(ev: dict) -> list[str]:
    means = {r: v["mean"] for r, v in ev["rows"].items()}
    best = max(means.values())
    return [r for r, m in means.items() if m == best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", default="tmlr,published,demo,zoo")
    parser.add_argument("--shared", type=Path, default=SHARED,
                        help="the shared data folder (default: ../shared/data beside the "
                             "repository)")
    parser.add_argument("--zoo", type=Path, help="output folder of build_zoo.py (--rescore)")
    parser.add_argument("--rescore", action="store_true",
                        help="recompute the demo's and the zoo's per-model scores")
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path, help="write the tables here too")
    args = parser.parse_args()
    wanted = [c.strip() for c in args.collections.split(",") if c.strip()]
    started = time.perf_counter()
    lines: list[str] = []
    results: dict = {}

    if "tmlr" in wanted:
        col = load_tmlr(args.shared / "tmlr" / "scores.txt")
        ev = evaluate_collection(col, args.n_boot, args.seed)
        check = [f"{row} {ev['rows'][row]['mean']:.3f} (README {want:.3f})"
                 for row, want in TMLR_EXPECTED.items()]
        selection = [loto_selection(col, ["etran_equal", "ncti"] + [m for m in TMLR_NCTK
                                                              if m not in ESTIMATORS],
                                    sizes, prior)
                     for sizes, prior in (((2,), None), ((1, 2, 3), None),
                                          ((1, 2, 3), "prior: imagenet top-1"))]
        ev["loto_selection"] = selection
        lines += markdown(col, ev)
        lines.append("README figures reproduced: " + "; ".join(check))
        for s in selection:
            lines.append(f"- LOTO selection, subsets of size {s['sizes']}"
                         f"{' + ' + s['prior'] if s['prior'] else ''}: chosen "
                         f"{s['chosen']}; held-out mean tau {s['loto_mean']:.3f}; best "
                         f"in-sample {s['best_in_sample']}")
        lines.append("")
        results["tmlr"] = ev
    if "published" in wanted:
        for pool in ("supervised", "self_supervised"):
            col, paper = load_published(args.shared / "published", pool)
            ev = evaluate_collection(col, args.n_boot, args.seed)
            lines += markdown(col, ev, paper)
            results[col.name] = ev
    for name in ("demo", "zoo"):
        if name not in wanted:
            continue
        path = RESULTS / f"{name}_scores.json"
        if args.rescore or not path.exists():
            if name == "zoo" and args.zoo is None:
                parser.error("--rescore of the zoo needs --zoo DIR (build_zoo.py's output)")
            kept = demo_scores(args.seed) if name == "demo" else zoo_scores(args.zoo,
                                                                           args.seed)
            if name == "zoo":
                write_json(RESULTS / "zoo_build.json", kept.pop("record"))
            write_json(path, kept)
        kept = json.loads(path.read_text())
        col = own_collection(name, kept)
        ev = evaluate_collection(col, args.n_boot, args.seed)
        lines += markdown(col, ev)
        results[name] = ev
    for name, ev in results.items():
        if RECOMMENDED in ev["rows"]:
            best = best_rows(ev)
            lines.append(f"- {name}: best mean tau: {', '.join(best)} "
                         f"({ev['rows'][best[0]]['mean']:.3f}); recommended "
                         f"{ev['rows'][RECOMMENDED]['mean']:.3f}")
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
