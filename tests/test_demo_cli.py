"""``nctk demo`` end to end on a 2-model slice of the shipped pool, and its bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from nctk.cli import main
from nctk.demo.assets import ASSETS
from nctk.demo.run import run_demo
from nctk.io import load_pool

MODELS = "cnn_small,mlp"


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    pytest.importorskip("torchvision")  # extraction needs the vision extra
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out), "--models", MODELS, "--methods",
                 "ncti,logme,leep,hscore", "--no-select"]) == 0
    return out


def test_demo_writes_json_report_and_feature_files(demo_out, capsys):
    data = json.loads((demo_out / "demo.json").read_text())
    assert set(data["methods"]) == {"ncti", "logme", "leep", "hscore"}
    truth = json.loads((demo_out / "ground_truth.json").read_text())
    assert data["ground_truth"] == {m: truth[m] for m in MODELS.split(",")}
    for name, method in data["methods"].items():
        assert sorted(method["ranking"]) == sorted(MODELS.split(","))
        assert set(data["evaluation"][name]) >= {"weighted_tau", "kendall_tau", "spearman",
                                                 "pearson", "top1_relative"}
    assert set(data["layers"]) == set(MODELS.split(","))
    assert "penultimate" in data["layers"]["cnn_small"]
    assert {"block1", "block2", "block3"} <= set(data["layers"]["cnn_small"])
    assert any("NOT ImageNet" in note for note in data["notes"])
    html = (demo_out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html") or "<html" in html[:200]
    pool = load_pool(sorted((demo_out / "features").glob("*.npz")))
    assert [f.name for f in pool] == ["cnn_small", "mlp"]
    with np.load(ASSETS / "target_subset.npz") as shipped:
        samples = len(shipped["labels"])
    assert pool[0].features.shape == (samples, 64)
    assert pool[0].source_logits.shape == (samples, 5)
    assert sorted(np.unique(pool[0].labels).tolist()) == ["dog", "frog", "horse", "ship",
                                                          "truck"]


def test_saved_features_rank_again_with_the_same_scores(demo_out, capsys):
    out = demo_out / "again.json"
    assert main(["rank", *map(str, sorted((demo_out / "features").glob("*.npz"))),
                 "--method", "ncti,logme", "--ground-truth",
                 str(demo_out / "ground_truth.json"), "--json", str(out)]) == 0
    again = json.loads(out.read_text())["methods"]
    first = json.loads((demo_out / "demo.json").read_text())["methods"]
    for method in ("ncti", "logme"):
        assert again[method]["scores"] == pytest.approx(first[method]["scores"], rel=1e-7)


def test_runner_scores_match_direct_scoring_of_its_features():
    pytest.importorskip("torchvision")  # extraction needs the vision extra
    from nctk.transfer import score

    result = run_demo(models=["cnn_small_1ep", "mixer_tiny"], methods="logme")
    for file in result.pool:
        assert result.outcome.results["logme"].scores[file.name] == pytest.approx(
            score("logme", file.features, file.labels), rel=1e-7)
    assert result.outcome.truth.keys() == {"cnn_small_1ep", "mixer_tiny"}


@pytest.mark.parametrize(("argv", "message"), [
    (["--methods", "nosuch"], "--methods"),
    (["--models", "cnn_small,resnet50"], "unknown demo model 'resnet50'"),
    (["--models", "mlp"], "at least 2"),
])
def test_bad_options_end_with_one_line_and_status_2(argv, message, tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "o").exists()


def test_demo_ranks_with_the_shipped_source_accuracies_as_prior(tmp_path, capsys):
    """The demo models carry their source test accuracy (pool.json): `recommended` averages
    it in, the prior is evaluated beside the methods, and the saved files keep it."""
    pytest.importorskip("torchvision")  # extraction needs the vision extra
    models = ["cnn_small_1ep", "mixer_tiny", "cnn_deep"]
    info = {m["name"]: m["source_test_accuracy"]
            for m in json.loads((ASSETS / "pool.json").read_text())["models"]}
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--models", ",".join(models), "--methods",
                 "recommended", "--no-report", "--no-select"]) == 0
    data = json.loads((out / "demo.json").read_text())
    assert data["prior"]["values"] == {m: info[m] for m in models}
    assert data["prior"]["evaluation"]["weighted_tau"] == pytest.approx(
        stats.weightedtau([info[m] for m in models],
                          [data["ground_truth"][m] for m in models]).statistic)
    components = data["methods"]["recommended"]["components"]
    by_accuracy = sorted(models, key=info.get, reverse=True)
    assert [components[m]["prior_rank"] for m in by_accuracy] == [1, 2, 3]
    assert "prior: source accuracy" in capsys.readouterr().out
    again = tmp_path / "again.json"
    assert main(["rank", *map(str, sorted((out / "features").glob("*.npz"))), "--method",
                 "recommended", "--json", str(again)]) == 0
    assert json.loads(again.read_text())["methods"]["recommended"]["scores"] == pytest.approx(
        data["methods"]["recommended"]["scores"], rel=1e-7)
