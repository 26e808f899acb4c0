"""CLI tests of ``nctk finetune`` with a pickled tiny ResNet and a tiny npz dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision")  # the vision extra

from torchvision.models.resnet import BasicBlock, ResNet

from nctk.cli import main


@pytest.fixture
def inputs(tmp_path):
    torch.manual_seed(0)
    torch.save(ResNet(BasicBlock, [1, 1, 1, 1], num_classes=3), tmp_path / "m.pt")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", images=rng.integers(0, 255, (24, 16, 16, 3), dtype=np.uint8),
             labels=np.repeat([0, 1, 2], 8))
    return ["finetune", "--model", str(tmp_path / "m.pt"), "--image-size", "16",
            "--data", f"npz:{tmp_path / 'd.npz'}", "--epochs", "1", "--batch-size", "8",
            "--val-fraction", "0.25", "--no-progress", "--out", str(tmp_path / "o"),
            "--trust-checkpoint"]


def _error(capsys) -> str:
    """The one error line (the --trust-checkpoint warning may come before it)."""
    lines = [line for line in capsys.readouterr().err.strip().splitlines()
             if not (line.startswith("nctk: warning:") and "trusted checkpoint" in line)]
    assert len(lines) == 1 and lines[0].startswith("nctk finetune: error:"), lines
    return lines[0]


def test_unknown_unit_exits_2_listing_units(inputs, capsys):
    assert main([*inputs, "--method", "layer", "--unit", "layer9"]) == 2
    err = _error(capsys)
    assert "unknown unit 'layer9'" in err and "4=layer4.0" in err
    assert main([*inputs, "--method", "layer", "--unit", "9"]) == 2
    assert "unit 9 does not exist" in capsys.readouterr().err


def test_run_then_resume_from_another_method(inputs, tmp_path, capsys):
    assert main([*inputs, "--method", "scl", "--unit", "2"]) == 0
    out = capsys.readouterr().out
    assert "SCL FT" in out and "2 (layer2.0)" in out
    report = json.loads((tmp_path / "o" / "result.json").read_text())
    assert report["results"][0]["method"] == "scl"
    assert main([*inputs, "--method", "lp", "--resume"]) == 2
    err = _error(capsys)
    assert "checkpoint belongs to another run" in err


def test_dataset_too_small_for_split(inputs, capsys):
    args = [*inputs, "--method", "lp"]
    args[args.index("0.25")] = "0.05"
    assert main(args) == 2
    assert "dataset too small for the split" in capsys.readouterr().err


def test_sweep_prints_table_3_and_writes_plot(inputs, tmp_path, capsys):
    assert main([*inputs, "--sweep", "--sweep-units", "1,4"]) == 0
    out = capsys.readouterr().out
    for row in ("Linear probe", "Layer FT", "SCL FT", "Full FT"):
        assert row in out
    written = {p.name for p in (tmp_path / "o").iterdir()}
    assert any(name.endswith(".png") for name in written), written
    assert any(name.endswith(".json") for name in written), written


def test_scarcity_runs_each_budget(inputs, tmp_path, capsys):
    assert main([*inputs, "--scarcity", "4,6", "--unit", "4"]) == 0
    out = capsys.readouterr().out
    assert "4/class" in out and "6/class" in out
    curves = json.loads((tmp_path / "o" / "result.json").read_text())["scarcity"]
    assert curves["per_class"] == [4, 6]
    assert all(len(values) == 2 for values in curves["accuracy"].values())
    written = {p.name for p in (tmp_path / "o").iterdir()}
    assert any(name.endswith(".png") for name in written), written


def test_scarcity_without_unit_tunes_the_last_unit_of_a_model_with_fewer_than_5(inputs,
                                                                                 tmp_path):
    assert main([*inputs, "--scarcity", "4"]) == 0
    text = (tmp_path / "o" / "result.json").read_text()
    assert "layer4.0" in text and "layer3.0" not in text


def test_val_acc_states_its_size_and_unit_auto_warns_on_too_few_samples(inputs, capsys,
                                                                       monkeypatch):
    from nctk.finetune import auto_unit

    assert main([*inputs, "--method", "lp"]) == 0
    assert "val acc % (n=6)" in capsys.readouterr().out
    unstable = auto_unit.UnitSelection("layer2.0", 2, {"layer1.0": 0.9, "layer2.0": 0.8}, 1,
                                       0.1, stability=0.4, train_samples=18, smallest_class=6)
    monkeypatch.setattr(auto_unit, "select_unit", lambda *a, **k: unstable)
    assert main([*inputs, "--method", "layer", "--unit", "auto"]) == 0
    captured = capsys.readouterr()
    assert "--unit auto: unit 2 (layer2.0)" in captured.out
    warning = [line for line in captured.err.splitlines() if "too few samples" in line]
    assert len(warning) == 1 and "40% of 30 bootstrap resamples" in warning[0]
    assert "18 training samples (6 in the smallest class)" in warning[0]
