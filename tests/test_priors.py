"""Data-free priors: the ``source_accuracy`` of feature files, torchvision's ImageNet top-1
recorded at extraction (offline), and ``nctk.priors``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision")  # the vision extra

import torchvision.models as tvm
from torch import nn
from torchvision import transforms as T

from nctk.errors import InputError
from nctk.extract import ModelAdapter, extract_features, extract_pool, load_model, write_pool
from nctk.extract.models import imagenet_top1
from nctk.io import FeatureFile, feature_file_from_arrays, load_feature_file, save_feature_file
from nctk.priors import load_prior, recorded_prior, resolve_prior

X = np.arange(12.0).reshape(4, 3)
Y = np.array([0, 1, 0, 1])


def test_feature_file_round_trip(tmp_path):
    path = save_feature_file(tmp_path / "m.npz", X, Y, source_accuracy=76.13)
    assert load_feature_file(path).source_accuracy == 76.13
    assert load_feature_file(save_feature_file(tmp_path / "n.npz", X, Y)).source_accuracy is None


@pytest.mark.parametrize("value", [np.nan, np.array([1.0, 2.0]), np.array("high"),
                                   np.array(True)])
def test_bad_source_accuracy_is_one_line_error(value):
    with pytest.raises(InputError, match="array 'source_accuracy': expected one finite number"):
        feature_file_from_arrays("m", {"features": X, "labels": Y, "source_accuracy": value})


def test_imagenet_top1_from_torchvision_metadata_offline():
    assert imagenet_top1(tvm.get_model_weights("resnet50").IMAGENET1K_V2) == 80.858
    assert imagenet_top1(tvm.get_model_weights("densenet121").IMAGENET1K_V1) == 74.434
    assert imagenet_top1(None) is None


def test_torchvision_spec_records_the_top1(monkeypatch):
    state = tvm.resnet18().state_dict()  # stands in for the download (no network here)
    monkeypatch.setattr(tvm._api, "load_state_dict_from_url", lambda *a, **k: state)
    assert load_model("torchvision:resnet18:IMAGENET1K_V1").source_accuracy == 69.758
    assert load_model("torchvision:resnet18:none").source_accuracy is None  # random weights


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_extraction_carries_the_adapter_accuracy_to_files_and_cache(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, images=rng.integers(0, 256, (8, 5, 5, 3), dtype=np.uint8),
             labels=np.array(["a", "b"] * 4))
    adapter = ModelAdapter(Tiny(), name="tiny", transform=T.ToTensor(), source_accuracy=71.5)
    adapter.head = adapter.module.fc
    for _ in range(2):  # computed, then read back from the cache
        result = extract_features(adapter, f"npz:{data}", cache_dir=tmp_path / "cache",
                                  progress=False, num_workers=0)
        assert result.source_accuracy == 71.5
    pool = extract_pool([adapter], f"npz:{data}", progress=False, num_workers=0)
    path, = write_pool(pool, tmp_path / "out")
    assert load_feature_file(path).source_accuracy == 71.5


def _file(name, accuracy=None):
    return FeatureFile(name=name, features=X, labels=Y, source_accuracy=accuracy)


def test_recorded_prior_needs_every_file():
    prior, note = recorded_prior([_file("a", 70.0), _file("b", 75.0)])
    assert prior.values == {"a": 70.0, "b": 75.0} and note is None
    assert "torchvision" in prior.source
    assert recorded_prior([_file("a"), _file("b")]) == (None, None)
    prior, note = recorded_prior([_file("a", 70.0), _file("b")])
    assert prior is None and "1 of 2 models record no source accuracy (b)" in note


def test_load_prior_keeps_the_pool_models_and_wins_over_recorded(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"a": 3, "b": 1.5, "c": 9}))
    prior = load_prior(path, ["a", "b"])
    assert prior.values == {"a": 3.0, "b": 1.5} and prior.source == f"prior={path}"
    chosen, _ = resolve_prior(str(path), [_file("a", 70.0), _file("b", 75.0)])
    assert chosen.values == {"a": 3.0, "b": 1.5}
    with pytest.raises(InputError, match=r"no prior value for model\(s\) \['z'\]"):
        load_prior(path, ["a", "z"])
