"""The one rank workflow (nctk.workflow): a scored pool -> results, prior, evaluation,
flags, notes, recommendation, provenance, JSON and report, and what a caller may add."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import nctk
from nctk import workflow
from nctk.cli import main
from nctk.io import FeatureFile
from nctk.priors import Prior
from nctk.transfer.registry import resolve_methods
from scores_core_data import blobs


@pytest.fixture(scope="module")
def pool():
    x, y = blobs(n=90, d=8, classes=3, spread=1.0, seed=4)
    rng = np.random.default_rng(1)
    return [FeatureFile(name=f"m{i}", features=x * (i + 1) + rng.normal(size=x.shape) * (1 + i),
                        labels=y, source_accuracy=60.0 + 5 * i) for i in range(4)]


TRUTH = {"m0": 80.0, "m1": 70.0, "m2": 60.0, "m3": 50.0}


def test_feature_files_outcome_matches_ranking_each_method(pool):
    methods = resolve_methods("ncti,recommended,logme")
    outcome = workflow.rank_feature_files(pool, methods, ground_truth=TRUTH, argv=["rank"])
    assert list(outcome.results) == ["recommended", "ncti", "logme"]  # recommended first
    arrays = {f.name: f.features for f in pool}
    labels = pool[0].labels
    assert outcome.results["logme"].scores == pytest.approx(
        nctk.rank(arrays, labels, "logme").scores, abs=1e-7)
    prior = {f.name: f.source_accuracy for f in pool}
    assert outcome.results["recommended"].scores == nctk.rank(
        arrays, labels, "recommended", prior=prior).scores
    assert outcome.prior.values == prior and outcome.truth == TRUTH
    assert outcome.evaluation["ncti"] == nctk.evaluate(outcome.results["ncti"].scores, TRUTH)
    assert outcome.prior_evaluation == nctk.evaluate(prior, TRUTH)
    from nctk.transfer.recommended import WITH_PRIOR

    words = WITH_PRIOR.in_words([*WITH_PRIOR.members, "prior"])
    assert outcome.notes[0].startswith(f"recommended: {words}; prior = ")
    assert outcome.provenance["command"] == "nctk rank"
    assert outcome.provenance["method_options"]["recommended"]["prior"] == prior


def test_json_document_and_what_a_caller_adds(pool, tmp_path):
    outcome = workflow.rank_feature_files(pool, resolve_methods("recommended,ncti"),
                                          ground_truth=TRUTH)
    outcome.add_json("selection", {"chosen": "m0"})
    with pytest.raises(ValueError, match="contract"):
        outcome.add_json("methods", {})
    outcome.add_section("fine-tuning", "Fine-tuning the shortlist", "<p>m0 first</p>")
    data = outcome.to_json()
    assert list(data)[:2] == ["methods", "evaluation"]
    assert {"prior", "provenance", "guidance", "selection"} <= set(data)
    assert data["guidance"]["notes"] == outcome.notes and "failed" not in data
    page = outcome.write_report(tmp_path / "r.html", title="t").read_text()
    assert '<section id="fine-tuning">' in page and "<p>m0 first</p>" in page
    # the caller's section comes first, then nctk's own
    assert page.index('id="fine-tuning"') < page.index('id="how-to-read"') < page.index(
        'id="evaluation"')


def test_every_evaluation_table_is_sorted_by_weighted_tau(pool, tmp_path, capsys):
    paths = []
    for f in pool:
        paths.append(str(tmp_path / f"{f.name}.npz"))
        nctk.save_feature_file(paths[-1], f.features, f.labels)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(TRUTH))
    report = tmp_path / "r.html"
    assert main(["rank", *paths, "--method", "recommended,ncti,logme,hscore", "--ground-truth",
                 str(gt), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    table = out[out.index("summary, best weighted tau first"):].split("\n\n")[0]
    summary = table.splitlines()[3:]
    taus = [float(line.split()[1]) for line in summary]
    assert taus == sorted(taus, reverse=True) and len(taus) == 4
    terminal = [line.split()[0] for line in summary]
    section = report.read_text().split('id="evaluation"')[1].split("</table>")[0]
    assert re.findall(r'<td class="model">([^<]+)</td>', section) == terminal


def test_notes_without_prior_and_with_fewer_samples_than_dimensions():
    x, y = blobs(n=30, d=40, classes=3, spread=1.0, seed=0)
    files = [FeatureFile(name=f"w{i}", features=x + i, labels=y) for i in range(2)]
    outcome = workflow.rank_feature_files(files, resolve_methods("recommended"))
    assert outcome.prior is None
    assert any("no prior (give prior=PRIOR.json" in n for n in outcome.notes)
    assert any(n.startswith("fewer samples (30) than feature dimensions: w0 (d = 40), w1 "
                            "(d = 40)") for n in outcome.notes)
    given = workflow.rank_feature_files(files, resolve_methods("recommended"),
                                        prior=Prior({"w0": 1.0, "w1": 2.0}, "my guess"))
    assert any(n.endswith("; prior = my guess") for n in given.notes)


def test_conclude_takes_any_scored_pool(pool):
    results = {"ncti": nctk.rank({f.name: f.features for f in pool}, pool[0].labels, "ncti")}
    outcome = workflow.conclude(results, labels=pool[0].labels, ground_truth=TRUTH,
                                failed={"broken:spec": "no such model"}, notes=["mine"])
    assert outcome.notes[0] == "mine" and outcome.failed == {"broken:spec": "no such model"}
    assert outcome.to_json()["failed"] == {"broken:spec": "no such model"}
    assert outcome.models == ["m0", "m1", "m2", "m3"]
    assert "(not run here" in outcome.advice
