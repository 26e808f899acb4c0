"""``nctk select`` on the command line: a run prints the plan, the rung table, the pick and
the compute; ``--json`` carries ``pick`` and ``cost_fraction``; the same command resumes;
every bad input is exit 2 with one line and nothing written."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torchvision")  # select fine-tunes demo: models (the vision extra)

from nctk.cli import main
from select_data import MODELS, write_npz


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("data") / "train.npz", 8)


def command(data, tmp_path, *extra):
    return ["select", "--models", ",".join(MODELS), "--data", data, "--budget", "2.5",
            "--epochs", "3", "--batch-size", "16", "--lr", "0.05", "--val-fraction", "0.25",
            "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
            "--no-progress", *extra]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nctk select: error:"), err
    return err[0]


@pytest.mark.slow
def test_a_selection_prints_its_plan_table_pick_and_cost_and_resumes(data, tmp_path,
                                                                      capsys):
    args = command(data, tmp_path, "--json", str(tmp_path / "s.json"),
                   "--report", str(tmp_path / "s.html"))
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "shortlist of 3" in out and "rungs at epochs 1 (3 models), 3 (1 model)" in out
    assert "expected time" in out and "rung table" in out and "PICK" in out
    assert "not shortlisted" in out and "of brute force" in out
    document = json.loads((tmp_path / "s.json").read_text())
    assert document["pick"] in out and 0 < document["cost_fraction"] < 1
    assert document["provenance"]["models"]["cnn_small"] == "demo:cnn_small"
    assert document["schedule"]["rungs"] == [1, 3]
    report = (tmp_path / "s.html").read_text()
    assert "Selection by successive halving" in report and "data:image/png" in report
    assert main(args) == 0  # the same command again: resumed, nothing trained
    again = capsys.readouterr().out
    assert "resuming: 4 rung results" in again
    assert json.loads((tmp_path / "s.json").read_text())["pick"] == document["pick"]


@pytest.mark.parametrize("extra, message", [
    (["--method", "foo"], "argument --method: invalid choice: 'foo'"),
    (["--budget", "0"], "budget"), (["--budget", "-3"], "budget"),
    (["--budget", "lots"], "expected a number of runs"),
    (["--budget", "0.5"], "too small"),
    (["--eta", "1"], "argument --eta"),
    (["--method", "layer"], "needs a unit"),
])
def test_bad_settings_exit_2_in_one_line_and_write_nothing(data, tmp_path, capsys, extra,
                                                           message):
    args = command(data, tmp_path, "--json", str(tmp_path / "s.json"))
    args[args.index("--budget") + 1:args.index("--budget") + 2] = ["2.5"]
    assert main([*args, *extra]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "out").exists() and not (tmp_path / "s.json").exists()


def test_bad_data_exit_2_in_one_line_and_write_nothing(tmp_path, capsys):
    cases = [
        (write_npz(tmp_path / "one.npz", 8, counts={"dog": 1}), [], "at least 2"),
        (write_npz(tmp_path / "two.npz", 8, counts={"dog": 2}), [],
         "class 'dog' has 2 images, too few for a validation fraction of 0.25"),
        (write_npz(tmp_path / "ok.npz", 8),
         ["--val-data", write_npz(tmp_path / "v.npz", 2, offset=30, classes=4)],
         "no sample of the training class(es) truck"),
    ]
    for data, extra, message in cases:
        assert main([*command(data, tmp_path), *extra]) == 2
        assert message in one_error_line(capsys)
        assert not (tmp_path / "out").exists()


def test_other_classes_in_the_validation_data_exit_2(tmp_path, capsys):
    import numpy as np

    data = write_npz(tmp_path / "train.npz", 8, classes=4)
    val = write_npz(tmp_path / "val.npz", 2, offset=30)
    assert main([*command(data, tmp_path), "--val-data", val]) == 2
    assert "not among the training classes: truck" in one_error_line(capsys)
    assert np.load(tmp_path / "val.npz")["images"].shape[0] == 10


def test_a_model_that_cannot_take_the_image_size_exits_2(data, tmp_path, capsys):
    args = command(data, tmp_path)
    args[args.index("--models") + 1] = "demo:cnn_small,demo:vit_tiny"
    assert main([*args, "--image-size", "16"]) == 2
    assert "demo:vit_tiny" in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_outputs_onto_an_input_exit_2(tmp_path, capsys):
    data = write_npz(tmp_path / "train.npz", 8)
    path = str(tmp_path / "train.npz")
    for extra in (["--json", path], ["--report", path]):
        assert main([*command(data, tmp_path), *extra]) == 2
        assert "train.npz" in one_error_line(capsys)
    args = command(data, tmp_path)
    args[args.index("--out") + 1] = path
    assert main(args) == 2
    one_error_line(capsys)
    assert (tmp_path / "train.npz").is_file() and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_an_interrupted_command_keeps_its_rungs_and_the_same_command_resumes(
        data, tmp_path, capsys, monkeypatch):
    from nctk.select import trials

    whole = tmp_path / "whole"
    assert main(command(data, whole, "--json", str(whole / "s.json"))) == 0
    expected = json.loads((whole / "s.json").read_text())
    capsys.readouterr()
    real, calls = trials.train_to, []

    def interrupted(*args, **kwargs):
        calls.append(args[2:4])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trials, "train_to", interrupted)
    args = command(data, tmp_path, "--json", str(tmp_path / "s.json"))
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "the same command resumes" in err and "interrupted" in err
    assert (tmp_path / "out" / "select_state.json").is_file()
    assert not (tmp_path / "s.json").exists()  # no result from a run that did not finish
    monkeypatch.setattr(trials, "train_to", real)
    assert main(args) == 0
    assert "resuming: 2 rung results" in capsys.readouterr().out
    document = json.loads((tmp_path / "s.json").read_text())
    assert document["pick"] == expected["pick"]
    assert document["schedule"] == expected["schedule"]
    assert document["cost_fraction"] == expected["cost_fraction"]
