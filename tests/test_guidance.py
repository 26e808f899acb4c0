"""Guidance for a new user: the recommended (default) method first and its reason, tables
and report sorted by it, case-insensitive method names, saturated and tied scores flagged,
provenance in the JSON and the report, notes grouped on standard error."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser

import numpy as np
import pytest

import nctk.transfer
from nctk.cli import main
from nctk.provenance import class_counts
from nctk.transfer import registry
from nctk.transfer.guidance import (
    ScoreFlags,
    method_order,
    recommendation,
    score_flags,
    tied_groups,
)

C = 4


def _collapsed(seed: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Features at their class means (plus ``noise``): H-score at C - 1, SFDA at 1."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.array(["cat", "dog", "eel", "fox"]), [10, 10, 10, 12])
    centres = rng.normal(size=(C, 8)) * 10
    codes = np.unique(labels, return_inverse=True)[1]
    return centres[codes] + noise * rng.normal(size=(len(labels), 8)), labels


@pytest.fixture
def pool(tmp_path):
    """Two collapsed models (saturated, tied) and one noisy model; a ground truth."""
    paths = []
    for name, seed, noise in (("sharp", 0, 1e-3), ("crisp", 1, 1e-4), ("blurry", 2, 8.0)):
        x, y = _collapsed(seed, noise)
        path = tmp_path / f"{name}.npz"
        np.savez(path, features=x, labels=y)
        paths.append(path)
    truth = tmp_path / "gt.json"
    truth.write_text(json.dumps({"sharp": 0.9, "crisp": 0.8, "blurry": 0.5}))
    return paths, truth


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_method_names_are_case_insensitive_and_dashes_mean_underscores():
    assert registry.get_method("LogME").name == "logme"
    assert registry.get_method("Reg-HScore").name == "reg_hscore"
    assert [m.name for m in registry.resolve_methods("ALL")] == registry.available_methods()
    assert [m.name for m in registry.resolve_methods("NCTI, ncti,SFDA")] == ["ncti", "sfda"]


def test_the_default_method_is_registered_with_its_reason():
    method = registry.default_method()
    assert method.name == registry.DEFAULT_METHOD
    assert method.recommendation
    line = recommendation([method.name])
    assert line.startswith(f"Recommended: the '{method.name}' ranking, ")
    assert "not run" not in line
    assert "(not run here; run it too: method=recommended)" in recommendation(["logme"])


def test_the_advice_says_where_the_rule_is_weak():
    """No prior, few models, small networks: each a caveat a user can act on, in the one
    advice line; none for a large pool of wide features with a prior."""
    from nctk.transfer import guidance

    assert guidance.rule_caveats(models=10, prior=True, dims=[384, 2048]) == []
    assert guidance.rule_caveats(models=10, prior=True) == []  # dimensions unknown
    few = guidance.rule_caveats(models=4, prior=True, dims=[512] * 4)
    assert few == ["4 models are few for a ranking to be sure of its order: fine-tune the "
                   "top 3 (nctk select) before choosing"]
    assert guidance.rule_caveats(models=2, prior=True)[0].endswith(
        "fine-tune the top 2 (nctk select) before choosing")
    assert guidance.rule_caveats(models=12, prior=False) == [guidance.NO_PRIOR_CAVEAT]
    assert guidance.rule_caveats(models=12, prior=True, dims=[64, 256]) == [
        guidance.SMALL_NETWORKS_CAVEAT]
    assert guidance.rule_caveats(models=12, prior=True, dims=[64, 257]) == []
    caveats = guidance.rule_caveats(models=3, prior=False, dims=[48])
    assert len(caveats) == 3
    line = recommendation(["recommended"], caveats)
    assert "\n" not in line and line.endswith(". Weak here: " + "; ".join(caveats))
    assert "Weak here" not in recommendation(["recommended"])


def test_rank_says_in_its_advice_line_where_the_rule_is_weak(tmp_path, capsys):
    """nctk rank: a pool of 4 small models without a prior gets the three caveats in the one
    advice line, the prior as the command's option; with a prior and only NCTI run, none."""
    from nctk.transfer import guidance
    from scores_core_data import blobs

    x, y = blobs(n=120, d=10, classes=3, spread=1.0, seed=2)
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"m{i}.npz")
        np.savez(paths[-1], features=x * (i + 1), labels=y)
    code, out, err = _run(capsys, "rank", *paths)
    assert code == 0, err
    advice = [line for line in out.splitlines() if line.startswith("Recommended:")]
    assert len(advice) == 1 and ". Weak here: no data-free prior was given" in advice[0]
    assert "accuracy as --prior;" in advice[0] and "4 models are few" in advice[0]
    assert advice[0].endswith(guidance.SMALL_NETWORKS_CAVEAT)
    prior = tmp_path / "prior.json"
    prior.write_text(json.dumps({f"m{i}": float(i) for i in range(4)}))
    code, out, err = _run(capsys, "rank", *paths, "--prior", prior, "--method", "ncti")
    assert code == 0, err
    assert "Recommended: the 'recommended' ranking" in out and "Weak here" not in out


def test_rank_help_lists_every_method_and_the_default(capsys):
    assert main(["rank", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in registry.available_methods():
        assert name in text
    assert f"default: {registry.DEFAULT_METHOD}" in text


def test_method_order_puts_the_default_first(monkeypatch):
    assert method_order(["sfda", "logme", registry.DEFAULT_METHOD]) == [
        registry.DEFAULT_METHOD, "sfda", "logme"]
    monkeypatch.setattr(registry, "DEFAULT_METHOD", "logme")
    assert method_order(["sfda", "logme", "ncti"]) == ["logme", "sfda", "ncti"]


def test_ties_are_groups_of_equal_scores_within_a_relative_tolerance():
    scores = {"a": 3.0, "b": 3.0 * (1 + 1e-12), "c": 2.0, "d": math.nan, "e": 2.0, "f": 1.0}
    assert tied_groups(scores, ["a", "b", "c", "e", "f", "d"]) == [["a", "b"], ["c", "e"]]
    assert tied_groups({"a": 1.0, "b": 1.0 + 1e-6}) == []


def test_hscore_and_sfda_at_their_upper_bounds_are_saturated():
    x1, y = _collapsed(0, 1e-3)
    x2, _ = _collapsed(1, 1e-4)
    x3, _ = _collapsed(2, 8.0)
    pool = {"sharp": x1, "crisp": x2, "blurry": x3}
    for method, bound in (("hscore", C - 1.0), ("sfda", 1.0)):
        result = nctk.rank(pool, y, method)
        assert result.scores["sharp"] == pytest.approx(bound, rel=1e-6)
        flags = score_flags(method, result.scores, result.ranking, num_classes=C)
        assert flags.upper_bound == bound
        assert sorted(flags.saturated) == ["crisp", "sharp"]
        assert flags.of("blurry") == "" and "saturated" in flags.of("sharp")
    leep = score_flags("leep", {"a": 0.0, "b": -0.3}, ["a", "b"], num_classes=C)
    assert leep.saturated == ["a"]
    assert score_flags("leep", {"a": 0.9}, ["a"], num_classes=C,
                       options={"log": False}).upper_bound == 1.0
    assert score_flags("logme", {"a": 1e9}, ["a"], num_classes=C).upper_bound is None


def test_rank_sorts_by_the_default_flags_saturation_and_groups_notes_on_stderr(
        pool, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "DEFAULT_METHOD", "ncti")  # a default with a flagless block
    paths, truth = pool
    out_json = tmp_path / "out.json"
    code, out, err = _run(capsys, "rank", *paths, "--method", "HScore,logme,NCTI",
                          "--ground-truth", truth, "--json", out_json)
    assert code == 0, err
    # blocks: the default method first, whatever the order asked
    assert out.index("ncti  (") < out.index("hscore  (") < out.index("logme  (")
    hscore_block = out[out.index("hscore  ("):out.index("logme  (")]
    assert "flag" in hscore_block and hscore_block.count("saturated") == 2
    overview = out[out.index("ranks by method"):]
    assert "sorted by ncti" in overview.splitlines()[0]
    ncti_ranking = json.loads(out_json.read_text())["methods"]["ncti"]["ranking"]
    rows = [line.split()[0] for line in overview.splitlines()[3:3 + len(paths)]]
    assert rows == ncti_ranking
    assert f"Recommended: the '{registry.DEFAULT_METHOD}' ranking, " in out
    # notes: on stderr, one group, nothing of them on stdout
    assert "saturated" in err and err.lstrip().startswith("notes:")
    assert "  - hscore: " in err and "upper bound 3 (saturated)" in err
    assert "note" not in out.lower().replace("notes", "")
    assert err.rstrip().endswith(f"wrote {out_json}")
    data = json.loads(out_json.read_text())
    assert list(data["methods"]) == ["ncti", "hscore", "logme"]
    flags = data["guidance"]["flags"]["hscore"]
    assert flags["upper_bound"] == 3.0 and sorted(flags["saturated"]) == ["crisp", "sharp"]
    assert data["guidance"]["recommended"].startswith("Recommended: the 'ncti' ranking")


def test_a_new_default_is_picked_up_everywhere(pool, capsys, monkeypatch, tmp_path):
    paths, _ = pool
    monkeypatch.setattr(registry, "DEFAULT_METHOD", "logme")
    out_json = tmp_path / "o.json"
    code, out, err = _run(capsys, "rank", *paths, "--json", out_json)
    assert code == 0, err
    assert list(json.loads(out_json.read_text())["methods"]) == ["logme"]  # the default ran
    assert "Recommended: the 'logme' ranking" in out


def test_provenance_of_feature_files(pool, capsys, tmp_path):
    paths, _ = pool
    out_json = tmp_path / "out.json"
    code, _, err = _run(capsys, "rank", *paths, "--method", "ncti,nleep", "--seed", 5,
                        "--ncti-weights", "1,0.5,1", "--json", out_json)
    assert code == 0, err
    record = json.loads(out_json.read_text())["provenance"]
    assert record["feature_files"] == [str(p) for p in paths]
    assert record["data"] is None and record["seed"] == 5
    assert record["classes"] == ["cat", "dog", "eel", "fox"]
    assert record["per_class"] == {"cat": 10, "dog": 10, "eel": 10, "fox": 12}
    assert record["samples"] == 42
    assert record["method_options"]["ncti"] == {"w_seli": 1.0, "w_ncc": 0.5, "w_vc": 1.0}
    assert record["method_options"]["nleep"]["seed"] == 5
    assert record["method_options"]["nleep"]["ratio"] == 5  # a default, recorded too
    import torch

    assert record["versions"]["torch"] == torch.__version__.split("+")[0] or \
        record["versions"]["torch"] == torch.__version__
    assert record["versions"]["nctk"] == nctk.__version__
    assert record["command"].startswith("nctk rank ")


def test_provenance_of_extracted_models(capsys, tmp_path):
    pytest.importorskip("torchvision")  # extraction needs the vision extra
    out_json = tmp_path / "out.json"
    code, _, err = _run(capsys, "rank", "--models", "a=demo:cnn_small,demo:mlp", "--data",
                        "demo:target", "--per-class", 4, "--method", "logme", "--json",
                        out_json, "--no-cache", "--quiet")
    assert code == 0, err
    record = json.loads(out_json.read_text())["provenance"]
    assert record["data"] == "demo:target" and record["per_class_draw"] == 4
    assert record["models"] == {"a": "a=demo:cnn_small", "mlp": "demo:mlp"}
    assert record["per_class"] == {c: 4 for c in ("dog", "frog", "horse", "ship", "truck")}
    assert "features cached" not in err  # --no-cache


class _Page(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.sections: dict[str, str] = {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self._current = dict(attrs).get("id")

    def handle_data(self, data):
        if getattr(self, "_current", None):
            self.sections[self._current] = self.sections.get(self._current, "") + data


def test_report_sorted_by_the_default_with_flags_recommendation_and_provenance(
        pool, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "DEFAULT_METHOD", "ncti")
    paths, truth = pool
    report = tmp_path / "r.html"
    out_json = tmp_path / "r.json"
    code, _, err = _run(capsys, "rank", *paths, "--method", "hscore,ncti", "--ground-truth",
                        truth, "--report", report, "--json", out_json)
    assert code == 0, err
    text = report.read_text(encoding="utf-8")
    page = _Page(text)
    ranking = page.sections["ranking"]
    assert "Recommended: the 'ncti' ranking, " in ranking
    assert ranking.index("ncti") < ranking.index("hscore")  # the default's columns first
    order = json.loads(out_json.read_text())["methods"]["ncti"]["ranking"]
    positions = [ranking.index(model) for model in order]
    assert positions == sorted(positions)  # rows follow the default's ranking
    assert text.count('<sup class="flag" title="at the upper bound 3">sat</sup>') == 2
    provenance = page.sections["provenance"]
    assert "cat, dog, eel, fox" in provenance and "42 in 4 classes" in provenance
    assert "torch " in provenance and "nctk " in provenance


def test_class_counts_keys_are_strings_in_sorted_order():
    assert class_counts(np.array([3, 1, 3, 2])) == {"1": 1, "2": 1, "3": 2}


def test_score_flags_of_a_clean_ranking_are_empty():
    flags = score_flags("logme", {"a": 2.0, "b": 1.0}, ["a", "b"], num_classes=2)
    assert not flags and flags == ScoreFlags(None, [], [])
