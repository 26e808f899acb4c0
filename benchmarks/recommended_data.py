"""The collections of ``bench_recommended.py``: ground truths and per-model scores.

* ``tmlr``: the public per-model scores of 10 timm models x 11 targets
  (``../shared/data/tmlr/scores.txt``; its ``etran`` row is nctk's ``etran_equal``);
* ``published``: the fine-tuned accuracies of the SFDA/NCTI benchmark (priors only);
* ``demo``: the 9 models of ``nctk demo`` on its shipped target images (features extracted
  from the shipped assets), its shipped ground truth;
* ``zoo``: the 24 models of ``build_zoo.py`` on 4 tasks, a linear-probe (``_lp``) and a
  fine-tuning (``_ft``) ground truth each;
* ``select``: the same 24 models on the 3 selection targets of ``build_select_data.py``
  (their own draws, nctk's preprocessing of a checkpoint, fine-tuned with nctk's recipe).

``recommended`` rows are the shipped rule: on tmlr stated from the public rows through
``nctk.transfer.recommended.combine_scores``, elsewhere the method run on the features.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import nctk.transfer  # noqa: F401  (registers every method)
from bench_published import PAPER_DATASETS, SIMCLR
from nctk.io import load_pool
from nctk.transfer import available_methods, get_method, rank_pool
from nctk.transfer.recommended import combine_scores
from rule_selection import seeded

RECOMMENDED = "recommended"
#: The ``recommended`` method without a prior.
NO_PRIOR = "recommended (no prior)"
#: nctk's scores present in the public tmlr file (pactran and tmi are not in nctk).
TMLR_NCTK = ("hscore", "nce", "leep", "nleep", "parc", "reg_hscore", "sfda", "logme", "gbc",
             "etran_equal", "ncti")
#: The public rows named otherwise in nctk: the tmlr ``etran`` row is the equal-weight ETran.
TMLR_NAMES = {"etran": "etran_equal"}
TMLR_PRIOR = "prior: imagenet top-1"
#: The prior ``recommended`` is given on the demo, the zoo and the selection targets.
SOURCE_PRIOR = "prior: source accuracy"
#: Raw terms kept beside the scores (row ``<method>: <term>``, kind "term"): each term
#: alone as a ranking, for the analysis of why a method fails on a family of models.
TERMS = {"etran": ("energy", "lda", "svd")}
#: Seeds beside the run's (seed + k) for the methods that take one: how much a rule with
#: such a member moves with the seed.
MORE_SEEDS = (1, 2, 3)

Scores = dict[str, dict[str, float]]  # target -> model -> score


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


def recommended_row(col: Collection, prior_row: str | None) -> Scores:
    """``recommended`` re-stated from the public per-model rows through the library's rule
    on scored pools (:func:`nctk.transfer.recommended.combine_scores`), per target."""
    return {t: combine_scores({r: col.rows[r][t] for r in col.rows},
                              prior=col.rows[prior_row][t] if prior_row else None)[0]
            for t in col.targets}


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
    col.add(RECOMMENDED, "recommended", recommended_row(col, TMLR_PRIOR))
    col.notes.append("pactran and tmi are published rows that nctk does not implement "
                     "(kind 'other'). The public etran row is the equal-weight ETran (0..2), "
                     "shown as etran_equal; ncti is the pool NCTI (-1..2): "
                     "docs/methods-recommended.md.")
    return col


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
    (with ``prior``) and without a prior (row ``NO_PRIOR``), the raw :data:`TERMS`, and each
    method that takes a seed again with ``seed + k`` for k in :data:`MORE_SEEDS` (row
    ``<method> (seed <seed + k>)``)."""
    from nctk.transfer.registry import supported_options

    pool = load_pool([str(f) for f in files])
    out = {}
    for name in available_methods():
        method = get_method(name)
        options = supported_options(method, {"seed": seed})
        if name == RECOMMENDED:
            out[NO_PRIOR] = rank_pool(pool, method, **options).scores
            options["prior"] = {f.name: prior[f.name] for f in pool}
        result = rank_pool(pool, method, **options)
        out[name] = result.scores
        if "seed" in options and name != RECOMMENDED:
            for k in MORE_SEEDS:
                out[seeded(name, seed + k)] = rank_pool(pool, method, **{
                    **options, "seed": seed + k}).scores
        for term in TERMS.get(name, ()):
            out[f"{name}: {term}"] = {m: c[term] for m, c in result.components.items()}
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


def select_scores(folder: Path, zoo_record: Mapping, seed: int, kept: Mapping | None = None
                  ) -> dict:
    """The selection targets (``build_select_data.py``'s output): each target's feature
    files scored by every method, its ground truth and its prior (source accuracy). The
    targets already in ``kept`` (a former result) are kept, not scored again."""
    targets = sorted(p.parent.name for p in folder.glob("*/ground_truth.json"))
    scores, truth = dict((kept or {}).get("scores", {})), dict((kept or {}).get("truth", {}))
    for target in targets:
        prior = json.loads((folder / target / "prior.json").read_text())
        truth[target] = json.loads((folder / target / "ground_truth.json").read_text())
        if target in scores:
            continue
        started = time.perf_counter()
        scores[target] = score_pool(sorted((folder / target / "features").glob("*.npz")),
                                    seed, prior)
        print(f"select {target}: scored in {time.perf_counter() - started:.1f} s", flush=True)
    return {"scores": scores, "truth": truth, "source_accuracy": prior,
            "parameters": {m["name"]: m["parameters"] for m in zoo_record["models"]}}


def restate_recommended(kept: dict) -> dict:
    """``kept`` (a ``*_scores.json``) with its ``recommended`` rows, with the source-accuracy
    prior and without a prior, recomputed by the rule the library ships now from the kept
    member rows (:func:`nctk.transfer.recommended.combine_scores`, tested equal to the
    method run on the features), so that a changed rule needs no re-scoring."""
    for scores in kept["scores"].values():
        prior = {m: kept["source_accuracy"][m] for m in scores["ncti"]}
        scores[NO_PRIOR] = combine_scores(scores)[0]
        scores[RECOMMENDED] = combine_scores(scores, prior=prior)[0]
    return kept


def own_collection(name: str, kept: dict) -> Collection:
    """Demo, zoo or select: every method, the priors and ``recommended`` (prior: source
    accuracy). A zoo target ``<task>_lp`` / ``<task>_ft`` is scored on the features of
    ``<task>``; elsewhere each target has its own features."""
    truth = kept["truth"]
    task_of = {t: t if t in kept["scores"] else t.rsplit("_", 1)[0] for t in truth}
    col = Collection(name, truth)
    methods = [m for m in next(iter(kept["scores"].values())) if m not in (RECOMMENDED, NO_PRIOR)]
    for method in methods:
        kind = "term" if ": " in method else "seed" if " (seed " in method else "method"
        col.add(method, kind, {t: kept["scores"][task_of[t]][method] for t in truth})
    col.add(SOURCE_PRIOR, "prior", {t: kept["source_accuracy"] for t in truth})
    col.add("prior: parameters", "prior",
            {t: {m: float(v) for m, v in kept["parameters"].items()} for t in truth})
    if len(truth) > 1:
        twins = {t: [u for u in truth if u != t and task_of[u] == task_of[t]] for t in truth}
        col.add("prior: other targets", "prior", other_targets_prior(truth, twins))
    for row in (NO_PRIOR, RECOMMENDED):  # the shipped method, not a re-statement of it
        col.add(row, "recommended", {t: kept["scores"][task_of[t]][row] for t in truth})
    return col
