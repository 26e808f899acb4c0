"""Ranking quality on the published ground truth (NCTI/SFDA benchmark), from the tables alone.

What it computes (``../shared/data/published`` beside the repository by default, or
another folder):

1. The data-free prior of ``data/published/README.md``: a model's score for target dataset D
   is its mean fine-tuned accuracy over the other datasets of the table. Weighted tau per
   dataset and on average, beside the NCTI paper's Tables 1-2 for NCE, LEEP, LogME, NLEEP,
   SFDA and NCTI. Expected averages: 0.837 (supervised), 0.701 (self-supervised, all 12
   models on the paper's 11 datasets).
2. For the prior, per dataset: the 95 % percentile bootstrap CI of the weighted tau over
   models (``nctk.evaluation.bootstrap_weighted_tau``) and the leave-one-model-out tau
   (``leave_one_out_weighted_tau``); and over the whole benchmark, the average tau with one
   model removed from every dataset.
3. For the paper's methods only their per-dataset taus are published (not their scores),
   so the uncertainty computable for them is over datasets: a seeded percentile bootstrap
   of the 11-dataset average, and of the paired difference NCTI minus each other method.

Usage::

    python benchmarks/bench_published.py [PUBLISHED_DIR] [--n-boot 2000] [--seed 0]
                                         [--output FILE.md]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from nctk.cli._table import format_table
from nctk.evaluation import bootstrap_weighted_tau, leave_one_out_weighted_tau, weighted_tau

DEFAULT_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "published"
#: The NCTI paper's target datasets (Tables 1-2); the self-supervised table adds two more.
PAPER_DATASETS = ("aircraft", "caltech101", "cars", "cifar10", "cifar100", "dtd", "flowers",
                  "food", "pets", "sun397", "voc2007")
#: Left out of the paper's self-supervised pool (0 placeholders on resisc and eurosat).
SIMCLR = ("simclr-v1", "simclr-v2")
#: The prior's averages stated in data/published/README.md.
EXPECTED_PRIOR = {"supervised": 0.837, "self_supervised": 0.701}


def prior_scores(table: dict[str, dict[str, float]], target: str, datasets: list[str],
                 models: list[str]) -> dict[str, float]:
    """Each model's mean accuracy over ``datasets`` other than ``target``."""
    others = [d for d in datasets if d != target]
    return {m: float(np.mean([table[d][m] for d in others])) for m in models}


def prior_taus(table: dict[str, dict[str, float]], datasets: list[str], models: list[str]
               ) -> dict[str, float]:
    """Weighted tau of the data-free prior on each dataset."""
    out = {}
    for d in datasets:
        scores = prior_scores(table, d, datasets, models)
        out[d] = weighted_tau([scores[m] for m in models], [table[d][m] for m in models])
    return out


def bootstrap_mean(values: np.ndarray, n_boot: int, seed: int, level: float = 0.95
                   ) -> tuple[float, float]:
    """Percentile CI of the mean of ``values`` (resampled with replacement, seeded)."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def section_prior(name: str, table: dict, paper: dict, datasets: list[str], models: list[str],
                  n_boot: int, seed: int) -> list[str]:
    taus = prior_taus(table, datasets, models)
    methods = [m for m in ("nce", "leep", "logme", "nleep", "sfda", "ncti") if m in paper]
    rows = []
    for d in datasets:
        scores = prior_scores(table, d, datasets, models)
        truth = {m: table[d][m] for m in models}
        boot = bootstrap_weighted_tau(scores, truth, n_boot=n_boot, seed=seed)
        loo = leave_one_out_weighted_tau(scores, truth)
        rows.append([d, taus[d], f"[{boot['low']:.3f}, {boot['high']:.3f}]", loo["worst"],
                     loo["worst_removed"], *(paper[m].get(d) for m in methods)])
    average = float(np.mean(list(taus.values())))
    rows.append(["average", average, "", "", "",
                 *(paper[m].get("average") for m in methods)])
    headers = ["dataset", "prior tau", "prior 95% CI (models)", "LOO worst", "removed",
               *(f"{m} (paper)" for m in methods)]
    lines = [f"### {name}: data-free prior vs the paper's Table "
             f"{'1' if name == 'supervised' else '2'} ({len(models)} models, "
             f"{len(datasets)} datasets)", "", "```",
             format_table(headers, rows, digits=3, scientific=False), "```", "",
             f"Average prior tau {average:.4f}; README states {EXPECTED_PRIOR[name]:.3f}: "
             f"{'reproduced' if round(average, 3) == EXPECTED_PRIOR[name] else 'NOT reproduced'}.",
             ""]
    per_model = {}
    for removed in models:
        rest = [m for m in models if m != removed]
        per_model[removed] = float(np.mean(list(prior_taus(table, datasets, rest).values())))
    worst = min(per_model, key=per_model.get)
    lines.append(f"Leave one model out of every dataset: average prior tau ranges "
                 f"{min(per_model.values()):.3f} (without {worst}) to "
                 f"{max(per_model.values()):.3f} (full pool: "
                 f"{average:.3f}).")
    lines.append("")
    return lines


def section_paper_ci(name: str, paper: dict, n_boot: int, seed: int) -> list[str]:
    methods = [m for m in paper if all(d in paper[m] for d in PAPER_DATASETS)]
    rows = []
    ncti = np.array([paper["ncti"][d] for d in PAPER_DATASETS]) if "ncti" in paper else None
    for m in methods:
        v = np.array([paper[m][d] for d in PAPER_DATASETS])
        low, high = bootstrap_mean(v, n_boot, seed)
        diff = ""
        if ncti is not None and m != "ncti":
            dlow, dhigh = bootstrap_mean(ncti - v, n_boot, seed)
            diff = f"{(ncti - v).mean():+.3f} [{dlow:+.3f}, {dhigh:+.3f}]"
        rows.append([m, float(v.mean()), f"[{low:.3f}, {high:.3f}]", diff])
    return [f"### {name}: the paper's averages with a bootstrap over the 11 datasets", "",
            "```", format_table(["method", "mean tau", "95% CI (datasets)",
                                 "NCTI minus method [95% CI]"], rows, digits=3,
                                scientific=False), "```", ""]


def run(folder: Path, n_boot: int, seed: int) -> str:
    accuracy = json.loads((folder / "finetune_accuracy.json").read_text())
    paper = json.loads((folder / "paper_weighted_tau.json").read_text())
    start = time.perf_counter()
    lines: list[str] = []
    sup = accuracy["supervised"]
    sup_models = list(sup[PAPER_DATASETS[0]])
    lines += section_prior("supervised", sup, paper["supervised"], list(PAPER_DATASETS),
                           sup_models, n_boot, seed)
    ssl = accuracy["self_supervised"]
    ssl_models = list(ssl[PAPER_DATASETS[0]])
    lines += section_prior("self_supervised", ssl, paper["self_supervised"],
                           list(PAPER_DATASETS), ssl_models, n_boot, seed)
    summary = []
    for label, datasets, models in [
        ("12 models, 11 paper datasets (README's 0.701)", PAPER_DATASETS, ssl_models),
        ("10 models (no simclr, the paper's scored pool), 11 datasets", PAPER_DATASETS,
         [m for m in ssl_models if m not in SIMCLR]),
        ("10 models, all 13 datasets", tuple(ssl), [m for m in ssl_models if m not in SIMCLR]),
    ]:
        taus = prior_taus(ssl, list(datasets), models)
        summary.append([label, float(np.mean(list(taus.values())))])
    lines += ["### self_supervised: the prior's average under other pool definitions", "",
              "```", format_table(["pool", "average prior tau"], summary, digits=4,
                                  scientific=False), "```", ""]
    lines += section_paper_ci("supervised", paper["supervised"], n_boot, seed)
    lines += section_paper_ci("self_supervised", paper["self_supervised"], n_boot, seed)
    lines.append(f"(n_boot = {n_boot}, seed = {seed}; computed in "
                 f"{time.perf_counter() - start:.1f} s)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DIR,
                        help="folder with finetune_accuracy.json and paper_weighted_tau.json")
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="also write the markdown here")
    args = parser.parse_args()
    text = run(args.folder.resolve(), args.n_boot, args.seed)
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
