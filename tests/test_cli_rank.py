"""``nctk rank``: the JSON contract, the table, method options, and every bad-input case
(one line on stderr, exit 2, the input files untouched)."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import nctk.transfer  # noqa: F401  (registers the real methods)
from nctk.cli import main
from nctk.cli._table import fmt_number, format_table
from nctk.evaluation import evaluate
from nctk.transfer import registry
from nctk.transfer.registry import Method

N, D, C = 48, 6, 4


def _features(seed: int, signal: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(C), N // C)
    centres = rng.normal(size=(C, D)) * signal
    return centres[labels] + rng.normal(size=(N, D)), labels


def _write(path: Path, **arrays) -> Path:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


@pytest.fixture
def pool(tmp_path):
    """Three models of rising class separation, with ground truth in that order."""
    paths = []
    for i, signal in enumerate([0.5, 1.5, 3.0]):
        x, y = _features(i, signal)
        logits = np.random.default_rng(10 + i).normal(size=(N, 5))
        paths.append(_write(tmp_path / f"model{i}.npz", features=x, labels=y,
                            source_logits=logits))
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"model0": 60.0, "model1": 70.0, "model2": 80.0}))
    return paths, gt


def _separation(x, labels) -> float:
    """Between-class over within-class spread (a simple, exactly known score)."""
    x = np.asarray(x, float)
    labels = np.asarray(labels)
    means = np.stack([x[labels == c].mean(0) for c in np.unique(labels)])
    within = np.mean([x[labels == c].var(0).sum() for c in np.unique(labels)])
    return float(means.var(0).sum() / within)


@pytest.fixture(autouse=True)
def toy_methods(monkeypatch):
    """'separation' (plain), 'seeded' (records its seed), 'weighted' (pool-relative, two
    weighted terms), registered for one test only."""
    seen: dict[str, list] = {"seed": [], "weights": []}

    def seeded(x, labels, *, seed=123):
        seen["seed"].append(seed)
        return _separation(x, labels)

    def components(x, labels):
        return {"sep": _separation(x, labels), "norm": float(np.linalg.norm(x))}

    def combine(raw, w_sep=1.0, w_norm=1.0):
        seen["weights"].append((w_sep, w_norm))
        scores = {m: w_sep * r["sep"] + w_norm * 1e-6 * r["norm"] for m, r in raw.items()}
        return scores, {m: dict(r) for m, r in raw.items()}

    for method in (Method("separation", _separation),
                   Method("seeded", seeded),
                   Method("weighted", _separation, components=components, combine=combine,
                          combine_options=("w_sep", "w_norm"))):
        monkeypatch.setitem(registry._REGISTRY, method.name, method)
    return seen


def _run(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- success


def test_json_follows_the_contract(pool, toy_methods, capsys, tmp_path):
    paths, gt = pool
    out_json = tmp_path / "out.json"
    code, out, err = _run(capsys, "rank", *paths, "--method", "separation,weighted",
                          "--ground-truth", gt, "--json", out_json)
    assert code == 0, err
    data = json.loads(out_json.read_text())
    assert set(data) == {"methods", "evaluation", "provenance", "guidance"}  # contract + 2
    assert list(data["methods"]) == ["separation", "weighted"]
    sep = data["methods"]["separation"]
    assert set(sep) == {"scores", "ranking", "seconds", "components"}
    want = {f"model{i}": _separation(*_features(i, s)) for i, s in enumerate([0.5, 1.5, 3.0])}
    assert sep["scores"] == pytest.approx(want)
    assert sep["ranking"] == ["model2", "model1", "model0"]
    assert sep["seconds"] >= 0
    assert data["methods"]["weighted"]["components"]["model0"]["sep"] == pytest.approx(
        want["model0"])
    truth = json.loads(gt.read_text())
    assert data["evaluation"]["separation"] == pytest.approx(evaluate(want, truth))
    assert set(data["evaluation"]["weighted"]) == {"weighted_tau", "kendall_tau", "spearman",
                                                    "pearson", "top1_relative"}
    # the table: one block per method, the models ranked, the statistics beneath
    assert out.index("separation") < out.index("weighted")
    assert "weighted tau 1.000" in out and "summary" in out


def test_no_evaluation_without_ground_truth(pool, toy_methods, capsys, tmp_path):
    paths, _ = pool
    out_json = tmp_path / "out.json"
    code, out, _ = _run(capsys, "rank", *paths, "--method", "separation", "--json", out_json)
    assert code == 0
    assert set(json.loads(out_json.read_text())) == {"methods", "provenance", "guidance"}
    assert "weighted tau" not in out
    lines = [ln for ln in out.splitlines() if "model" in ln and ln.strip()[0].isdigit()]
    assert [ln.split()[1] for ln in lines] == ["model2", "model1", "model0"]
    assert len({len(ln) for ln in lines}) == 1  # aligned columns


def test_seed_goes_only_to_methods_that_take_it(pool, toy_methods, capsys):
    paths, _ = pool
    code, _, err = _run(capsys, "rank", *paths, "--method", "seeded,separation", "--seed", 7)
    assert code == 0, err
    assert toy_methods["seed"] == [7, 7, 7]


def test_term_weights_reach_the_pool_combination(pool, toy_methods, capsys, monkeypatch):
    paths, _ = pool
    monkeypatch.setattr("nctk.cli.rank.NCTI_WEIGHTS", ("w_sep", "w_norm", "w_unused"))
    code, _, err = _run(capsys, "rank", *paths, "--method", "weighted",
                        "--ncti-weights", "0.5,2,1")
    assert code == 0, err
    assert toy_methods["weights"] == [(0.5, 2.0)]


def test_constant_scores_are_reported_not_fatal(pool, capsys, monkeypatch, tmp_path):
    paths, gt = pool
    monkeypatch.setitem(registry._REGISTRY, "flat", Method("flat", lambda x, y: 1.0))
    out_json = tmp_path / "out.json"
    code, out, err = _run(capsys, "rank", *paths, "--method", "flat", "--ground-truth", gt,
                          "--json", out_json)
    assert code == 0
    assert "  - flat: correlations are NaN: the scores are constant" in err
    assert "correlations are NaN" not in out  # notes go to standard error
    assert "  - flat: model0, model1, model2 tie (equal scores)" in err
    assert json.loads(out_json.read_text())["evaluation"]["flat"]["weighted_tau"] is None


def test_report_is_written_through_nctk_report(pool, toy_methods, capsys, monkeypatch,
                                               tmp_path):
    paths, gt = pool
    calls = []

    def fake_report(path, **kwargs):
        calls.append((path, kwargs))
        return Path(path)

    # a stand-in module: the CLI imports nctk.report lazily, by name
    monkeypatch.setitem(sys.modules, "nctk.report", types.SimpleNamespace(
        write_report=fake_report))
    code, _, err = _run(capsys, "rank", *paths, "--method", "separation", "--ground-truth", gt,
                        "--report", tmp_path / "r.html")
    assert code == 0, err
    (path, kwargs), = calls
    assert str(path).endswith("r.html")
    assert set(kwargs["methods"]) == {"separation"}
    assert kwargs["truth"] == {"model0": 60.0, "model1": 70.0, "model2": 80.0}
    assert kwargs["evaluation"]["separation"]["weighted_tau"] == pytest.approx(1.0)


def test_models_and_data_go_through_the_pool_runner(toy_methods, capsys, monkeypatch):
    pytest.importorskip("torchvision")  # extraction needs the vision extra
    import nctk.extract
    import nctk.extract.preflight
    import nctk.scale
    from nctk.scale import PoolRanking
    from nctk.transfer import rank

    calls = []

    def fake_rank_models(specs, dataset, methods, **kwargs):
        calls.append((specs, dataset, methods, kwargs))
        pool = {s.split(":")[1]: _features(i, 1.0 + i)[0] for i, s in enumerate(specs)}
        return PoolRanking({m: rank(pool, _features(0, 1.0)[1], m) for m in methods}, [], [])

    class Loaded(str):
        spec = "imagefolder:/somewhere"

        def label_values(self):
            return np.repeat(["a", "b"], 5)

    monkeypatch.setattr(nctk.extract, "load_dataset", lambda spec: Loaded(f"loaded {spec}"))
    monkeypatch.setattr(nctk.extract, "subsample_per_class",
                        lambda data, k, seed: Loaded(f"{data}, {k} per class, seed {seed}"))
    monkeypatch.setattr(nctk.scale, "rank_models", fake_rank_models)
    checked = []
    monkeypatch.setattr(nctk.extract.preflight, "check_models",
                        lambda specs, data, **kw: checked.append((specs, data, kw)))
    code, out, err = _run(capsys, "rank", "--models", "torchvision:resnet18,timm:vit_tiny",
                          "--data", "imagefolder:/somewhere", "--per-class", 5, "--seed", 3,
                          "--cache-dir", "cache", "--skip-bad-images", "--device", "cpu",
                          "--method", "separation,seeded", "--no-progress",
                          "--image-size", 64)
    assert code == 0, err
    (checked_specs, checked_data, checked_kw), = checked  # before any extraction
    assert checked_specs == ["torchvision:resnet18", "timm:vit_tiny"]
    assert checked_data == "loaded imagefolder:/somewhere, 5 per class, seed 3"
    assert checked_kw.pop("executor") is not None and checked_kw == {
        "image_size": 64, "trust_checkpoint": False, "parts": None}
    (specs, dataset, methods, kwargs), = calls
    assert specs == ["torchvision:resnet18", "timm:vit_tiny"]
    assert dataset == "loaded imagefolder:/somewhere, 5 per class, seed 3"
    assert methods == ["separation", "seeded"]
    assert kwargs["extract"] == nctk.scale.ExtractSettings(
        image_size=64, device="cpu", skip_bad_images=True, cache_dir="cache", progress=False)
    assert kwargs["options"] == {"separation": {}, "seeded": {"seed": 3}}
    assert kwargs["optional_inputs"] is False and kwargs["progress"] is False
    assert type(kwargs["executor"]).__name__ == "LoopExecutor"
    assert "resnet18" in out and "vit_tiny" in out


@pytest.mark.parametrize("name", sorted(set(registry.available_methods())))
def test_every_registered_method_runs_from_the_cli(name, pool, capsys, tmp_path):
    paths, gt = pool
    out_json = tmp_path / "out.json"
    code, _, err = _run(capsys, "rank", *paths, "--method", name, "--ground-truth", gt,
                        "--json", out_json)
    assert code == 0, err
    data = json.loads(out_json.read_text())
    assert set(data["methods"][name]["scores"]) == {"model0", "model1", "model2"}


# ----------------------------------------------------------------------------- bad input


def _snapshot(paths):
    return {p: (Path(p).read_bytes(), Path(p).stat().st_mtime_ns) for p in paths}


def _assert_error(capsys, argv, inputs, *fragments):
    before = _snapshot(inputs)
    code, _out, err = _run(capsys, *argv)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nctk rank: error:"), err
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])
    assert "Traceback" not in err
    assert _snapshot(inputs) == before
    return lines[0]


def _bad_pool(tmp_path, pool, **arrays):
    """The fixture pool with one extra file 'bad.npz' holding ``arrays``."""
    paths, gt = pool
    bad = _write(tmp_path / "bad.npz", **arrays)
    return [*paths, bad], bad, gt


@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (np.inf, "inf")])
def test_non_finite_features(pool, tmp_path, capsys, value, word):
    x, y = _features(5, 1.0)
    x[3, 2] = value
    paths, bad, gt = _bad_pool(tmp_path, pool, features=x, labels=y)
    _assert_error(capsys, ["rank", *paths, "--method", "separation"], [*paths, gt],
                  bad, "array 'features'", word)


def test_non_finite_source_logits(pool, tmp_path, capsys):
    x, y = _features(5, 1.0)
    logits = np.ones((N, 5))
    logits[0, 0] = np.nan
    paths, bad, _gt = _bad_pool(tmp_path, pool, features=x, labels=y, source_logits=logits)
    _assert_error(capsys, ["rank", *paths, "--method", "leep"], paths, bad,
                  "array 'source_logits'", "NaN")


def test_single_class(tmp_path, capsys):
    x, _ = _features(0, 1.0)
    paths = [_write(tmp_path / f"m{i}.npz", features=x + i, labels=np.zeros(N, int))
             for i in range(2)]
    _assert_error(capsys, ["rank", *paths, "--method", "separation"], paths, paths[0],
                  "array 'labels'", "1 class")


def test_mismatched_lengths(pool, tmp_path, capsys):
    x, y = _features(5, 1.0)
    paths, bad, _gt = _bad_pool(tmp_path, pool, features=x, labels=y[:-3])
    _assert_error(capsys, ["rank", *paths, "--method", "separation"], paths, bad,
                  "array 'labels'", f"{N - 3}")


def test_labels_differ_between_models(pool, tmp_path, capsys):
    x, y = _features(5, 1.0)
    paths, bad, _gt = _bad_pool(tmp_path, pool, features=x, labels=y[::-1].copy())
    _assert_error(capsys, ["rank", *paths, "--method", "separation"], paths, bad,
                  "array 'labels'", "differ")


def test_float_labels(tmp_path, capsys):
    x, y = _features(0, 1.0)
    paths = [_write(tmp_path / f"m{i}.npz", features=x + i, labels=y + 0.5) for i in range(2)]
    _assert_error(capsys, ["rank", *paths, "--method", "separation"], paths, paths[0],
                  "array 'labels'", "non-integer")


def test_empty_features(pool, tmp_path, capsys):
    paths, bad, _gt = _bad_pool(tmp_path, pool, features=np.zeros((0, D)),
                               labels=np.zeros(0, int))
    _assert_error(capsys, ["rank", *paths, "--method", "separation"], paths, bad,
                  "array 'features'", "empty")


def test_not_an_npz_file(pool, tmp_path, capsys):
    paths, _gt = pool
    bad = tmp_path / "broken.npz"
    bad.write_text("this is not a zip archive")
    _assert_error(capsys, ["rank", *paths, bad, "--method", "separation"], [*paths, bad], bad,
                  "not a readable .npz")


def test_missing_file(pool, tmp_path, capsys):
    paths, _ = pool
    _assert_error(capsys, ["rank", *paths, tmp_path / "nope.npz", "--method", "separation"],
                  paths, "nope.npz", "no such file")


def test_missing_array(pool, tmp_path, capsys):
    x, _ = _features(5, 1.0)
    paths, bad, _gt = _bad_pool(tmp_path, pool, features=x)
    _assert_error(capsys, ["rank", *paths, "--method", "separation"], paths, bad,
                  "array 'labels'", "missing")


def test_method_needs_source_logits(tmp_path, capsys):
    paths = []
    for i in range(2):
        x, y = _features(i, 1.0)
        paths.append(_write(tmp_path / f"m{i}.npz", features=x, labels=y))
    _assert_error(capsys, ["rank", *paths, "--method", "leep"], paths, paths[0],
                  "array 'source_logits'", "missing")


def test_all_skips_logit_methods_when_files_have_no_logits(tmp_path, capsys, monkeypatch):
    for name in registry.available_methods():  # keep the run fast: two methods only
        if name not in ("separation", "leep"):
            monkeypatch.delitem(registry._REGISTRY, name)
    paths = []
    for i in range(2):
        x, y = _features(i, 1.0 + i)
        paths.append(_write(tmp_path / f"m{i}.npz", features=x, labels=y))
    code, out, err = _run(capsys, "rank", *paths, "--method", "all")
    assert code == 0, err
    assert "  - skipped leep: some feature files have no source_logits" in err
    assert "skipped" not in out  # notes go to standard error
    assert "separation" in out


def test_unknown_method(pool, capsys):
    paths, _ = pool
    _assert_error(capsys, ["rank", *paths, "--method", "separation,nosuch"], paths,
                  "--method", "unknown method 'nosuch'")


def test_ground_truth_missing_a_model(pool, tmp_path, capsys, toy_methods):
    paths, _ = pool
    gt = tmp_path / "partial.json"
    gt.write_text(json.dumps({"model0": 1.0, "model2": 3.0}))
    _assert_error(capsys, ["rank", *paths, "--method", "separation", "--ground-truth", gt],
                  [*paths, gt], gt, "model1")


def test_output_onto_an_input_is_refused(pool, capsys, toy_methods):
    paths, _ = pool
    _assert_error(capsys, ["rank", *paths, "--method", "separation", "--json", paths[1]],
                  paths, paths[1], "refusing to overwrite it")


def test_bad_term_weights(pool, capsys):
    paths, _ = pool
    _assert_error(capsys, ["rank", *paths, "--ncti-weights", "1,x"], paths, "--ncti-weights",
                  "W_SELI,W_NCC,W_VC")


def test_files_and_models_together(pool, capsys):
    pytest.importorskip("torchvision")  # extraction needs the vision extra
    paths, _ = pool
    _assert_error(capsys, ["rank", *paths, "--models", "timm:a", "--data", "npz:x"], paths,
                  "--models", "not both")


def test_nothing_to_rank(capsys):
    _assert_error(capsys, ["rank"], [], "FEATURES.npz", "no feature files")


# ---- cases decided by the real methods' own checks


def _small_pool(tmp_path, n, classes, d=6):
    paths = []
    for i in range(2):
        x = np.random.default_rng(i).normal(size=(n, d))
        paths.append(_write(tmp_path / f"m{i}.npz", features=x, labels=np.arange(n) % classes))
    return paths


def test_too_few_samples_for_ncti(tmp_path, capsys):
    paths = _small_pool(tmp_path, n=2, classes=2)
    _assert_error(capsys, ["rank", *paths, "--method", "ncti"], paths, paths[0],
                  "array 'features'", "NCTI needs at least 3")


def test_too_few_samples_per_class_for_nleep(tmp_path, capsys):
    # NLEEP fits ratio x C = 20 mixture components: 3 samples per class are too few
    paths = _small_pool(tmp_path, n=12, classes=4)
    _assert_error(capsys, ["rank", *paths, "--method", "nleep"], paths, paths[0],
                  "array 'features'", "mixture")


def test_fewer_samples_than_the_pca_dimension_reduces_it(tmp_path, capsys):
    """Not an error in nctk: NCTI's PCA goes to min(64, d, N - 1) dims (the reference
    code crashes, spec §2.5); the components record the dimension used."""
    paths = _small_pool(tmp_path, n=40, classes=4, d=80)
    out_json = tmp_path / "out.json"
    code, _, err = _run(capsys, "rank", *paths, "--method", "ncti", "--json", out_json)
    assert code == 0, err
    comps = json.loads(out_json.read_text())["methods"]["ncti"]["components"]
    assert comps["m0"]["pca_dim"] == 39


def test_a_single_model_is_not_a_pool(tmp_path, capsys):
    path = _small_pool(tmp_path, n=20, classes=2)[0]
    _assert_error(capsys, ["rank", path, "--method", "ncti"], [path], "FEATURES.npz",
                  "got 1 model; ranking needs at least 2")


def test_a_single_model_spec_is_not_a_pool(capsys):
    pytest.importorskip("torchvision")  # model specs need the vision extra
    _assert_error(capsys, ["rank", "--models", "mlp", "--data", "npz:x.npz"], [], "--models",
                  "got 1 model")


def test_five_samples_of_twenty_thousand_dimensions(tmp_path, capsys):
    """N = C = 5, d = 20,000: the H-scores go through the 5 x 5 Gram and finish; with
    --method all the first method that cannot score one sample per class refuses, in
    one line (no 20,000^2 matrix is formed on the way)."""
    paths = []
    for i in range(2):
        x = np.random.default_rng(i).normal(size=(5, 20_000)).astype(np.float32)
        paths.append(_write(tmp_path / f"wide{i}.npz", features=x, labels=np.arange(5)))
    out_json = tmp_path / "out.json"
    code, _, err = _run(capsys, "rank", *paths, "--method", "hscore,reg_hscore,logme,gbc",
                        "--json", out_json)
    assert code == 0, err
    scores = json.loads(out_json.read_text())["methods"]["hscore"]["scores"]
    assert scores == {"wide0": pytest.approx(4.0), "wide1": pytest.approx(4.0)}
    _assert_error(capsys, ["rank", *paths, "--method", "all"], paths, "wide0.npz")


def test_subsampling_methods_say_so(tmp_path, capsys, monkeypatch):
    """NLEEP and PARC score a stratified subsample when N exceeds their max_samples; the
    output says so (checked with the default cap lowered, the real one is 5,000)."""
    from nctk.transfer import leep, parc

    monkeypatch.setattr(leep.nleep, "__kwdefaults__", {"ratio": 5, "seed": 0, "log": True,
                                                      "max_samples": 60})
    monkeypatch.setattr(parc.parc, "__kwdefaults__", {"dim": 32, "max_samples": 60,
                                                     "seed": 0})
    paths = _small_pool(tmp_path, n=200, classes=4)
    code, out, err = _run(capsys, "rank", *paths, "--method", "nleep,parc,ncti", "--seed", 3)
    assert code == 0, err
    assert "  - nleep: scored a stratified subsample of 60 of the 200 samples (seed 3)" in err
    assert "  - parc: scored a stratified subsample of 60 of the 200 samples (seed 3)" in err
    assert "ncti: scored" not in err and "scored a" not in out  # notes go to stderr


def test_table_aligns_numbers_right_and_text_left():
    text = format_table(["name", "value"], [["a", 1.5], ["longer", -12.25], ["c", math.nan]],
                        digits=2)
    lines = text.splitlines()
    assert lines[0] == "name     value"
    assert lines[1] == "------  ------"
    assert lines[2] == "a         1.50"
    assert lines[3] == "longer  -12.25"
    assert lines[4] == "c          nan"


def test_number_formats():
    assert fmt_number(3) == "3"
    assert fmt_number(None) == "nan"
    assert fmt_number(2.5e-7) == "2.500e-07"
    assert fmt_number(2.5e-7, scientific=False) == "0.0000"
    assert fmt_number(float("-inf")) == "-inf"
    assert fmt_number("text") == "text"
