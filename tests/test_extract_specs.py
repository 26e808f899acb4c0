"""The spec-kind registry: one call registers a kind, every loader and command accepts it,
an unknown spec is one short line, and ``extract`` does not know the demo."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("torchvision")  # the vision extra: nctk.extract needs it

from nctk.cli import main
from nctk.errors import InputError, UnknownChoice
from nctk.extract import load_dataset, load_model, specs
from nctk.extract.datasets import dataset_paths
from nctk.extract.models import ModelAdapter, model_paths

SRC = Path(__file__).resolve().parents[1] / "src" / "nctk"


@pytest.fixture
def registry(monkeypatch):
    """The registry as it is, restored after the test."""
    monkeypatch.setattr(specs, "_KINDS", {role: dict(k) for role, k in specs._KINDS.items()})
    return specs


def _tiny(request: specs.ModelRequest) -> ModelAdapter:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, int(request.rest)))
    return ModelAdapter.from_module(module, name=request.name or f"tiny{request.rest}")


def test_built_in_and_demo_kinds_are_registered_in_order():
    assert [k.prefix for k in specs.kinds(specs.MODEL)][:7] == [
        "torchvision", "timm", "hf", "lite", "python", "file", "demo"]
    assert [k.prefix for k in specs.kinds(specs.DATASET)][:5] == [
        "imagefolder", "npz", "torchvision", "hf", "demo"]
    assert all(k.form.startswith(k.prefix + ":") for role in (specs.MODEL, specs.DATASET)
               for k in specs.kinds(role))


def test_one_call_registers_a_model_kind(registry):
    registry.register_model_kind("tiny", _tiny, form="tiny:<classes>",
                                 paths=lambda rest: [Path(f"/weights/{rest}")])
    adapter = load_model("named=tiny:4", image_size=8)
    assert adapter.name == "named" and adapter.module[1].out_features == 4
    assert load_model("tiny:3").name == "tiny3"
    assert model_paths("x=tiny:7") == [Path("/weights/7")]
    with pytest.raises(UnknownChoice, match=r"accepted kinds: .*demo:, tiny:"):
        load_model("nothing:1")


def test_a_kind_may_name_its_loader_as_module_and_function(registry, tmp_path, monkeypatch):
    (tmp_path / "late_kind.py").write_text(
        "from nctk.extract.datasets import npz_images\n"
        "def load(request):\n"
        "    return npz_images(request.spec, request.rest)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.register_data_kind("late", "late_kind:load", form="late:PATH")
    assert "late_kind" not in sys.modules  # nothing imported before a spec is loaded
    from nctk.demo.assets import SUBSET, asset

    data = load_dataset(f"late:{asset(SUBSET)}")
    assert len(data) == len(load_dataset(f"npz:{asset(SUBSET)}"))
    assert data.spec.startswith("late:")
    assert dataset_paths("late:x") == []  # no paths function: reads nothing local


def test_entry_points_register_kinds_of_other_packages(registry, tmp_path, monkeypatch):
    (tmp_path / "plugin_kinds.py").write_text(
        "from nctk.extract.specs import register_model_kind\n"
        "def register():\n"
        "    register_model_kind('plug', 'plugin_kinds:load', form='plug:<name>')\n")
    (tmp_path / "broken_kinds.py").write_text("raise RuntimeError('broken plug-in')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [importlib.metadata.EntryPoint("plug", "plugin_kinds:register",
                                            specs.ENTRY_POINT_GROUP),
              importlib.metadata.EntryPoint("broken", "broken_kinds", specs.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: points if group == specs.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(specs, "_plugins_loaded", False)
    assert [k.prefix for k in specs.kinds(specs.MODEL)][-1] == "plug"  # the broken one skipped
    assert specs.find_kind(specs.MODEL, "plug:x")[1] == "x"


def test_bad_registrations_are_refused(registry):
    with pytest.raises(ValueError, match="lower-case identifier"):
        registry.register_model_kind("Bad-Kind", _tiny, form="x")
    with pytest.raises(ValueError, match="role"):
        registry.register_kind("weights", "w", _tiny, form="w:")


def test_unknown_specs_are_one_short_line_pointing_to_the_help(tmp_path, capsys):
    assert main(["rank", "--models", "foo:bar,demo:cnn_small", "--data", "demo:target",
                 "--no-cache"]) == 2
    line = capsys.readouterr().err.strip()
    assert line == ("nctk rank: error: model 1 of 2 (foo:bar): unknown model spec 'foo:bar'; "
                    "accepted kinds: torchvision:, timm:, hf:, lite:, python:, file:, demo:, "
                    "or a "
                    ".pt/.pth/.ckpt/.ts checkpoint path (see nctk rank --help)")
    assert main(["extract", "--models", "demo:cnn_small", "--data", "imgs:/x",
                 "--out", str(tmp_path / "o"), "--no-cache"]) == 2
    line = capsys.readouterr().err.strip()
    assert line == ("nctk extract: error: unknown dataset spec 'imgs:/x'; accepted kinds: "
                    "imagefolder:, npz:, torchvision:, hf:, demo: (see nctk extract --help)")
    assert len(line) < 200


def test_extract_does_not_import_the_demo():
    for path in (SRC / "extract").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("nctk.demo") for n in names), path.name


def test_a_demo_spec_errors_in_library_terms():
    with pytest.raises(InputError, match="unknown demo dataset 'other'"):
        load_dataset("demo:other")
    with pytest.raises(InputError, match="unknown demo model 'typo'"):
        load_model("demo:typo")
