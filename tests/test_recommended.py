"""``recommended``: the shipped rule (its members and a prior combined by its aggregator),
checked against ranks and z-scores computed by hand; the CLI default, ``--prior``, its JSON
and its report section."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import nctk
from nctk.cli import main
from nctk.errors import InputError
from nctk.transfer.aggregate import rank_average
from nctk.transfer.recommended import WITH_PRIOR, WITHOUT_PRIOR, members_used
from scores_core_data import blobs


def ascending_ranks(values):
    """1 + (number of smaller values) + (number of other equal values) / 2."""
    return [1 + sum(w < v for w in values) + (sum(w == v for w in values) - 1) / 2
            for v in values]


@pytest.fixture(scope="module")
def pool():
    x, y = blobs(n=120, d=10, classes=3, spread=1.0, seed=2)
    rng = np.random.default_rng(0)
    features = {f"m{i}": x * (i + 1) + rng.normal(size=x.shape) * (0.5 + i) for i in range(4)}
    return features, y


def test_rank_average_counts_ranks_by_hand():
    scores = {"a": {"x": 0.1, "y": 0.9, "z": 0.5, "w": 0.5},
              "b": {"x": 3.0, "y": 1.0, "z": 2.0, "w": 0.0}}
    combined, comps = rank_average(scores)
    ra = ascending_ranks([0.1, 0.9, 0.5, 0.5])
    rb = ascending_ranks([3.0, 1.0, 2.0, 0.0])
    for i, m in enumerate("xyzw"):
        # ranks are multiples of 1/2 and their mean of two a multiple of 1/4: exact, hence ==
        assert combined[m] == (ra[i] + rb[i]) / 2
        assert comps[m]["a_rank"] == 5 - ra[i] and comps[m]["b_rank"] == 5 - rb[i]
        assert comps[m]["a"] == scores["a"][m]
    assert comps["z"]["a_rank"] == 2.5  # a tie shares the average of its places


def by_hand(aggregator, member_scores, models):
    """The aggregator of nctk.transfer.aggregate recomputed from its formula: ranks counted
    by hand, z-scores with the population standard deviation written out."""
    if aggregator == "z_mean":
        z = []
        for s in member_scores:
            v = [s[m] for m in models]
            mean = sum(v) / len(v)
            std = (sum((u - mean) ** 2 for u in v) / len(v)) ** 0.5
            z.append([(u - mean) / std for u in v])
        return [sum(col) / len(col) for col in zip(*z, strict=True)]
    ranks = [ascending_ranks([s[m] for m in models]) for s in member_scores]
    pick = np.median if aggregator == "median_rank" else np.mean
    return [float(pick(col)) for col in zip(*ranks, strict=True)]


def test_pool_score_is_the_shipped_rule_by_hand(pool):
    """recommended = the shipped rule's aggregator over its members (each scored by its own
    registered method, seed 0) and the prior, recomputed by hand, with and without a prior."""
    features, y = pool
    models = list(features)
    prior = {"m0": 70.0, "m1": 60.0, "m2": 80.0, "m3": 75.5}
    for rule, given in ((WITHOUT_PRIOR, None), (WITH_PRIOR, prior)):
        members = {m: nctk.rank(features, y, m).scores for m in rule.members}
        result = nctk.rank(features, y, "recommended", **({"prior": given} if given else {}))
        want = by_hand(rule.aggregator, [*members.values(), *([given] if given else [])],
                       models)
        assert [result.scores[m] for m in models] == pytest.approx(want, abs=1e-7)
        for model in models:
            for member, scores in members.items():
                # a member is shown under the name of the method that gives its score
                assert result.components[model][member] == pytest.approx(scores[model],
                                                                        abs=1e-7)
        assert members_used(result.components) == [*rule.members, *(["prior"] if given
                                                                     else [])]
        if given:
            assert result.components["m2"]["prior"] == 80.0
            assert result.components["m2"]["prior_rank"] == 1.0


def test_invariant_to_sample_order_and_label_names(pool):
    features, y = pool
    want = nctk.rank(features, y, "recommended").scores
    perm = np.random.default_rng(5).permutation(len(y))
    shuffled = {m: x[perm] for m, x in features.items()}
    assert nctk.rank(shuffled, y[perm], "recommended").scores == pytest.approx(want)
    named = np.array(["ant", "bee", "cow"])[y]
    assert nctk.rank(features, named, "recommended").scores == pytest.approx(want)


def test_a_prior_that_agrees_with_both_estimators_keeps_their_order(pool):
    features, y = pool
    base = nctk.rank(features, y, "recommended")
    prior = {m: float(base.scores[m]) for m in features}
    assert nctk.rank(features, y, "recommended", prior=prior).ranking == base.ranking


@pytest.mark.parametrize("prior, problem", [
    ({"m0": 1.0, "m1": 2.0, "m2": 3.0}, "no prior value for model(s) ['m3']"),
    ({"m0": 1.0, "m1": 2.0, "m2": float("nan"), "m3": 1.0}, "'m2' is not a finite number"),
    ({"m0": 1.0, "m1": True, "m2": 1.0, "m3": 1.0}, "'m1' is not a finite number"),
    ([1, 2, 3, 4], "mapping"),
])
def test_bad_prior(pool, prior, problem):
    features, y = pool
    with pytest.raises(InputError, match=re.escape(problem)):
        nctk.rank(features, y, "recommended", prior=prior)


def test_one_model_has_no_rank_average(pool):
    features, y = pool
    with pytest.raises(InputError, match="pool"):
        nctk.score("recommended", features["m0"], y)


# ------------------------------------------------------------------------------- the CLI


def _files(tmp_path: Path, pool, **extra) -> list[str]:
    features, y = pool
    paths = []
    for name, x in features.items():
        arrays = {"features": x, "labels": y, **{k: v[name] for k, v in extra.items()}}
        np.savez(tmp_path / f"{name}.npz", **arrays)
        paths.append(str(tmp_path / f"{name}.npz"))
    return paths


def test_cli_default_is_recommended_with_its_members(pool, tmp_path, capsys):
    paths = _files(tmp_path, pool)
    out = tmp_path / "out.json"
    assert main(["rank", *paths, "--json", str(out)]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert text.startswith("recommended")
    assert all(f"{member} rank" in text for member in WITHOUT_PRIOR.members)
    assert "Recommended: the 'recommended' ranking, " in text
    assert f"- recommended: {WITHOUT_PRIOR.in_words()}; no prior" in captured.err
    data = json.loads(out.read_text())
    assert list(data["methods"]) == ["recommended"] and "prior" not in data
    comps = data["methods"]["recommended"]["components"]["m0"]
    assert set(comps) == {k for m in WITHOUT_PRIOR.members for k in (m, f"{m}_rank")}


def test_cli_prior_file_json_and_evaluation(pool, tmp_path, capsys):
    paths = _files(tmp_path, pool)
    prior = tmp_path / "prior.json"
    prior.write_text(json.dumps({"m0": 1, "m1": 2, "m2": 4, "m3": 3, "extra": 9}))
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"m0": 50, "m1": 60, "m2": 80, "m3": 70}))
    out = tmp_path / "out.json"
    assert main(["rank", *paths, "--prior", str(prior), "--ground-truth", str(gt),
                 "--method", "recommended,ncti", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"prior = --prior {prior}" in captured.err and "prior rank" in captured.out
    assert f"prior (--prior {prior})" in captured.out
    data = json.loads(out.read_text())
    assert data["prior"]["values"] == {"m0": 1.0, "m1": 2.0, "m2": 4.0, "m3": 3.0}
    assert data["prior"]["evaluation"]["weighted_tau"] == pytest.approx(1.0)
    assert set(data["evaluation"]) == {"recommended", "ncti"}
    assert "prior" not in data["methods"]["ncti"]["components"]["m0"]
    assert data["methods"]["recommended"]["components"]["m2"]["prior_rank"] == 1.0


def test_cli_uses_the_source_accuracy_recorded_in_the_files(pool, tmp_path, capsys):
    top1 = {"m0": 71.0, "m1": 76.1, "m2": 69.8, "m3": 80.9}
    paths = _files(tmp_path, pool, source_accuracy={m: np.asarray(v) for m, v in top1.items()})
    out = tmp_path / "out.json"
    assert main(["rank", *paths, "--json", str(out)]) == 0
    assert "prior = source_accuracy recorded in the feature files" in capsys.readouterr().err
    assert json.loads(out.read_text())["prior"]["values"] == top1
    # --prior wins over the recorded values
    prior = tmp_path / "prior.json"
    prior.write_text(json.dumps({"m0": 4, "m1": 3, "m2": 2, "m3": 1}))
    assert main(["rank", *paths, "--prior", str(prior), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["prior"]["values"]["m0"] == 4.0
    capsys.readouterr()
    # only some files record it: no automatic prior, and a note says why
    np.savez(paths[1], features=pool[0]["m1"], labels=pool[1])
    assert main(["rank", *paths, "--json", str(out)]) == 0
    assert "no automatic prior: 1 of 4 models record no source accuracy (m1)" in (
        capsys.readouterr().err)
    assert "prior" not in json.loads(out.read_text())


@pytest.mark.parametrize("content, problem", [
    ('{"m0": 1, "m1": 2, "m2": 3}', "no prior value for model(s) ['m3']"),
    ('{"m0": 1, "m1": 2, "m2": 3, "m3": NaN}', "value for 'm3' is not a finite number"),
    ('{"m0": 1, "m1": 2, "m2": 3, "m3": "high"}', "value for 'm3' is not a finite number"),
    ("[1, 2, 3, 4]", "expected a JSON object {model: prior value}"),
    ("{not json", "not a readable JSON file"),
])
def test_cli_bad_prior_exits_2_with_one_line(pool, tmp_path, capsys, content, problem):
    paths = _files(tmp_path, pool)
    prior = tmp_path / "prior.json"
    prior.write_text(content)
    assert main(["rank", *paths, "--prior", str(prior)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(prior) in err[0] and problem in err[0], err


def test_cli_missing_prior_file_and_output_onto_the_prior(pool, tmp_path, capsys):
    paths = _files(tmp_path, pool)
    assert main(["rank", *paths, "--prior", str(tmp_path / "none.json")]) == 2
    assert "none.json: no such file" in capsys.readouterr().err
    prior = tmp_path / "prior.json"
    prior.write_text(json.dumps({"m0": 1, "m1": 2, "m2": 3, "m3": 4}))
    before = prior.read_bytes()
    assert main(["rank", *paths, "--prior", str(prior), "--json", str(prior)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert prior.read_bytes() == before


def test_report_shows_the_members(pool, tmp_path):
    paths = _files(tmp_path, pool)
    prior = tmp_path / "prior.json"
    prior.write_text(json.dumps({"m0": 1, "m1": 2, "m2": 3, "m3": 4}))
    report = tmp_path / "r.html"
    assert main(["rank", *paths, "--prior", str(prior), "--report", str(report)]) == 0
    html = report.read_text()
    members = ", ".join([*WITH_PRIOR.members, "prior"])
    assert 'id="recommended"' in html and f"members: {members}" in html


def test_models_runs_use_the_top1_of_torchvision_weights(tmp_path, capsys, monkeypatch):
    """``--models torchvision:...:WEIGHTS``: the ImageNet top-1 of the weights' metadata is
    the prior, in ``rank --models`` and in the files ``extract`` writes (no download: the
    weights are stood in for by random ones)."""
    pytest.importorskip("torchvision")  # extraction needs the vision extra
    import torchvision.models as tvm

    archs = {"shufflenet_v2_x0_5": 60.552, "mobilenet_v3_small": 67.668}
    states = {tvm.get_model_weights(a).IMAGENET1K_V1.url: tvm.get_model(a).state_dict()
              for a in archs}
    monkeypatch.setattr(tvm._api, "load_state_dict_from_url", lambda url, *a, **k: states[url])
    monkeypatch.setattr("os.cpu_count", lambda: 1)  # no loader worker process: 6 images
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, images=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
             labels=np.array(["a", "b"] * 3))
    specs = ",".join(f"torchvision:{a}:IMAGENET1K_V1" for a in archs)
    common = ["--data", f"npz:{data}", "--no-cache", "--no-progress"]
    out = tmp_path / "models.json"
    assert main(["rank", "--models", specs, *common, "--json", str(out)]) == 0
    assert "prior = source_accuracy recorded" in capsys.readouterr().err
    from_models = json.loads(out.read_text())
    names = {f"{a}.IMAGENET1K_V1": top1 for a, top1 in archs.items()}
    assert from_models["prior"]["values"] == names
    comps = from_models["methods"]["recommended"]["components"]
    assert {m: c["prior"] for m, c in comps.items()} == names
    assert main(["extract", "--models", specs, *common, "--workers", "0",
                 "--out", str(tmp_path / "f")]) == 0
    files = sorted(str(p) for p in (tmp_path / "f").glob("*.npz"))
    assert main(["rank", *files, "--json", str(out)]) == 0
    from_files = json.loads(out.read_text())
    assert from_files["prior"] == from_models["prior"]
    assert from_files["methods"]["recommended"]["scores"] == pytest.approx(
        from_models["methods"]["recommended"]["scores"])


# ------------------------------------------------------- the rule on a pool already scored


def test_combine_scores_is_combine_pool_without_features(pool):
    """``select``'s shortlist: the rule from member scores alone gives what
    ``nctk.rank(..., "recommended")`` gives from the features, with and without a prior."""
    from nctk.transfer.recommended import ESTIMATORS, combine_scores, ranking

    features, y = pool
    scores = {m: nctk.rank(features, y, m).scores for m in ESTIMATORS}
    outside = next(m for m in ("hscore", "gbc") if m not in ESTIMATORS)
    scores[outside] = {m: 0.0 for m in features}  # a method outside the rule is ignored
    prior = {"m0": 70.0, "m1": 60.0, "m2": 80.0, "m3": 75.5}
    for given in (None, prior):
        want = nctk.rank(features, y, "recommended", **({"prior": given} if given else {}))
        combined, comps = combine_scores(scores, prior=given)
        assert combined == pytest.approx(want.scores, abs=1e-7)
        for model, terms in comps.items():
            assert terms == pytest.approx(want.components[model], abs=1e-7)
        assert ranking(scores, prior=given) == want.ranking


FIRST, LAST = WITHOUT_PRIOR.members[0], WITHOUT_PRIOR.members[-1]


def member_table(models):
    """Scores of every member of both rules over ``models`` (the k-th member reversed when
    k is odd)."""
    from nctk.transfer.recommended import ESTIMATORS

    return {member: {m: float(i if k % 2 == 0 else -i) for i, m in enumerate(models)}
            for k, member in enumerate(ESTIMATORS)}


@pytest.mark.parametrize("change, problem", [
    (lambda s: s.pop(FIRST), f"no scores of the member(s) ['{FIRST}']"),
    (lambda s: s[LAST].pop("m1"), f"'{LAST}' scores other models than '{FIRST}'"),
    (lambda s: s[FIRST].update(m2=float("nan")), "no finite score for model(s) ['m2']"),
    (lambda s: s[FIRST].update(m2="high"), "no finite score for model(s) ['m2']"),
    (lambda s: s[FIRST].update(m2=True), "no finite score for model(s) ['m2']"),
])
def test_combine_scores_bad_input(change, problem):
    from nctk.transfer.recommended import combine_scores

    scores = member_table([f"m{i}" for i in range(4)])
    change(scores)
    with pytest.raises(InputError, match=re.escape(problem)) as err:
        combine_scores(scores)
    assert "\n" not in str(err.value) and str(err.value).startswith("scores: ")


def test_combine_scores_needs_two_models_and_a_good_prior():
    from nctk.transfer.recommended import combine_scores

    with pytest.raises(InputError, match="at least 2 models, got 1"):
        combine_scores(member_table(["a"]))
    with pytest.raises(InputError, match=re.escape("no prior value for model(s) ['b']")):
        combine_scores(member_table(["a", "b"]), prior={"a": 1.0})

