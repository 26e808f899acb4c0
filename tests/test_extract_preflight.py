"""Model specs for a new user: ``NAME=SPEC``, ``demo:<name>`` models and the ``demo:target``
data, every model checked before any extraction, seeded random initialisation, layers in
module order; through the library and every command that takes models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision")  # the vision extra: nctk.extract needs it

import nctk.extract.engine as engine
from nctk.cli import main
from nctk.demo.assets import asset
from nctk.errors import InputError
from nctk.extract import load_dataset, load_model
from nctk.extract.models import split_name
from nctk.extract.preflight import check_models

DATA = "demo:target"


@pytest.fixture(scope="module")
def small_data():
    """10 images (2 per class) of the shipped target subset."""
    from nctk.extract import subsample_per_class

    return subsample_per_class(load_dataset(DATA), 2, 0)


def test_split_name_recognises_only_a_file_safe_name_before_the_equals_sign():
    assert split_name("tv=torchvision:resnet18:none") == ("tv", "torchvision:resnet18:none")
    assert split_name("a.b-c+1=demo:mlp") == ("a.b-c+1", "demo:mlp")
    assert split_name("torchvision:resnet18:none") == (None, "torchvision:resnet18:none")
    assert split_name("/ckpt/a=b.pt") == (None, "/ckpt/a=b.pt")  # a path, not a name
    assert split_name("hf:org/x=y") == (None, "hf:org/x=y")


def test_named_spec_renames_the_model():
    adapter = load_model("mine=demo:cnn_small")
    assert adapter.name == "mine"
    assert load_model("mine=demo:cnn_small", name="explicit").name == "explicit"


def test_demo_models_load_with_their_shipped_weights_units_and_preprocessing():
    adapter = load_model("demo:resnet_tiny")
    shipped = torch.load(asset("resnet_tiny.pt"), weights_only=True)
    state = adapter.module.state_dict()
    for key, value in shipped.items():
        torch.testing.assert_close(state[key], value.float() if value.is_floating_point()
                                   else value)
    assert adapter.units() == ["block1", "block2", "block3", "block4"]
    assert adapter.head is adapter.module.head
    assert adapter.identity.startswith("demo:resnet_tiny:")
    data = load_dataset(DATA)
    with np.load(asset("target_subset.npz")) as shipped:
        assert len(data) == len(shipped["labels"])
    assert sorted(data.classes) == ["dog", "frog", "horse", "ship", "truck"]
    image = data.read_image(0)
    assert adapter.transform(image).shape == (3, 32, 32)
    assert load_model("demo:resnet_tiny", image_size=48).transform(image).shape == (3, 48, 48)
    with pytest.raises(InputError, match=r"unknown demo model 'nosuch'.*cnn_small"):
        load_model("demo:nosuch")
    with pytest.raises(InputError, match=r"unknown demo dataset 'train'.*demo:target"):
        load_dataset("demo:train")


def test_random_initialisation_is_seeded_and_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = load_model("torchvision:resnet18:none").module.state_dict()
    torch.testing.assert_close(torch.rand(3), expected_next)  # caller's stream unchanged
    second = load_model("torchvision:resnet18:none").module.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    vit_a = load_model("timm:vit_tiny_patch16_224:none", image_size=32).module.state_dict()
    vit_b = load_model("timm:vit_tiny_patch16_224:none", image_size=32).module.state_dict()
    assert all(torch.equal(vit_a[k], vit_b[k]) for k in vit_a)


def test_layers_are_returned_in_module_order_whatever_the_order_asked():
    adapter = load_model("torchvision:resnet18:none")
    assert adapter.resolve_layers("layer3,layer1,layer2.0") == ["layer1", "layer2.0", "layer3"]


def test_check_models_returns_names_and_names_the_first_bad_model(small_data):
    assert check_models(["demo:cnn_small", "b=demo:cnn_small"], small_data) == ["cnn_small",
                                                                                 "b"]
    with pytest.raises(InputError) as err:
        check_models(["demo:cnn_small", "demo:mlp", "demo:typo"], small_data)
    assert str(err.value).startswith("model 3 of 3 (demo:typo): unknown demo model")
    with pytest.raises(InputError) as err:
        check_models(["demo:mlp", "demo:cnn_small", "demo:mlp"], small_data)
    message = str(err.value)
    assert "model 1 of 3 (demo:mlp) and model 3 of 3 (demo:mlp) are both named 'mlp'" in message
    assert "NAME=SPEC, e.g. mlp_3=demo:mlp" in message
    with pytest.raises(InputError, match=r"model 1 of 1 \(demo:vit_tiny\): model 'vit_tiny' "
                                         r"cannot take its input.*\(1, 3, 64, 64\).*"
                                         r"image_size=\.\.\."):
        check_models(["demo:vit_tiny"], small_data, image_size=64)
    with pytest.raises(InputError, match=r"model 1 of 1 .*has no layer 'nope'"):
        check_models(["demo:mlp"], small_data, layers="nope")


def _no_extraction(monkeypatch):
    def fail(*_args, **_kwargs):
        raise AssertionError("an extraction started")
    monkeypatch.setattr(engine, "_run", fail)


@pytest.mark.parametrize("command", ["extract", "rank", "collapse"])
def test_a_bad_last_model_fails_before_any_extraction(command, tmp_path, monkeypatch,
                                                      capsys):
    _no_extraction(monkeypatch)
    argv = [command, "--models", "demo:cnn_small,demo:mlp,demo:cnn_wide,demo:mlp",
            "--data", DATA, "--no-cache"]
    if command == "extract":
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "are both named 'mlp'" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["extract", "rank", "finetune"])
def test_a_model_that_cannot_take_the_input_size_exits_2_in_one_line(command, tmp_path,
                                                                      capsys):
    models = "demo:cnn_small,demo:vit_tiny" if command != "finetune" else "demo:vit_tiny"
    argv = [command, "--models" if command != "finetune" else "--model", models,
            "--data", DATA, "--image-size", "40"]
    argv += {"extract": ["--out", str(tmp_path / "o"), "--no-cache"],
             "rank": ["--no-cache"],
             "finetune": ["--method", "lp", "--epochs", "1", "--out", str(tmp_path / "o")]
             }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot take its input" in err and "(1, 3, 40, 40)" in err


def test_rank_models_takes_image_size_and_named_demo_specs(tmp_path):
    """--image-size reaches the extraction: the scores at 40 px differ from those at 32."""
    runs = {}
    for size in ("32", "40"):
        out = tmp_path / f"{size}.json"
        assert main(["rank", "--models", "demo:cnn_small,wide=demo:cnn_wide,demo:resnet_tiny",
                     "--data", DATA, "--per-class", "6", "--image-size", size,
                     "--method", "logme", "--json", str(out), "--no-cache",
                     "--no-progress"]) == 0
        runs[size] = json.loads(out.read_text())["methods"]["logme"]["scores"]
    assert set(runs["32"]) == {"cnn_small", "wide", "resnet_tiny"}
    assert runs["32"]["cnn_small"] != runs["40"]["cnn_small"]


def test_collapse_measures_demo_models_directly(tmp_path, capsys):
    out = tmp_path / "nc.json"
    assert main(["collapse", "--models", "demo:cnn_small,demo:vit_tiny", "--data", DATA,
                 "--per-class", "10", "--json", str(out), "--no-cache", "--no-progress"]) == 0
    models = json.loads(out.read_text())["models"]
    assert list(models["cnn_small"]["layers"]) == ["block1", "block2", "block3", "penultimate"]
    assert list(models["vit_tiny"]["layers"]) == ["block1", "block2", "block3", "block4",
                                                  "penultimate"]
    assert "== cnn_small ==" in capsys.readouterr().out
    assert main(["collapse", str(out), "--models", "demo:mlp", "--data", DATA]) == 2


def test_finetune_trains_a_demo_model_on_its_declared_blocks(tmp_path, capsys):
    assert main(["finetune", "--model", "demo:cnn_small", "--data", DATA, "--method", "layer",
                 "--unit", "2", "--epochs", "1", "--no-progress",
                 "--out", str(tmp_path / "ft")]) == 0
    result = json.loads((tmp_path / "ft" / "result.json").read_text())["results"][0]
    assert result["unit"] == "block2" and result["method"] == "layer"
    capsys.readouterr()


def test_two_identical_extract_runs_write_identical_files_and_the_second_hits_the_cache(
        tmp_path, monkeypatch, capsys):
    argv = ["extract", "--models", "torchvision:resnet18:none", "--data", DATA, "--per-class",
            "2", "--image-size", "32", "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    _no_extraction(monkeypatch)  # the second run must read the cache
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    first = (tmp_path / "a" / "resnet18.none.npz").read_bytes()
    assert first == (tmp_path / "b" / "resnet18.none.npz").read_bytes()
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    with np.load(tmp_path / "a" / "resnet18.none.npz") as arrays:
        assert arrays["features"].shape == (10, 512)
    capsys.readouterr()
