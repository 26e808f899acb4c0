"""``nctk analyze``: every sub-command with the real NCTI on a small pool made from
scikit-learn's digits (real images), checked against the library functions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import weightedtau
from sklearn.datasets import load_digits

from nctk import analyses
from nctk.cli import main
from nctk.evaluation import evaluate
from nctk.io import load_pool
from nctk.transfer import rank_pool


def _write(path: Path, **arrays) -> Path:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


@pytest.fixture(scope="module")
def digits_pool(tmp_path_factory):
    """Four models: the digits pixels blurred by rising noise, 10 images per class."""
    root = tmp_path_factory.mktemp("pool")
    x, y = load_digits(return_X_y=True)
    keep = np.concatenate([np.flatnonzero(y == c)[:10] for c in range(10)])
    x, y = x[keep], y[keep]
    rng = np.random.default_rng(0)
    source_dir = root / "source"
    source_dir.mkdir()
    paths, source_paths = [], []
    for i, noise in enumerate([1.0, 3.0, 6.0, 12.0]):
        noisy = x + rng.normal(scale=noise, size=x.shape)
        paths.append(_write(root / f"m{i}.npz", features=noisy, labels=y))
        # each model's "source" data: its own subset (same file stem, another folder)
        src = rng.permutation(x.shape[0])[:60]
        source_paths.append(_write(source_dir / f"m{i}.npz", features=noisy[src][:, ::-1],
                                   labels=y[src]))
    gt = root / "gt.json"
    gt.write_text(json.dumps({"m0": 95.0, "m1": 90.0, "m2": 70.0, "m3": 75.0}))
    return paths, source_paths, gt


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_ablation_matches_the_library_and_rank(digits_pool, capsys, tmp_path):
    paths, _, gt = digits_pool
    out_json = tmp_path / "a.json"
    code, out, err = _run(capsys, "analyze", "ablation", *paths, "--ground-truth", gt,
                          "--json", out_json)
    assert code == 0, err
    data = json.loads(out_json.read_text())
    assert data["analysis"] == "ablation" and data["method"] == "ncti"
    origin = data["provenance"]  # where the result came from, as rank and collapse record it
    assert origin["feature_files"] == [str(p) for p in paths]
    assert origin["ground_truth"] == str(gt) and origin["samples"] == load_pool(
        paths)[0].labels.shape[0]
    assert origin["command"].startswith("nctk analyze ablation ")
    result = data["ablation"]
    assert list(result) == ["all", "only seli", "only ncc", "only vc", "without seli",
                            "without ncc", "without vc"]
    truth = json.loads(gt.read_text())
    pool = load_pool(paths)
    full = rank_pool(pool, "ncti")
    assert result["all"]["weighted_tau"] == pytest.approx(
        evaluate(full.scores, truth)["weighted_tau"], abs=1e-7)
    # "only vc" ranks by -vc: check it straight from the raw terms
    models = list(full.scores)
    minus_vc = [-full.components[m]["vc"] for m in models]
    assert result["only vc"]["weighted_tau"] == pytest.approx(
        weightedtau(minus_vc, [truth[m] for m in models]).statistic, abs=1e-7)
    assert "without ncc" in out


def test_weights_sweep(digits_pool, capsys, tmp_path):
    paths, _, gt = digits_pool
    out_json = tmp_path / "w.json"
    code, out, err = _run(capsys, "analyze", "weights", *paths, "--ground-truth", gt,
                          "--values", "0.1,1,2", "--json", out_json)
    assert code == 0, err
    sweep = json.loads(out_json.read_text())["weights"]
    assert list(sweep) == ["seli", "ncc", "vc"]
    assert list(sweep["vc"]) == ["0.1", "1.0", "2.0"]
    pool = load_pool(paths)
    truth = json.loads(gt.read_text())
    full = evaluate(rank_pool(pool, "ncti").scores, truth)["weighted_tau"]
    assert all(sweep[t]["1.0"] == pytest.approx(full, abs=1e-7) for t in sweep)
    heavy_vc = rank_pool(pool, "ncti", w_vc=2.0).scores
    assert sweep["vc"]["2.0"] == pytest.approx(evaluate(heavy_vc, truth)["weighted_tau"],
                                               abs=1e-7)
    assert "w_seli" in out


def test_fewshot(digits_pool, capsys, tmp_path):
    paths, _, gt = digits_pool
    out_json = tmp_path / "f.json"
    code, out, err = _run(capsys, "analyze", "fewshot", *paths, "--ground-truth", gt,
                          "--method", "ncti,gbc", "--shots", "2,30", "--repeats", 2,
                          "--seed", 4, "--json", out_json)
    assert code == 0, err
    data = json.loads(out_json.read_text())["fewshot"]
    assert data["shots"] == [2, 30] and data["repeats"] == 2 and data["seed"] == 4
    assert set(data["methods"]) == {"ncti", "gbc"}
    cell = data["methods"]["ncti"]["30"]
    # k=30 exceeds every class (10 images): the whole pool, so every draw is the same
    full = evaluate(rank_pool(load_pool(paths), "ncti").scores,
                    json.loads(gt.read_text()))["weighted_tau"]
    assert cell["taus"] == pytest.approx([full, full], abs=1e-7)
    assert any("used whole" in n for n in data["notes"])
    assert "k=2" in out and "±" in out


def test_fewshot_cells_say_how_many_draws_they_rest_on():
    from nctk.cli.analyze import few_shot_cell

    assert few_shot_cell({"mean": 0.5, "std": 0.1, "taus": [0.4, 0.6]}, 2) == "0.500 ± 0.100"
    assert few_shot_cell({"mean": 0.4, "std": 0.0, "taus": [0.4, math.nan]}, 2) == \
        "0.400 (n=1)"  # one draw: no spread to show
    assert few_shot_cell({"mean": 0.5, "std": 0.1, "taus": [0.4, 0.6, math.nan]}, 3) == \
        "0.500 ± 0.100 (n=2)"


def test_recommended_gets_the_prior_rank_gives_it(tmp_path, capsys):
    """analyze runs recommended with --prior, else the recorded source accuracy, as rank
    does (the same weighted tau on the same files), and notes when there is none."""
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(1)
    paths = [_write(tmp_path / f"m{i}.npz", features=x[:300] + rng.normal(scale=s, size=(300, 64)),
                    labels=y[:300], source_accuracy=np.float64(90 - 10 * i))
             for i, s in enumerate([1.0, 4.0, 9.0])]
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"m0": 90.0, "m1": 70.0, "m2": 80.0}))
    out_json, rank_json = tmp_path / "t.json", tmp_path / "r.json"
    code, _, err = _run(capsys, "analyze", "timing", *paths, "--method", "recommended",
                        "--ground-truth", gt, "--repeat", 1, "--json", out_json)
    assert code == 0 and "recommended: prior = source_accuracy recorded" in err
    assert _run(capsys, "rank", *paths, "--ground-truth", gt, "--json", rank_json)[0] == 0
    rank_tau = json.loads(rank_json.read_text())["evaluation"]["recommended"]["weighted_tau"]
    assert json.loads(out_json.read_text())["timing"]["recommended"]["weighted_tau"] == \
        pytest.approx(rank_tau, abs=1e-7)
    prior = tmp_path / "p.json"
    prior.write_text(json.dumps({"m0": 1, "m1": 3, "m2": 2}))
    code, _, err = _run(capsys, "analyze", "fewshot", *paths, "--method", "recommended",
                        "--ground-truth", gt, "--shots", 5, "--repeats", 1, "--prior", prior,
                        "--json", out_json)
    assert code == 0 and f"prior = --prior {prior}" in err
    assert json.loads(out_json.read_text())["prior"]["values"] == {"m0": 1, "m1": 3, "m2": 2}
    bare = [_write(tmp_path / f"b{i}.npz", features=x[:300] + i, labels=y[:300])
            for i in range(2)]
    code, _, err = _run(capsys, "analyze", "timing", *bare, "--method", "recommended",
                        "--repeat", 1)
    assert code == 0 and "recommended: no prior (give --prior PRIOR.json" in err


def test_timing_with_and_without_truth(digits_pool, capsys, tmp_path):
    paths, _, gt = digits_pool
    out_json = tmp_path / "t.json"
    code, out, err = _run(capsys, "analyze", "timing", *paths, "--method", "ncti,gbc",
                          "--repeat", 2, "--json", out_json)
    assert code == 0, err
    timing = json.loads(out_json.read_text())["timing"]
    assert set(timing) == {"ncti", "gbc"}
    assert len(timing["ncti"]["pool_seconds"]) == 2
    assert timing["ncti"]["per_model_min"] > 0
    assert "weighted tau" not in out
    code, out, _ = _run(capsys, "analyze", "timing", *paths, "--method", "gbc",
                        "--ground-truth", gt, "--repeat", 1)
    assert code == 0 and "weighted tau" in out


def test_source_terms(digits_pool, capsys, tmp_path):
    paths, sources, gt = digits_pool
    out_json = tmp_path / "s.json"
    code, out, err = _run(capsys, "analyze", "source", *paths, "--source", *sources,
                          "--ground-truth", gt, "--json", out_json)
    assert code == 0, err
    data = json.loads(out_json.read_text())
    assert data["provenance"]["source_files"] == [str(p) for p in sources]
    result = data["source"]
    assert list(result) == ["seli", "ncc", "vc", "all"]
    src_pool = [load_pool([p])[0] for p in sources]
    truth = json.loads(gt.read_text())
    ncc = {f.name: analyses.components_per_model([f])[f.name]["ncc"] for f in src_pool}
    assert result["ncc"]["source"] == pytest.approx(
        weightedtau(list(ncc.values()), [truth[m] for m in ncc]).statistic, abs=1e-7)
    assert all(math.isfinite(v["target"]) for v in result.values())
    assert "source features" in out


def _one_error_line(capsys, argv):
    code, _, err = _run(capsys, *argv)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nctk analyze: error:"), err
    return lines[0]


def test_source_file_missing_for_a_model(digits_pool, capsys):
    paths, sources, gt = digits_pool
    line = _one_error_line(capsys, ["analyze", "source", *paths, "--source", *sources[:3],
                                    "--ground-truth", gt])
    assert "--source" in line and "m3" in line


def test_method_without_terms_is_refused(digits_pool, capsys):
    paths, _, gt = digits_pool
    line = _one_error_line(capsys, ["analyze", "ablation", *paths, "--method", "gbc",
                                    "--ground-truth", gt])
    assert "--method" in line and "gbc" in line


def test_bad_shot_list(digits_pool, capsys):
    paths, _, gt = digits_pool
    code, _, err = _run(capsys, "analyze", "fewshot", *paths, "--ground-truth", gt,
                        "--shots", "2,x")
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("nctk analyze fewshot: error: argument --shots:")


def test_ground_truth_missing_a_model(digits_pool, capsys, tmp_path):
    paths, _, _ = digits_pool
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"m0": 1.0}))
    before = [p.read_bytes() for p in paths]
    line = _one_error_line(capsys, ["analyze", "ablation", *paths, "--ground-truth", gt])
    assert str(gt) in line and "m1" in line
    assert [p.read_bytes() for p in paths] == before
