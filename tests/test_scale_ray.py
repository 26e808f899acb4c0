"""The Ray executor on a local 2-CPU Ray instance (started once for this module), with the
shipped demo models: the ranking equals the one-process run, a worker that dies is
retried, a model that keeps raising is reported while the others finish, and a driver
killed mid-run is resumed from the cache, computing only the missing models."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

pytest.importorskip("torchvision")  # the vision extra: nctk.extract needs it
ray = pytest.importorskip("ray")  # the ray extra

import nctk.transfer  # noqa: F401  (registers the methods)
import scale_models as sm
from nctk.cli import main
from nctk.scale import ExtractSettings, LoopExecutor, RayExecutor, rank_models

#: starting the local Ray instance alone takes ~7 s; several tests run for 10-50 s
pytestmark = pytest.mark.slow

METHODS = ("ncti", "logme", "leep", "sfda")
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance with 2 CPUs; yields its address for a second driver."""
    ray.cloudpickle.register_pickle_by_value(sm)  # workers cannot import tests/
    # one logical GPU (none is real here): Ray hands out GPU shares, torch runs on the CPU
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, object_store_memory=200 << 20,
             logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def data():
    return sm.demo_data(per_class=10)


def one_thread_loop(models, data, cache_dir, methods=METHODS):
    """The one-process run with the threads of a Ray task (1 CPU: torch and BLAS on one
    thread), so that floating-point sums run in the same order: results bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            return rank_models(models, data, list(methods), executor=LoopExecutor(),
                               extract=ExtractSettings(cache_dir=str(cache_dir),
                                                       num_workers=0), progress=False)
    finally:
        torch.set_num_threads(threads)


def on_ray(models, data, cache_dir, methods=METHODS, **executor):
    executor.setdefault("gpus_per_task", 0)
    with RayExecutor(**executor) as ray_executor:
        return rank_models(models, data, list(methods), executor=ray_executor,
                           extract=ExtractSettings(cache_dir=str(cache_dir), num_workers=0),
                           progress=False)


def assert_same(run, reference, methods=METHODS):
    for method in methods:
        assert run.results[method].ranking == reference.results[method].ranking
        assert run.results[method].scores == reference.results[method].scores
        assert run.results[method].components == reference.results[method].components


def test_ray_ranking_equals_the_one_process_run(cluster, data, tmp_path):
    run = on_ray(sm.demo_adapters(), data, tmp_path / "ray")
    assert not run.failures
    assert [r.name for r in run.records] == list(sm.NAMES)  # the order given, not finished
    assert_same(run, one_thread_loop(sm.demo_adapters(), data, tmp_path / "loop"))
    # the loop resumes what Ray stored, and the other way round: the same cache keys
    again = one_thread_loop(sm.demo_adapters(), data, tmp_path / "ray")
    assert all(r.from_cache and r.scores_from_cache for r in again.records)
    assert_same(again, run)


def test_a_worker_that_dies_is_retried(cluster, data, tmp_path):
    marker = tmp_path / "died"
    models = [*sm.demo_adapters(sm.NAMES[:2]),
              sm.wrapped_adapter(sm.DiesOnFirstAttempt, "cnn_deep", str(marker))]
    run = on_ray(models, data, tmp_path / "cache", methods=["ncti"], retries=2)
    assert not run.failures
    assert [r.name for r in run.records] == ["cnn_small", "cnn_small_1ep", "cnn_deep"]
    assert len(marker.read_text().splitlines()) == 1  # one worker exited, one retry did it
    # in this process the marker now exists, so the wrapper just runs
    assert_same(run, one_thread_loop(models, data, tmp_path / "loop", ["ncti"]), ["ncti"])


def test_a_model_that_keeps_raising_is_reported_and_the_others_finish(cluster, data,
                                                                       tmp_path):
    marker = tmp_path / "raised"
    models = [*sm.demo_adapters(sm.NAMES[:2]),
              sm.wrapped_adapter(sm.AlwaysRaises, "cnn_deep", str(marker)),
              *sm.demo_adapters(sm.NAMES[2:3]), "mystery:net"]
    run = on_ray(models, data, tmp_path / "cache", methods=["ncti"], retries=1)
    assert [(r.spec, r.error) for r in run.failures] == [
        ("cnn_deep", "RuntimeError: boom in forward"),
        ("mystery:net", run.failures[1].error)]
    assert "unknown model spec 'mystery:net'" in run.failures[1].error
    assert len(marker.read_text().splitlines()) == 2  # first attempt and one retry
    assert list(run.results["ncti"].scores) == ["cnn_small", "cnn_small_1ep", "cnn_wide"]


DRIVER = textwrap.dedent("""
    import sys
    import ray
    import scale_models as sm
    from nctk.scale import ExtractSettings, RayExecutor, rank_models

    ray.cloudpickle.register_pickle_by_value(sm)
    models = [sm.wrapped_adapter(sm.Slow, name, "0.5") for name in sm.NAMES]
    with RayExecutor(sys.argv[1], gpus_per_task=0) as executor:
        rank_models(models, sm.demo_data(10), ["ncti", "logme"], executor=executor,
                    extract=ExtractSettings(cache_dir=sys.argv[2], num_workers=0),
                    progress=False)
""")


def settled(cache: Path, quiet: float = 2.0, limit: float = 60.0) -> dict[Path, int]:
    """The finished entries of ``cache`` (path -> mtime) once nothing changed for ``quiet``
    seconds."""
    def snapshot():
        return {p: p.stat().st_mtime_ns
                for p in (*cache.glob("*.npz"), *cache.glob("*.scores.json"))}

    deadline = time.monotonic() + limit
    last = snapshot()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = snapshot()
        if now == last:
            return now
        last = now
    raise AssertionError(f"the cache kept changing for {limit} s after the driver died")


def test_a_killed_driver_is_resumed_computing_only_the_missing_models(cluster, data,
                                                                      tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, cluster, str(cache)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(cache.glob("*.scores.json")):  # a first model is fully done
        assert driver.poll() is None, driver.stderr.read().decode()
        assert time.monotonic() < deadline, "the driver finished no model in 2 minutes"
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    driver.stderr.close()
    done = settled(cache)  # Ray stops the dead driver's tasks a moment later
    features = {p.name.split(".")[0] for p in done if p.name.endswith(".npz")}
    scores = {p.name.split(".")[0] for p in done if p.name.endswith(".scores.json")}
    assert 1 <= len(scores) <= len(features) < len(sm.NAMES)

    models = [sm.wrapped_adapter(sm.Slow, name, "0") for name in sm.NAMES]
    run = on_ray(models, data, cache, methods=["ncti", "logme"])
    assert not run.failures
    # exactly what was finished before the kill is reused, and left untouched
    assert {r.cache_key for r in run.records if r.from_cache} == features
    assert {r.cache_key for r in run.records if r.scores_from_cache} == scores
    assert {p: p.stat().st_mtime_ns for p in done} == done
    assert len(list(cache.glob("*.npz"))) == len(sm.NAMES)
    assert_same(run, one_thread_loop(models, data, tmp_path / "fresh", ["ncti", "logme"]),
                ["ncti", "logme"])


def test_cli_on_ray_equals_the_loop(cluster, tmp_path, capsys):
    specs = ",".join(f"demo:{name}" for name in sm.NAMES[:3])
    npz = tmp_path / "target.npz"
    subset = sm.demo_data(per_class=6)
    np.savez(npz, images=np.stack([np.asarray(subset.read_image(i))
                                   for i in range(len(subset))]),
             labels=subset.label_values())
    common = ["--models", specs, "--data", f"npz:{npz}", "--no-progress"]
    outputs = {}
    for executor in ("ray", "loop"):
        args = [*common, "--cache-dir", str(tmp_path / executor), "--executor", executor]
        if executor == "ray":
            args += ["--gpus-per-model", "0"]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with threadpool_limits(1):
                code = main(["rank", *args, "--method", "ncti,leep",
                             "--json", str(tmp_path / f"{executor}.json")])
                assert code == 0, capsys.readouterr().err
                code = main(["extract", *args, "--out",
                             str(tmp_path / f"{executor}-features")])
                assert code == 0, capsys.readouterr().err
        finally:
            torch.set_num_threads(threads)
        outputs[executor] = json.loads((tmp_path / f"{executor}.json").read_text())
    assert outputs["ray"]["methods"]["ncti"]["scores"] == outputs["loop"]["methods"]["ncti"][
        "scores"]
    assert outputs["ray"]["methods"]["leep"]["ranking"] == outputs["loop"]["methods"]["leep"][
        "ranking"]
    for name in sm.NAMES[:3]:
        ray_file = np.load(tmp_path / "ray-features" / f"{name}.npz")
        loop_file = np.load(tmp_path / "loop-features" / f"{name}.npz")
        assert ray_file.files == loop_file.files
        for key in ray_file.files:
            assert np.array_equal(ray_file[key], loop_file[key])
    printed = capsys.readouterr()
    # nothing on stderr but where rank put its files and the note that 30 samples are
    # fewer than the features' dimensions (no warning, no error)
    assert all(line.startswith(("features cached in ", "wrote ", "notes:",
                                "  - fewer samples (30) than feature dimensions")) or not line
               for line in printed.err.splitlines()), printed.err


def test_models_are_checked_as_ray_tasks_before_any_extraction(cluster, tmp_path, capsys):
    npz = tmp_path / "target.npz"
    subset = sm.demo_data(per_class=3)
    np.savez(npz, images=np.stack([np.asarray(subset.read_image(i))
                                   for i in range(len(subset))]),
             labels=subset.label_values())
    common = ["--data", f"npz:{npz}", "--executor", "ray", "--gpus-per-model", "0",
              "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    for models, problem in [
            ("demo:cnn_small,mystery:net,also:bad", "model 2 of 3 (mystery:net): unknown model "
                                                    "spec 'mystery:net'"),
            ("demo:cnn_small,demo:cnn_wide,demo:cnn_small", "model 1 of 3 (demo:cnn_small) "
                                                            "and model 3 of 3 (demo:cnn_small) "
                                                            "are both named 'cnn_small'")]:
        for command in (["rank", "--json", str(tmp_path / "out.json")],
                        ["extract", "--out", str(tmp_path / "out")]):
            assert main([command[0], "--models", models, *common, *command[1:]]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"nctk {command[0]}: error: {problem}"), err
            assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_collapse_shards_on_ray_equal_one_pass(cluster, tmp_path, capsys):
    from nctk.collapse import layer_profile
    from nctk.demo.run import extract_pool_features
    from nctk.io import load_feature_file, save_feature_file
    from nctk.scale.shards import sharded_profile
    from test_scale_shards import assert_profiles_equal

    (result,) = extract_pool_features(["resnet_tiny"])
    path = save_feature_file(tmp_path / "resnet_tiny.npz", result.features, result.labels,
                             layers=result.layers)
    expected = layer_profile(load_feature_file(path))
    with RayExecutor(gpus_per_task=0) as executor:
        assert executor.parallelism() == 2
        assert_profiles_equal(sharded_profile(path, executor, shards=5,
                                              scatter_bytes=50_000), expected)
    assert main(["collapse", str(path), "--executor", "ray", "--json",
                 str(tmp_path / "out.json")]) == 0  # one shard per CPU
    assert_profiles_equal(json.loads((tmp_path / "out.json").read_text())["layers"], expected)
    assert "penultimate" in capsys.readouterr().out


def test_gpu_shares_and_cpus_reach_the_tasks(cluster):
    """Last in this file: tasks of other shapes make Ray start (and later drop) workers."""
    with RayExecutor() as executor:  # the cluster has a GPU: one per task by default
        assert executor.gpus_per_task == 1
    with RayExecutor(gpus_per_task=0.25, cpus_per_task=0.5) as executor:
        assert executor.parallelism() == 4
        outcomes = list(executor.map_unordered(sm.assigned_resources, None, range(4)))
    assert sorted(o.index for o in outcomes) == [0, 1, 2, 3]
    for outcome in outcomes:
        assert outcome.value["CPU"] == 0.5 and outcome.value["GPU"] == 0.25


def test_trusted_checkpoint_on_ray_warns_once_on_the_driver(cluster, tmp_path, capsys):
    """Models are checked and extracted in Ray workers; the --trust-checkpoint warning is
    the driver's, one line, once; without the flag the worker's refusal is one line."""
    checkpoint = tmp_path / "pickled.pt"
    torch.save(sm.load_demo_model("cnn_small"), checkpoint)
    npz = tmp_path / "target.npz"
    subset = sm.demo_data(per_class=4)
    np.savez(npz, images=np.stack([np.asarray(subset.read_image(i))
                                   for i in range(len(subset))]),
             labels=subset.label_values())
    args = ["rank", "--models", f"{checkpoint},demo:cnn_wide", "--data", f"npz:{npz}",
            "--no-progress", "--no-cache", "--executor", "ray", "--gpus-per-model", "0",
            "--method", "logme"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --trust-checkpoint" in err[0], err
    assert main([*args, "--trust-checkpoint"]) == 0
    err = capsys.readouterr().err
    assert err.count("loading a trusted checkpoint runs code pickled in it") == 1, err
    assert f"nctk: warning: {checkpoint}: loading a trusted checkpoint" in err
    assert "UserWarning" not in err and "TrustedCheckpointWarning" not in err
