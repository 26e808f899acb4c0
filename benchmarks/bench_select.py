"""Issue 20's evidence: how well ``nctk select`` picks the model to fine-tune, and at what cost.

For every fine-tuning target of the collections built by ``build_select_data.py`` (each
model's selection curve: every epoch's validation accuracy of the run ``nctk select``
trains; its ground truth: the mean test accuracy of fine-tuning runs with seeds the
selection never uses; its feature file; the prior), every strategy picks one model:

* ``prior``, ``recommended``, ``ncti``: the top-1 of a zero-training ranking (no
  fine-tuning but the pick's own);
* ``random+SH@f``: successive halving on a random order of the pool (mean over
  ``--random-orders`` seeded orders), the budget a fraction f of brute force;
* ``hybrid+SH@f``: ``nctk select``: the hybrid order of ``recommended`` and the prior, then
  successive halving, at f = 0.1, 0.25, 0.5;
* ``brute force``: every model fine-tuned for E epochs, the best validation accuracy wins.

Successive halving is replayed with ``nctk.select.schedule.successive_halving`` itself,
its ``evaluate`` reading the recorded curves (the best validation accuracy up to each
rung's epoch): the same decisions ``nctk select`` makes, because its rungs are prefixes of
the very runs recorded (tested in tests/test_select.py). ``--verify`` runs the real
``nctk select`` on a few (target, budget) configurations, one thread as the curves were
recorded, and checks that it picks the same model with the same rung table.

Regret = the best ground truth of the pool minus the pick's, in points. Cost = model-epochs
spent / brute force (M models x E epochs): every strategy pays the pick's own E-epoch
fine-tuning, the zero-training phase where it scores the pool (N / (3 n_train + n_val)
model-epochs per model, :mod:`nctk.select.budget`), and the fine-tuning of successive
halving; ``random+SH`` pays no zero-training phase.

Usage (from the repository root)::

    python benchmarks/bench_select.py --data /work/zoo/select --json results/select.json \\
        --plot results/select_regret.png [--verify dfhst:0.25,cifar10:0.1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nctk.errors import InputError
from nctk.select.budget import Budget, binomial_margin, plan, zero_training_epochs
from nctk.select.schedule import successive_halving
from nctk.select.shortlist import hybrid_order, ranking

BUDGETS = (0.1, 0.25, 0.5)
ETA = 3
ZERO_TRAINING = ("prior", "recommended", "ncti")


@dataclass
class Target:
    """One fine-tuning target: its pool, curves, ground truth and zero-training orders."""

    name: str
    folder: Path
    specs: dict[str, str]
    curves: dict[str, list[float]]
    truth: dict[str, float]
    orders: dict[str, list[str]]
    epochs: int
    samples: int
    train: int
    val: int
    options: str
    seed_truths: dict[str, list[float]]
    selection_test: dict[str, float]

    @property
    def models(self) -> list[str]:
        return list(self.specs)

    def regret(self, pick: str) -> float:
        """Best ground truth minus the pick's, in points."""
        return 100 * (max(self.truth.values()) - self.truth[pick])

    def zero_epochs(self) -> float:
        return len(self.specs) * zero_training_epochs(self.samples, self.train, self.val)


def split_sizes(folder: Path, val_fraction: float, seed: int) -> tuple[int, int, int]:
    """(N, n_train, n_val) of the target's train draw, split as ``finetune`` splits it."""
    from nctk.sampling import train_validation_split
    from nctk.validation import encode_labels

    labels = np.load(folder / "train.npz")["labels"]
    train, val = train_validation_split(encode_labels(labels).codes, val_fraction, seed)
    return len(labels), len(train), len(val)


def zero_training_orders(folder: Path, models: Sequence[str], prior: Mapping[str, float]
                         ) -> dict[str, list[str]]:
    """Rankings of the pool from its feature files: recommended (with the prior), NCTI,
    the prior, and the hybrid order ``nctk select`` shortlists from."""
    import nctk.transfer  # noqa: F401  (registers the methods)
    from nctk.io import load_pool
    from nctk.transfer.ranking import rank_pool_methods
    from nctk.transfer.registry import get_method

    pool = load_pool([str(folder / "features" / f"{m}.npz") for m in models])
    results = rank_pool_methods(pool, [get_method("recommended"), get_method("ncti")],
                                {"recommended": {"prior": dict(prior)}, "ncti": {}})
    orders = {"recommended": results["recommended"].ranking, "ncti": results["ncti"].ranking,
              "prior": ranking(prior)}
    orders["hybrid"] = hybrid_order(orders["recommended"], orders["prior"])
    return orders


def load_target(folder: Path) -> Target:
    """A target folder of ``build_select_data.py`` (see ``benchmarks/selection_truth.py``)."""
    record = json.loads((folder / "target.json").read_text())
    recipe = record["recipe"]
    specs = dict(record["models"])
    runs = json.loads((folder / "curves.json").read_text())
    curves = {m: c["val_accuracy"] for m, c in runs.items()}
    seeds = json.loads((folder / "ground_truth_seeds.json").read_text())
    truth = json.loads((folder / "ground_truth.json").read_text())
    prior = json.loads((folder / "prior.json").read_text())
    samples, train, val = split_sizes(folder, recipe["val_fraction"],
                                      recipe["selection_seed"])
    return Target(folder.name, folder, specs, curves, truth,
                  zero_training_orders(folder, list(specs), prior), recipe["epochs"],
                  samples, train, val, record["select_options"],
                  {m: list(v.values()) for m, v in seeds.items()},
                  {m: c["test_accuracy"] for m, c in runs.items()})


def replay(target: Target, order: Sequence[str], fraction: float, *, zero: bool = True,
           margin: bool = False) -> dict:
    """Successive halving on ``order`` at ``fraction`` of brute force, from the curves;
    ``margin``: ties within the standard error of a difference of validation accuracies."""
    m = len(target.models)
    chosen = plan(Budget(runs=fraction * m), pool=m, epochs=target.epochs, eta=ETA,
                  samples=target.samples if zero else 0, train=target.train, val=target.val)
    schedule = successive_halving(
        order[:chosen.shortlist], chosen.rungs, ETA,
        lambda epoch, models: {k: max(target.curves[k][:epoch]) for k in models},
        margin=binomial_margin(target.val) if margin else None)
    spent = (chosen.zero_epochs if zero else 0.0) + schedule.epochs_trained
    return {"pick": schedule.pick, "cost": spent / (m * target.epochs),
            "regret": target.regret(schedule.pick), "shortlist": chosen.shortlist,
            "rungs": chosen.rungs, "schedule": schedule.to_json()}


def zero_training_pick(target: Target, method: str) -> dict:
    """The top-1 of a zero-training ranking, then its own E-epoch fine-tuning."""
    m = len(target.models)
    zero = 0.0 if method == "prior" else target.zero_epochs()
    pick = target.orders[method][0]
    return {"pick": pick, "cost": (zero + target.epochs) / (m * target.epochs),
            "regret": target.regret(pick)}


def brute_force(target: Target) -> dict:
    """Every model fine-tuned for E epochs; the best validation accuracy (ties: the hybrid
    order) is the pick."""
    rank = {m: i for i, m in enumerate(target.orders["hybrid"])}
    pick = min(target.models, key=lambda m: (-max(target.curves[m]), rank[m]))
    return {"pick": pick, "cost": 1.0, "regret": target.regret(pick)}


def random_halving(target: Target, fraction: float, orders: int) -> dict:
    """Successive halving on ``orders`` seeded random orders: mean cost and regret, and
    the share of orders that picked the best model."""
    rng = np.random.default_rng(0)
    runs = [replay(target, list(rng.permutation(target.models)), fraction, zero=False)
            for _ in range(orders)]
    best = max(target.truth, key=target.truth.get)
    return {"pick": f"{sum(r['pick'] == best for r in runs)}/{orders} orders the best",
            "cost": float(np.mean([r["cost"] for r in runs])),
            "regret": float(np.mean([r["regret"] for r in runs])),
            "best_share": float(np.mean([r["pick"] == best for r in runs]))}


def resolution(target: Target) -> dict:
    """Can the target's data tell its best models apart? In points: the gap between the
    two best ground truths; the mean seed-to-seed standard deviation of a model's test
    accuracy and the standard error of a difference of two 3-seed means it implies;
    the standard error of a difference of two validation accuracies at the best final
    validation accuracy, sqrt(2 p (1 - p) / n_val); how many models end within that
    standard error of the best validation accuracy; and the regret of an oracle that
    knew each selection run's test accuracy (on the whole test draw): the pick that the
    selection runs themselves point to, however large the validation split."""
    first, second = sorted(target.truth, key=target.truth.get, reverse=True)[:2]
    seed_std = float(np.mean([np.std(v, ddof=1) for v in target.seed_truths.values()]))
    count = len(next(iter(target.seed_truths.values())))
    finals = {m: max(c) for m, c in target.curves.items()}
    top = max(finals.values())
    val_se = binomial_margin(target.val)(top)
    oracle = max(target.selection_test, key=target.selection_test.get)
    return {"best": first, "gap": 100 * (target.truth[first] - target.truth[second]),
            "seed_std": 100 * seed_std, "truth_diff_se": 100 * seed_std * np.sqrt(2 / count),
            "val": target.val, "val_diff_se": 100 * val_se,
            "within_val_se": sum(top - v <= val_se for v in finals.values()),
            "models": len(finals), "selection_test_oracle": oracle,
            "selection_test_oracle_regret": target.regret(oracle)}


def refused_or(strategy: Any, *args: Any) -> dict:
    """``strategy(*args)``, or a refusal when the budget buys no selection on this pool."""
    try:
        return strategy(*args)
    except InputError as err:
        return {"pick": None, "error": err.problem}


def strategies(target: Target, orders: int) -> dict[str, dict]:
    """Every strategy's pick, cost and regret on one target."""
    out = {method: zero_training_pick(target, method) for method in ZERO_TRAINING}
    for fraction in BUDGETS:
        out[f"random+SH@{fraction:g}"] = refused_or(random_halving, target, fraction, orders)
    for fraction in BUDGETS:
        out[f"hybrid+SH@{fraction:g}"] = refused_or(replay, target, target.orders["hybrid"],
                                                    fraction)
    for fraction in BUDGETS:
        out[f"hybrid+SH±SE@{fraction:g}"] = refused_or(
            lambda *a: replay(*a, margin=True), target, target.orders["hybrid"], fraction)
    out["brute force"] = brute_force(target)
    best = max(target.truth, key=target.truth.get)
    for row in out.values():
        if row.get("pick") in target.truth:
            row["best"] = row["pick"] == best
    return out


def summary(results: Mapping[str, Mapping[str, dict]]) -> dict[str, dict]:
    """Per strategy over the targets: mean cost, mean regret, share of targets where it
    picked the best model (random: the mean share over orders)."""
    out = {}
    for strategy in next(iter(results.values())):
        rows = [r[strategy] for r in results.values() if r[strategy].get("pick")]
        if not rows:
            out[strategy] = {"targets": 0}
            continue
        best = [r.get("best_share", float(r.get("best", False))) for r in rows]
        out[strategy] = {"targets": len(rows),
                         "cost": float(np.mean([r["cost"] for r in rows])),
                         "regret": float(np.mean([r["regret"] for r in rows])),
                         "max_regret": float(np.max([r["regret"] for r in rows])),
                         "best_share": float(np.mean(best))}
    return out


def goal(results: Mapping[str, Mapping[str, dict]], strategy: str = "hybrid+SH@0.25"
         ) -> list[str]:
    """Issue 20's goal, line by line, for ``strategy``."""
    rows = {t: r[strategy] for t, r in results.items() if r[strategy].get("pick")}
    if len(rows) < len(results):
        return [f"{strategy}: refused on {len(results) - len(rows)} of {len(results)} "
                "targets (budget too small for two candidates)"]
    regrets = [r["regret"] for r in rows.values()]
    beats = [all(rows[t]["regret"] < results[t][z]["regret"] or rows[t]["regret"] == 0
                 for z in ZERO_TRAINING) for t in rows]
    lines = [f"cost at most 25 % of brute force: {max(r['cost'] for r in rows.values()):.1%} "
             f"at most", f"mean regret {np.mean(regrets):.2f} points (goal <= 0.5)",
             f"lower than every zero-training pick (or zero) on {sum(beats)} of {len(rows)} "
             "targets (goal: all)",
             f"the true best on {sum(bool(r['best']) for r in rows.values())} of {len(rows)} "
             "targets (goal: two thirds)"]
    return [f"{strategy}: {line}" for line in lines]


def markdown(results: Mapping[str, Mapping[str, dict]], means: Mapping[str, dict]) -> str:
    """The tables of benchmarks/README.md: per target, then the means."""
    lines = []
    for target, rows in results.items():
        lines += [f"#### {target}", "", "| strategy | cost | regret (points) | pick |",
                  "|---|---:|---:|---|"]
        for strategy, row in rows.items():
            if row.get("pick") is None:
                lines.append(f"| {strategy} | - | - | refused: {row.get('error', '')} |")
                continue
            mark = " (best)" if row.get("best") else ""
            lines.append(f"| {strategy} | {row['cost']:.1%} | {row['regret']:.2f} | "
                         f"{row['pick']}{mark} |")
        lines.append("")
    lines += ["#### Mean over the targets", "",
              "| strategy | targets | mean cost | mean regret | max regret | best picked |",
              "|---|---:|---:|---:|---:|---:|"]
    for strategy, row in means.items():
        if not row["targets"]:
            lines.append(f"| {strategy} | 0 | - | - | - | - |")
            continue
        lines.append(f"| {strategy} | {row['targets']} | {row['cost']:.1%} | "
                     f"{row['regret']:.2f} | {row['max_regret']:.2f} | "
                     f"{row['best_share']:.0%} |")
    return "\n".join(lines)


def resolution_markdown(resolved: Mapping[str, dict]) -> str:
    """The table of :func:`resolution`, one line per target."""
    lines = ["| target | best | gap to 2nd (points) | seed std | SE of a 3-seed difference "
             "| val images | val SE of a difference | models within it | oracle on the "
             "selection runs' test accuracy (regret) |", "|---|---|---:|---:|---:|---:|---:|"
             "---:|---|"]
    for target, r in resolved.items():
        lines.append(f"| {target} | {r['best']} | {r['gap']:.2f} | {r['seed_std']:.2f} | "
                     f"{r['truth_diff_se']:.2f} | {r['val']} | {r['val_diff_se']:.2f} | "
                     f"{r['within_val_se']} of {r['models']} | "
                     f"{r['selection_test_oracle']} ({r['selection_test_oracle_regret']:.2f}) |")
    return "\n".join(lines)


FAMILIES = (("random+SH@", "s", "#2563eb"), ("hybrid+SH@", "o", "#ea580c"),
            ("hybrid+SH±SE@", "D", "#16a34a"))
POINTS = (("prior", "^", "#7c3aed"), ("recommended", "v", "#dc2626"),
          ("ncti", "x", "#0891b2"), ("brute force", "*", "#4b5563"))


def plot_panel(ax: Any, rows: Mapping[str, dict], title: str) -> None:
    """One panel: each successive halving family as a line over its budgets (refused
    budgets left out), the zero-training picks and brute force as points."""
    for family, marker, color in FAMILIES:
        points = [(r["cost"], r["regret"]) for k, r in rows.items()
                  if k.startswith(family) and r.get("regret") is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker=marker, color=color,
                    label=family.rstrip("@"))
    for name, marker, color in POINTS:
        ax.plot(rows[name]["cost"], rows[name]["regret"], marker, color=color,
                markersize=8, linestyle="none", label=name)
    ax.axvline(0.25, color="#9ca3af", linestyle="--", linewidth=0.9)
    ax.axhline(0.5, color="#9ca3af", linestyle=":", linewidth=0.9)
    ax.set_xscale("log")
    ax.set_ylim(bottom=-0.25)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)


def plot(results: Mapping[str, Mapping[str, dict]], means: Mapping[str, dict],
         path: Path) -> None:
    """Regret (points) against cost (fraction of brute force, log scale): one panel per
    target, and the means over the targets (a strategy refused on a target is averaged
    over the others: see the table's 'targets' column)."""
    from matplotlib.figure import Figure

    panels = [*results.items(), ("mean over the targets", means)]
    cols = 3
    fig = Figure(figsize=(10, 3.2 * -(-len(panels) // cols)), layout="constrained")
    axes = fig.subplots(-(-len(panels) // cols), cols, squeeze=False).ravel()
    for ax, (name, rows) in zip(axes, panels, strict=False):
        plot_panel(ax, rows, name)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    axes[0].legend(fontsize=7, frameon=False)
    fig.supxlabel("cost (fraction of brute force, log scale)", fontsize=9)
    fig.supylabel("regret (points)", fontsize=9)
    fig.savefig(path, dpi=90)


def verify(target: Target, fraction: float, work: Path) -> dict:
    """Run ``nctk select`` (one thread) at ``fraction`` of brute force; compare its pick
    and rung table with the replay."""
    expected = replay(target, target.orders["hybrid"], fraction)
    out = work / f"{target.name}_{fraction:g}"
    command = [sys.executable, "-m", "nctk", "select", "--models",
               ",".join(f"{m}={s}" for m, s in target.specs.items()),
               "--data", f"npz:{target.folder / 'train.npz'}",
               "--prior", str(target.folder / "prior.json"),
               "--budget", f"{fraction * len(target.models):g}", *target.options.split(),
               "--out", str(out), "--json", str(out / "select.json"),
               "--cache-dir", str(work / "cache"), "--no-progress"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                        "OPENBLAS_NUM_THREADS": "1"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        return {"ok": False, "error": run.stderr.strip().splitlines()[-1:]}
    real = json.loads((out / "select.json").read_text())
    rows = [{k: r[k] for k in ("model", "scores", "dropped_at")}
            for r in real["schedule"]["rows"]]
    replayed = [{k: r[k] for k in ("model", "scores", "dropped_at")}
                for r in expected["schedule"]["rows"]]
    return {"ok": real["pick"] == expected["pick"] and rows == replayed,
            "pick": real["pick"], "replayed_pick": expected["pick"],
            "cost_fraction": real["cost_fraction"], "replayed_cost": expected["cost"],
            "seconds": real["seconds"]}


def targets_of(data: Sequence[Path]) -> list[Path]:
    """Every target folder (holding ``target.json`` and ``curves.json``) under ``data``."""
    found = []
    for root in data:
        found += sorted(p.parent for p in root.rglob("target.json")
                        if (p.parent / "curves.json").is_file())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", type=Path, required=True,
                        help="collections built by build_select_data.py")
    parser.add_argument("--random-orders", type=int, default=100)
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--plot", type=Path, help="regret against cost (PNG)")
    parser.add_argument("--verify", default="",
                        help="TARGET:FRACTION,... configurations to run for real")
    args = parser.parse_args()
    folders = targets_of(args.data)
    unique = len({f.name for f in folders}) == len(folders)
    targets = {f.name if unique else f"{f.parent.name}/{f.name}": load_target(f)
               for f in folders}
    results = {name: strategies(t, args.random_orders) for name, t in targets.items()}
    means = summary(results)
    resolved = {name: resolution(t) for name, t in targets.items()}
    goals = goal(results) + goal(results, "hybrid+SH±SE@0.25")
    print(markdown(results, means))
    print("\n" + resolution_markdown(resolved))
    print("\n" + "\n".join(goals))
    checks = {}
    with tempfile.TemporaryDirectory(prefix="bench-select-") as work:
        for item in filter(None, args.verify.split(",")):
            name, fraction = item.rsplit(":", 1)
            target = next(t for key, t in targets.items() if key.endswith(name))
            checks[item] = verify(target, float(fraction), Path(work))
            print(f"verify {item}: {json.dumps(checks[item])}", flush=True)
    if args.plot:
        plot(results, means, args.plot)
    if args.json:
        from nctk.io import write_json

        write_json(args.json, {"results": results, "means": means, "resolution": resolved,
                               "goal": goals, "verify": checks})


if __name__ == "__main__":
    main()
