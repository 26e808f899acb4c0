"""benchmarks/selection_truth.py: the jobs that build the ground truth for model selection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmark_scripts import benchmark_module
from nctk.io import load_feature_file


@pytest.fixture(scope="module")
def truth():
    with benchmark_module("selection_truth") as module:
        yield module


def tiny_target(folder: Path, truth) -> None:
    """3 classes of 8 train / 4 test images each; class k is brighter with k."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 8), ("test", 4)):
        labels = np.repeat(["cat", "dog", "eel"], per_class)
        images = rng.integers(0, 80, (len(labels), 32, 32, 3)).astype(np.uint8)
        images += (np.repeat(np.arange(3), per_class) * 80).astype(np.uint8)[:, None, None, None]
        truth.save_images(folder / f"{split}.npz", images, labels)


def test_recipe_options_name_every_setting(truth):
    recipe = truth.Recipe(epochs=9, lr=0.02, batch_size=64, image_size=32)
    assert recipe.select_options() == ("--method full --epochs 9 --lr 0.02 --batch-size 64 "
                                       "--val-fraction 0.2 --seed 0 --image-size 32")
    config = recipe.config(seed=3, val_fraction=0.0)
    assert (config.epochs, config.lr, config.batch_size, config.seed, config.val_fraction) == (
        9, 0.02, 64, 3, 0.0)


def test_jobs_record_curves_truths_and_features_and_resume(truth, tmp_path):
    pytest.importorskip("torchvision")  # the jobs fine-tune and extract (the vision extra)
    tiny_target(tmp_path, truth)
    recipe = truth.Recipe(epochs=2, lr=0.02, batch_size=8, val_fraction=0.25,
                          truth_seeds=(1, 2))
    pool = {"a": "demo:cnn_small", "b": "demo:mlp"}
    jobs = truth.target_jobs(tmp_path, pool, recipe, {"a": 0.6, "b": 0.5})
    assert [j.label for j in jobs] == ["features"] * 2 + ["curve"] * 2 + ["truth_seed1"] * 2 + [
        "truth_seed2"] * 2
    done = dict(((j.name, j.label), truth.run_job(j)[1]) for j in jobs)
    curve = done["a", "curve"]
    assert len(curve["val_accuracy"]) == 2 and len(curve["epoch_seconds"]) == 2
    assert curve["best_val_accuracy"] == max(curve["val_accuracy"])
    assert 0 <= curve["test_accuracy"] <= 1
    features = load_feature_file(tmp_path / "features" / "a.npz", require_logits=True)
    assert features.features.shape[0] == 24 and features.source_logits.shape == (24, 5)
    assert features.source_accuracy == pytest.approx(0.6)

    stamp = (tmp_path / "records" / "a" / "curve.json").stat().st_mtime_ns
    assert truth.run_job(jobs[2])[1] == curve  # kept, not trained again
    assert (tmp_path / "records" / "a" / "curve.json").stat().st_mtime_ns == stamp

    spread = truth.summarise(tmp_path, pool, recipe)
    seeds = json.loads((tmp_path / "ground_truth_seeds.json").read_text())
    means = json.loads((tmp_path / "ground_truth.json").read_text())
    assert seeds["b"] == {"1": done["b", "truth_seed1"]["test_accuracy"],
                          "2": done["b", "truth_seed2"]["test_accuracy"]}
    for name in pool:  # the JSON round trip of a float is exact
        assert means[name] == float(np.mean(list(seeds[name].values())))
    assert spread["best"] == max(means, key=means.get)
    assert spread["range"] == pytest.approx(abs(means["a"] - means["b"]), abs=1e-7)


def test_a_redrawn_target_invalidates_the_records(truth, tmp_path):
    tiny_target(tmp_path, truth)
    recipe = truth.Recipe(epochs=1, lr=0.02, batch_size=8, val_fraction=0.25)
    job = truth.Job(str(tmp_path), "a", "demo:cnn_small", truth.CURVE, recipe, None)
    before = job.settings()
    with np.load(tmp_path / "train.npz") as z:
        images, labels = z["images"].copy(), z["labels"]
    images[0, 0, 0, 0] ^= 1
    truth.save_images(tmp_path / "train.npz", images, labels)
    assert job.settings()["data"]["train"] != before["data"]["train"]
    assert job.settings()["data"]["test"] == before["data"]["test"]


def test_spread_of_truths(truth):
    seeds = {"a": {"1": 0.8, "2": 0.7}, "b": {"1": 0.6, "2": 0.6}, "c": {"1": 0.5, "2": 0.7}}
    means = {k: float(np.mean(list(v.values()))) for k, v in seeds.items()}
    curves = {k: {"epoch_seconds": [1.0, 2.0], "cpu_seconds": 1.0} for k in seeds}
    spread = truth.spread(means, seeds, curves)
    assert spread["best"] == "a" and spread["best_truth"] == pytest.approx(0.75)
    assert spread["gap_to_second"] == pytest.approx(0.15)
    assert spread["range"] == pytest.approx(0.15)
    expected = np.mean([np.std([0.8, 0.7], ddof=1), 0.0, np.std([0.5, 0.7], ddof=1)])
    assert spread["seed_std_mean"] == pytest.approx(expected)
    assert spread["brute_force_seconds"] == 9.0 and spread["brute_force_cpu_seconds"] == 3.0


def test_target_record_names_the_options_and_the_validation_noise(truth, tmp_path):
    tiny_target(tmp_path, truth)
    recipe = truth.Recipe(epochs=3, lr=0.02, batch_size=8, val_fraction=0.25, image_size=32)
    record = truth.write_target_record(tmp_path, {"a": "file:a.pt"}, {"a": 0.5}, recipe,
                                       select_flags="--trust-checkpoint", train_seed=7)
    assert json.loads((tmp_path / "target.json").read_text()) == truth.settled(record)
    assert json.loads((tmp_path / "prior.json").read_text()) == {"a": 0.5}
    assert record["select_options"].endswith("--seed 0 --image-size 32 --trust-checkpoint")
    assert record["train_seed"] == 7 and record["models"] == {"a": "file:a.pt"}
    # 24 training images, a quarter held out: 6 validation images
    assert record["validation_standard_error_points_at_0.7"] == pytest.approx(
        100 * np.sqrt(0.7 * 0.3 / 6), abs=0.005)
