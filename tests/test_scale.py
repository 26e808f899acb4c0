"""Pool runs in one process (the loop executor): one unit of work per model, equal to the
one-shot ranking, resumable from the cache, failures per model; the CLI around it."""

from __future__ import annotations

import json
import math
import sys
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision")  # the vision extra: nctk.extract needs it

import nctk.transfer  # noqa: F401  (registers the methods)
import scale_models as sm
from nctk.cli import main
from nctk.errors import InputError
from nctk.extract import extract_features, load_dataset
from nctk.extract.engine import feature_cache
from nctk.scale import ExtractSettings, LoopExecutor, rank_models
from nctk.scale.unit import PoolJob, ScoreSettings, labels_digest, run_model
from nctk.transfer import get_method
from nctk.transfer.ranking import rank_pool_methods

METHODS = ("ncti", "logme", "leep", "sfda")


@pytest.fixture(scope="module")
def data():
    return sm.demo_data(per_class=10)


@pytest.fixture(scope="module")
def reference(data):
    """The one-process ranking: every model extracted, then ``rank_pool_methods`` over them,
    one model at a time as the loop scores them (models scored side by side run
    single-threaded kernels, whose sums differ from the loop's in the last bits)."""
    pool = [extract_features(a, data, progress=False, num_workers=0)
            for a in sm.demo_adapters()]
    return {m: rank_pool_methods(pool, [get_method(m)], workers=1)[m] for m in METHODS}


def _rank(data, models, cache_dir, methods=METHODS, trust_checkpoint=False, **kwargs):
    return rank_models(models, data, list(methods), executor=LoopExecutor(),
                       extract=ExtractSettings(cache_dir=str(cache_dir), num_workers=0,
                                               trust_checkpoint=trust_checkpoint),
                       progress=False, **kwargs)


def test_loop_equals_the_one_shot_ranking_and_resumes_from_the_cache(data, reference,
                                                                     tmp_path):
    first = _rank(data, sm.demo_adapters(), tmp_path)
    assert not first.failures and not first.notes
    assert [r.name for r in first.records] == list(sm.NAMES)
    assert not any(r.from_cache for r in first.records)
    for method in METHODS:  # bit for bit: the same numerics, combined in the same order
        assert first.results[method].scores == reference[method].scores
        assert first.results[method].ranking == reference[method].ranking
        assert first.results[method].components == reference[method].components
    ncti = first.results["ncti"].components
    assert {"seli_norm", "ncc_norm", "vc_norm"} <= set(ncti["cnn_small"])

    again = _rank(data, sm.demo_adapters(), tmp_path)
    assert all(r.from_cache and r.scores_from_cache for r in again.records)
    assert all(r.extract_seconds == 0 for r in again.records)
    for method in METHODS:
        assert again.results[method].scores == first.results[method].scores
    # NCTI's weights act on the driver's combination only: the stored components are reused
    weighted = _rank(data, sm.demo_adapters(), tmp_path, methods=["ncti"],
                     options={"ncti": {"w_seli": 1.0, "w_ncc": 0.0, "w_vc": 1.0}})
    assert all(r.scores_from_cache for r in weighted.records)
    expected = rank_pool_methods(_cached_pool(data, tmp_path), [get_method("ncti")],
                                 {"ncti": {"w_seli": 1.0, "w_ncc": 0.0, "w_vc": 1.0}},
                                 workers=1)["ncti"]
    assert weighted.results["ncti"].scores == expected.scores


def _cached_pool(data, cache_dir):
    return [extract_features(a, data, cache_dir=cache_dir, progress=False, num_workers=0)
            for a in sm.demo_adapters()]


def test_stored_scores_follow_the_options_and_keep_nan(data, tmp_path):
    (model,) = sm.demo_adapters(["cnn_small"])
    job = PoolJob(data, ExtractSettings(cache_dir=str(tmp_path), num_workers=0),
                  ScoreSettings(("parc",), {"parc": {"seed": 0}}))
    first = run_model(job, model)
    reseeded = run_model(PoolJob(data, job.extract, ScoreSettings(("parc",),
                                                                  {"parc": {"seed": 1}})), model)
    assert not reseeded.scores_from_cache
    assert run_model(job, model).scores_from_cache
    assert run_model(job, model).terms == first.terms
    store = next(tmp_path.glob("*.scores.json"))
    data_ = json.loads(store.read_text())
    key = next(iter(data_["terms"]))
    data_["terms"][key]["terms"] = math.nan
    store.write_text(json.dumps(data_))
    assert math.isnan(run_model(job, model).terms["parc"])


def test_a_failing_model_is_reported_and_the_others_are_ranked(data, reference, tmp_path):
    marker = str(tmp_path / "attempts")
    models = sm.demo_adapters()
    models.insert(2, sm.wrapped_adapter(sm.AlwaysRaises, "cnn_deep", marker))
    models.insert(4, "mystery:net")
    run = _rank(data, models, tmp_path)
    assert [r.spec for r in run.failures] == ["cnn_deep", "mystery:net"]
    assert run.failures[0].error == "RuntimeError: boom in forward"
    assert "unknown model spec 'mystery:net'" in run.failures[1].error
    assert [r.name for r in run.records] == list(sm.NAMES)
    for method in METHODS:
        assert run.results[method].scores == reference[method].scores


def test_pool_checks(data, tmp_path):
    models = sm.demo_adapters(["cnn_small", "cnn_wide"])
    run = _rank(data, [*models, sm.demo_adapters(["cnn_small"])[0]], tmp_path)
    assert [r.error for r in run.failures] == [
        "two models are named 'cnn_small'; give distinct names"]
    other = sm.demo_data(per_class=6)
    single = run_model(PoolJob(other, ExtractSettings(num_workers=0), ScoreSettings(("ncti",))),
                       models[1])
    assert single.labels_digest != run.records[1].labels_digest
    assert labels_digest(np.array(["a", "b"])) != labels_digest(np.array([0, 1]))
    with pytest.raises(InputError, match="labels differ"):
        from nctk.scale.pool import _check_labels

        _check_labels([run.records[0], single])


def test_methods_without_their_input(data, tmp_path):
    """A TorchScript model has no source logits: ``all`` leaves LEEP out with a note, a
    method named explicitly fails that model."""
    scripted = tmp_path / "scripted.pt"
    with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(sm.load_demo_model("cnn_small"), torch.zeros(1, 3, 32, 32)).save(
            scripted)
    models = [*sm.demo_adapters(["cnn_wide"]), str(scripted)]
    run = _rank(data, models, tmp_path, methods=["logme", "leep"], optional_inputs=True,
                trust_checkpoint=True)
    assert list(run.results) == ["logme"]
    assert run.notes == ["skipped leep: some models have no source_logits"]
    run = _rank(data, models, tmp_path, methods=["logme", "leep"], trust_checkpoint=True)
    assert [r.spec for r in run.failures] == [str(scripted)]
    assert "array 'source_logits': missing; method 'leep' needs" in run.failures[0].error


def test_packed_dataset_reads_the_same_images_under_the_same_key(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                tmp_path / "imgs" / cls / f"{i}.png")
    original = load_dataset(f"imagefolder:{tmp_path / 'imgs'}").subset([5, 1, 6])
    packed = original.packed()
    assert packed._reader.names == [str(tmp_path / "imgs" / f) for f in
                                    ("a/1.png", "b/1.png", "b/2.png")]
    for position in range(3):
        assert np.array_equal(np.asarray(packed.read_image(position)),
                              np.asarray(original.read_image(position)))
        assert packed.describe(position) == original.describe(position)
    (model,) = sm.demo_adapters(["cnn_small"])
    key = feature_cache(model, original, tmp_path).key
    assert feature_cache(model, packed, tmp_path).key == key
    assert original.packed(max_bytes=10) is original  # over the limit: files stay files
    npz = sm.demo_data(per_class=2)
    packed = npz.packed()
    assert packed._reader.payloads.shape[0] == len(npz) < npz._reader.images.shape[0]
    assert np.array_equal(np.asarray(packed.read_image(7)), np.asarray(npz.read_image(7)))


# ---------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Four shipped demo models as CLI specs, and 8 images per class as an npz dataset."""
    npz = tmp_path_factory.mktemp("data") / "target.npz"
    subset = sm.demo_data(per_class=8)
    images = np.stack([np.asarray(subset.read_image(i)) for i in range(len(subset))])
    np.savez(npz, images=images, labels=subset.label_values())
    return [f"demo:{name}" for name in sm.NAMES[:4]], f"npz:{npz}"


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_rank_models_equals_rank_of_extracted_files(checkpoints, tmp_path, capsys):
    specs, data = checkpoints
    common = ["--data", data, "--cache-dir", tmp_path / "cache", "--no-progress"]
    code, _, err = _cli(capsys, "extract", "--models", ",".join(specs), *common,
                        "--out", tmp_path / "feats", "--workers", "0")
    assert code == 0, err
    files = sorted((tmp_path / "feats").glob("*.npz"))
    assert len(files) == 4
    code, _, err = _cli(capsys, "rank", *files, "--method", "ncti,logme",
                        "--json", tmp_path / "files.json")
    assert code == 0, err
    code, out, err = _cli(capsys, "rank", "--models", ",".join(specs), *common,
                          "--method", "ncti,logme", "--json", tmp_path / "models.json")
    assert code == 0 and "error" not in err
    assert err.strip().splitlines()[-2:] == [f"features cached in {tmp_path / 'cache'}",
                                             f"wrote {tmp_path / 'models.json'}"]
    from_files = json.loads((tmp_path / "files.json").read_text())["methods"]
    from_models = json.loads((tmp_path / "models.json").read_text())["methods"]
    for method in ("ncti", "logme"):
        # the files are scored side by side, one thread each, the models one by one with
        # the caller's threads: equal to the last bits (~1e-15), not bit for bit
        assert from_models[method]["scores"] == pytest.approx(from_files[method]["scores"],
                                                              rel=1e-7)
        assert from_models[method]["ranking"] == from_files[method]["ranking"]
    assert "cnn_wide" in out


def test_cli_a_model_that_does_not_load_fails_before_any_extraction(checkpoints, tmp_path,
                                                                    capsys):
    specs, data = checkpoints
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    models = ",".join([specs[0], str(bad), specs[1]])
    common = ["--data", data, "--cache-dir", tmp_path / "cache", "--no-progress"]
    for command in (["rank", "--json", tmp_path / "out.json"],
                    ["extract", "--out", tmp_path / "feats"]):
        code, out, err = _cli(capsys, command[0], "--models", models, *common, *command[1:])
        assert code == 2 and out == ""
        assert err.startswith(f"nctk {command[0]}: error: model 2 of 3 ({bad}): {bad}: "
                              "unreadable checkpoint")
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "feats").exists()
    assert not (tmp_path / "cache").exists()  # nothing was extracted


def test_cli_some_models_fail_during_extraction(checkpoints, tmp_path, capsys, monkeypatch):
    import nctk.scale.unit as unit

    specs, data = checkpoints
    real = unit.extract_features

    def failing(adapter, *args, **kwargs):  # the second model breaks while extracting
        if adapter.name == "cnn_small_1ep":
            raise InputError("cannot read image", file="target.npz[3]")
        return real(adapter, *args, **kwargs)

    monkeypatch.setattr(unit, "extract_features", failing)
    models = ",".join(specs[:3])
    common = ["--data", data, "--cache-dir", tmp_path / "cache", "--no-progress"]
    code, out, err = _cli(capsys, "rank", "--models", models, *common, "--method", "ncti",
                          "--json", tmp_path / "out.json")
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[0] == (f"nctk rank: error: model {specs[1]}: target.npz[3]: cannot read "
                        "image")
    assert lines[1] == "nctk rank: 1 of 3 models failed; the results cover the other 2"
    written = json.loads((tmp_path / "out.json").read_text())
    assert list(written["methods"]["ncti"]["scores"]) == ["cnn_small", "cnn_wide"]
    assert list(written["failed"]) == [specs[1]]
    code, out, err = _cli(capsys, "extract", "--models", models, *common, "--out",
                          tmp_path / "feats", "--workers", "0")
    assert code == 1 and len(out.strip().splitlines()) == 2
    assert sorted(p.name for p in (tmp_path / "feats").iterdir()) == [
        "cnn_small.npz", "cnn_wide.npz"]


@pytest.mark.parametrize("args, where, problem", [
    (["--retries", "2"], "--retries", "only with --executor ray"),
    (["--ray-address", "auto"], "--ray-address", "only with --executor ray"),
    (["--executor", "ray", "--gpus-per-model", "-1"], "argument --gpus-per-model",
     "expected a finite number >= 0, got '-1'"),
    (["--executor", "ray", "--cpus-per-model", "0"], "argument --cpus-per-model",
     "expected a finite number > 0, got '0'"),
    (["--executor", "ray", "--retries", "-1"], "argument --retries",
     "expected an integer >= 0, got '-1'"),
])
def test_cli_executor_options_are_checked(checkpoints, tmp_path, capsys, args, where, problem):
    specs, data = checkpoints
    for command in (["rank", "--models", specs[0], "--data", data],
                    ["extract", "--models", specs[0], "--data", data, "--out", tmp_path]):
        code, out, err = _cli(capsys, *command, *args)
        assert code == 2 and out == ""
        assert err.startswith(f"nctk {command[0]}: error: {where}: {problem}")
        assert len(err.strip().splitlines()) == 1
    code, _, err = _cli(capsys, "rank", "features.npz", "--executor", "ray")
    assert code == 2 and "--executor: applies to --models" in err


def test_cli_ray_options_reach_the_executor():
    pytest.importorskip("ray")
    from nctk.cli import build_parser
    from nctk.cli._executor import make_executor

    argv = ["rank", "--models", "m", "--data", "d", "--executor", "ray", "--ray-address",
            "head:6379", "--gpus-per-model", "0.25", "--cpus-per-model", "2", "--retries", "5"]
    executor = make_executor(build_parser(argv).parse_args(argv))
    assert (executor.address, executor.gpus_per_task, executor.cpus_per_task,
            executor.retries) == ("head:6379", 0.25, 2.0, 5)
    argv = ["collapse", "f.npz", "--executor", "ray"]
    executor = make_executor(build_parser(argv).parse_args(argv))
    assert (executor.address, executor.gpus_per_task, executor.cpus_per_task,
            executor.retries) == (None, 0, 1, 3)  # shards never ask for a GPU


def test_cli_without_ray_says_how_to_install_it(checkpoints, tmp_path, capsys, monkeypatch):
    specs, data = checkpoints
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    for command in (["rank", "--models", specs[0], "--data", data],
                    ["extract", "--models", specs[0], "--data", data, "--out", tmp_path]):
        code, out, err = _cli(capsys, *command, "--executor", "ray")
        assert code == 2 and out == ""
        assert err == (f"nctk {command[0]}: error: --executor: the Ray executor needs Ray: "
                       "pip install 'nctk[ray]'\n")
