"""The demo pool: architectures, shipped weights, target subset and ground truth."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nctk.demo.assets import ASSETS, asset, pool_info
from nctk.demo.models import POOL, pool_names
from nctk.demo.run import load_demo_model, select_models
from nctk.errors import InputError

TARGET_CLASSES = ["dog", "frog", "horse", "ship", "truck"]
BUILD_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "build_demo_pool.py"


@pytest.mark.parametrize("member", POOL, ids=lambda m: m.name)
def test_architecture_has_head_and_named_blocks(member):
    torch.manual_seed(0)
    net = member.build().eval()
    assert isinstance(net.head, nn.Linear)
    children = dict(net.named_children())
    assert net.block_names and all(b in children for b in net.block_names)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        logits = net(x)
        feats = net.penultimate(x)
    assert logits.shape == (3, 5)
    assert feats.shape == (3, net.head.in_features)
    torch.testing.assert_close(net.head(feats), logits)
    assert sum(p.numel() for p in net.parameters()) <= 400_000


def test_pool_is_diverse_and_large_enough():
    assert len(POOL) >= 8
    assert len(set(pool_names())) == len(POOL)
    assert len({type(m.build()).__name__ for m in POOL}) >= 6
    assert len({m.source_epochs for m in POOL}) >= 2


@pytest.mark.parametrize("name", pool_names())
def test_shipped_weights_load_strictly(name):
    net = load_demo_model(name)
    state = torch.load(asset(f"{name}.pt"), weights_only=True)
    assert {k for k, v in state.items() if v.is_floating_point()} and all(
        v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert not net.training
    with torch.no_grad():
        out = net(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


def test_shipped_assets_are_small():
    total = sum(p.stat().st_size for p in ASSETS.iterdir() if p.is_file())
    assert total < 8 * 2**20


def test_target_subset_shape_and_classes():
    with np.load(asset("target_subset.npz"), allow_pickle=False) as z:
        images, labels = z["images"], z["labels"]
    assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[1:] == (32, 32, 3)
    assert labels.shape == (images.shape[0],) and labels.dtype.kind == "U"
    classes, counts = np.unique(labels, return_counts=True)
    assert classes.tolist() == TARGET_CLASSES
    assert (counts == pool_info()["target_task"]["per_class"]).all()
    assert len(np.unique(images.reshape(len(images), -1), axis=0)) == len(images)


def test_ground_truth_matches_pool():
    truth = json.loads(asset("ground_truth.json").read_text())
    assert sorted(truth) == sorted(pool_names())
    assert all(0.2 < v <= 1.0 for v in truth.values())  # above 5-way chance
    assert len(set(truth.values())) > 1
    info = pool_info()
    assert [m["name"] for m in info["models"]] == pool_names()
    assert {m["name"]: m["finetuned_target_test_accuracy"] for m in info["models"]} == truth
    recipe = info["recipe"]  # what the demo's select step fine-tunes with
    assert {"epochs", "lr", "batch_size", "val_fraction", "selection_seed"} <= set(recipe)
    assert recipe["selection_seed"] not in recipe["truth_seeds"]
    for model in info["models"]:  # the mean of the seeds, as written (exact: same floats)
        seeds = list(model["finetuned_seeds"].values())
        assert len(seeds) >= 2 and truth[model["name"]] == float(np.mean(seeds))
    assert list(info["source_task"]["classes"]) == ["airplane", "automobile", "bird", "cat",
                                                    "deer"]


def test_select_models_checks_names():
    assert select_models(None) == pool_names()
    assert select_models(["mlp", pool_names()[0]]) == [pool_names()[0], "mlp"]
    with pytest.raises(InputError, match="unknown demo model 'resnet50'"):
        select_models(["resnet50", "mlp"])
    with pytest.raises(InputError, match="at least 2"):
        select_models(["mlp", "mlp"])


def _build_script():
    spec = importlib.util.spec_from_file_location("build_demo_pool", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_script_selects_classes_and_draws_subset():
    build = _build_script()
    names = np.array(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                      "ship", "truck"])
    labels = np.repeat(np.arange(10), 4)
    split = np.tile([0, 0, 0, 1], 10).astype(np.uint8)
    images = np.arange(40, dtype=np.uint8)[:, None, None, None] * np.ones((1, 32, 32, 3),
                                                                            np.uint8)
    data = {"images": images, "labels": labels, "split": split, "class_names": names}
    x, y = build.select(data, build.TARGET_CLASSES, split=0)
    assert len(x) == 15 and y.tolist() == np.repeat(np.arange(5), 3).tolist()
    assert (x[:, 0, 0, 0] // 4 == y + 5).all()  # image i belongs to class i // 4
    subset = build.target_subset(data, per_class=2, seed=0)
    assert subset["images"].shape == (10, 32, 32, 3)
    assert subset["labels"].tolist() == np.repeat(build.TARGET_CLASSES, 2).tolist()
    again = build.target_subset(data, per_class=2, seed=0)
    assert (again["images"] == subset["images"]).all()


def test_build_script_training_learns_a_separable_task():
    build = _build_script()
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(2), 32)
    images = rng.integers(0, 60, size=(64, 32, 32, 3), dtype=np.uint8)
    images[labels == 1] += 150  # class 1 is bright
    torch.manual_seed(0)
    net = POOL[0].build()
    net.head = nn.Linear(net.head.in_features, 2)
    build.train(net, images, labels, epochs=2, lr=1e-2, seed=0)
    assert build.accuracy(net, images, labels) == 1.0
