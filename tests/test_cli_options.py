"""Every numeric option of every command is checked while parsing: exit 2, one line naming
the option, before any input is read (issue 8, point 4)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from nctk.cli import main

# Required arguments of each command (values that would be read only after parsing).
BASE = {
    "rank": ["rank", "{a}", "{b}"],
    "collapse": ["collapse", "{a}"],
    "fewshot": ["analyze", "fewshot", "{a}", "{b}", "--ground-truth", "{gt}"],
    "timing": ["analyze", "timing", "{a}", "{b}"],
    "weights": ["analyze", "weights", "{a}", "{b}", "--ground-truth", "{gt}"],
    "extract": ["extract", "--models", "file:{model}", "--data", "npz:{a}", "--out", "{out}"],
    "finetune": ["finetune", "--model", "file:{model}", "--data", "npz:{a}", "--method", "lp",
                 "--out", "{out}"],
    "demo": ["demo", "--out", "{out}"],
}

CASES = [
    ("rank", "--seed", "-1"), ("rank", "--seed", str(2**32)), ("rank", "--seed", "1.5"),
    ("rank", "--per-class", "0"),
    ("collapse", "--probe-c", "-1"), ("collapse", "--probe-c", "0"),
    ("collapse", "--probe-c", "nan"), ("collapse", "--seed", "-1"),
    ("fewshot", "--repeats", "0"), ("fewshot", "--shots", "0,5"), ("fewshot", "--shots", ","),
    ("fewshot", "--seed", "-3"), ("timing", "--repeat", "0"), ("weights", "--values", "1,nan"),
    ("extract", "--image-size", "-8"), ("extract", "--image-size", "0"),
    ("extract", "--workers", "-1"), ("extract", "--batch-size", "0"),
    ("extract", "--per-class", "0"), ("extract", "--seed", "-1"),
    ("finetune", "--lr", "nan"), ("finetune", "--lr", "0"), ("finetune", "--lr", "inf"),
    ("finetune", "--lr-min", "-1"), ("finetune", "--epochs", "0"),
    ("finetune", "--batch-size", "0"), ("finetune", "--momentum", "1"),
    ("finetune", "--weight-decay", "inf"), ("finetune", "--val-fraction", "1"),
    ("finetune", "--val-fraction", "-0.1"), ("finetune", "--patience", "0"),
    ("finetune", "--image-size", "0"), ("finetune", "--probe-epochs", "0"),
    ("finetune", "--sweep-units", "0"), ("finetune", "--scarcity", "10,x"),
    ("finetune", "--auto-candidates", "-1"), ("finetune", "--seed", "-1"),
    ("demo", "--seed", "-1"), ("demo", "--select-budget", "0"),
]


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    paths = {}
    for name in ("a", "b"):
        paths[name] = tmp_path / f"{name}.npz"
        np.savez(paths[name], features=rng.normal(size=(12, 3)), labels=np.arange(12) % 3)
    paths["gt"] = tmp_path / "gt.json"
    paths["gt"].write_text('{"a": 0.5, "b": 0.6}')
    paths["model"] = tmp_path / "model.pt"
    paths["model"].write_bytes(b"never read")
    paths["out"] = tmp_path / "out"
    return paths


def _state(paths):
    return {p: (p.read_bytes(), os.stat(p).st_mtime_ns) for p in paths.values() if p.exists()}


@pytest.mark.parametrize(("command", "option", "value"), CASES,
                         ids=[f"{c}{o}={v}" for c, o, v in CASES])
def test_bad_numeric_option_is_one_line(files, capsys, command, option, value):
    argv = [part.format(**files) for part in BASE[command]] + [option, value]
    before = _state(files)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("nctk ") and f"argument {option}:" in err and repr(value) in err
    assert "Traceback" not in err
    assert _state(files) == before
    assert not files["out"].exists()


def test_seed_bounds_are_accepted(files, capsys):
    for seed in ("0", str(2**32 - 1)):
        assert main(["rank", str(files["a"]), str(files["b"]), "--method", "parc",
                     "--seed", seed]) == 0
    assert "parc" in capsys.readouterr().out


def test_usage_errors_are_one_line_too(capsys):
    assert main(["rank", "--no-such-option"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [  # the sub-command's own help: its options are there
        "nctk rank: error: unrecognized arguments: --no-such-option (see nctk rank --help)"]
    assert main(["extract"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--models" in err


def test_help_still_exits_zero(capsys):
    assert main(["rank", "--help"]) == 0
    assert "--seed" in capsys.readouterr().out


def test_a_missing_extra_is_one_line_naming_the_extra(tmp_path):
    # a core install (torchvision absent) asked to extract: exit 2 and how to install it
    script = ("import sys; sys.modules['torchvision'] = None; from nctk.cli import main; "
              "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", script, "extract", "--models",
                           "demo:cnn_small", "--data", "demo:target", "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "nctk extract: error: this needs torchvision, which the 'vision' extra installs: "
        "pip install 'nctk[vision]'"]
    assert not (tmp_path / "o").exists()
