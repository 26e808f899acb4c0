"""Hostile and careless command lines of issue 19: each ends with exit status 2 and one
line saying what is wrong, before any work, and leaves its inputs as they were (the
all-zero features, a legitimate if degenerate input, give NC1 = inf without a warning)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import nctk.npz
from nctk.cli import main
from nctk.collapse import measure


def _pool(folder: Path, labels: np.ndarray | None = None) -> list[Path]:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10) if labels is None else labels
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("m0", "m1", "m2"):
        paths.append(folder / f"{name}.npz")
        np.savez(paths[-1], features=rng.normal(size=(30, 6)), labels=y)
    return paths


def _snapshot(paths):
    return {str(p): (Path(p).read_bytes(), os.stat(p).st_mtime_ns) for p in paths
            if Path(p).is_file()}


def _one_line_error(capsys, argv, inputs, *fragments, command="rank"):
    before = _snapshot(inputs)
    assert main([str(a) for a in argv]) == 2
    _, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"nctk {command}: error:"), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert _snapshot(inputs) == before
    return lines[0]


def test_a_directory_among_the_feature_files_says_so_and_how_to_pass_its_files(
        tmp_path, capsys):
    paths = _pool(tmp_path / "feats")
    for argv in (["rank", paths[0], tmp_path / "feats", paths[1]],
                 ["rank", tmp_path / "feats"]):  # alone: not "got 1 model"
        _one_line_error(capsys, argv, paths, "feats: is a directory, not a regular file",
                        f"pass the feature files in it ({tmp_path / 'feats' / '*.npz'})")
    _one_line_error(capsys, ["collapse", tmp_path / "feats"], paths, "is a directory",
                    command="collapse")


def test_a_fifo_or_a_link_to_a_device_says_what_it_is_without_blocking(tmp_path):
    # in a subprocess with a time limit: a reader that opened the FIFO would wait forever
    paths = _pool(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero.npz").symlink_to("/dev/zero")
    cases = [(["rank", str(paths[0]), "fifo"], "fifo: is a FIFO, not a regular file"),
             (["rank", *map(str, paths[:2]), "--ground-truth", "fifo"], "fifo: is a FIFO"),
             (["rank", str(paths[0]), "zero.npz"],
              "zero.npz: is a symbolic link to a device node (/dev/zero), not a regular file"),
             (["collapse", str(paths[0]), "--classifier", "fifo"], "fifo: is a FIFO")]
    script = ("import sys; from nctk.cli import main\n"
              f"for argv in {[argv for argv, _ in cases]!r}:\n"
              "    print(main(argv), flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.stdout.split() == ["2"] * len(cases), done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == len(cases)
    for line, (_, message) in zip(lines, cases, strict=True):
        assert message in line, line


def test_nan_labels_identical_in_every_file_say_nan(tmp_path, capsys):
    paths = _pool(tmp_path, labels=np.full(30, np.nan))
    _one_line_error(capsys, ["rank", *paths], paths, "array 'labels': contains NaN (30 of 30)",
                    "labels must be integers or strings")


def test_a_classifier_holding_object_arrays_is_refused(tmp_path, capsys):
    paths = _pool(tmp_path)
    np.savez(tmp_path / "head.npz", weight=np.array([[1, 2], [3, 4]], dtype=object))
    np.save(tmp_path / "head.npy", np.array([[1, 2], [3, 4]], dtype=object))
    heads = [tmp_path / "head.npz", tmp_path / "head.npy"]
    _one_line_error(capsys, ["collapse", paths[0], "--classifier", heads[0]], [*paths, *heads],
                    "array 'weight': holds an object array", command="collapse")
    _one_line_error(capsys, ["collapse", paths[0], "--classifier", heads[1]], [*paths, *heads],
                    "head.npy: not a readable .npy/.npz file", "allow_pickle", command="collapse")


def test_all_zero_features_give_nc1_inf_without_a_warning(tmp_path, capsys):
    y = np.repeat(np.arange(3), 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the NumPy "invalid value" warning fails the test
        got = measure(np.zeros((30, 6)), y)
    assert got["nc1"] == got["nc1_trace_ratio"] == got["cdnv"] == np.inf  # means coincide
    assert got["numerical_rank"] == 0.0  # the rank of a zero matrix
    np.savez(tmp_path / "zeros.npz", features=np.zeros((30, 6)), labels=y)
    assert main(["collapse", str(tmp_path / "zeros.npz")]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err and "inf" in out.splitlines()[-1]


@pytest.mark.parametrize("argv, stray, joined", [
    (["rank", "--models", "demo:cnn_small", "demo:mlp", "--data", "demo:target"],
     "demo:mlp", "--models demo:cnn_small,demo:mlp"),
    (["extract", "--models", "demo:cnn_small", "demo:mlp", "--data", "demo:target", "--out",
      "o"], "demo:mlp", "--models demo:cnn_small,demo:mlp"),
    (["rank", "m0.npz", "m1.npz", "--method", "ncti", "logme"], "logme",
     "--method ncti,logme"),
    (["demo", "--models=cnn_small", "mlp"], "mlp", "--models cnn_small,mlp"),
])
def test_a_list_option_given_with_spaces_names_the_stray_argument(tmp_path, capsys,
                                                                 monkeypatch, argv, stray,
                                                                 joined):
    monkeypatch.chdir(tmp_path)
    paths = _pool(tmp_path)
    line = _one_line_error(capsys, argv, paths, f"{stray!r} is a separate argument",
                           f"write {joined} (no spaces)", command=argv[0])
    assert not (tmp_path / "o").exists(), line


def test_files_and_models_together_still_say_not_both(tmp_path, capsys):
    paths = _pool(tmp_path)
    _one_line_error(capsys, ["rank", *paths, "--models", "demo:mlp", "--data", "demo:target"],
                    paths, "not both")


@pytest.mark.parametrize("argv", [
    ["extract", "--models", "demo:cnn_small", "--data", "demo:target", "--out", "o",
     "--image-size", "100000"],
    ["rank", "--models", "demo:cnn_small,demo:mlp", "--data", "demo:target",
     "--image-size", "100000"],
    ["finetune", "--model", "demo:cnn_small", "--data", "demo:target", "--out", "o",
     "--image-size", "100000"],
])
def test_an_image_size_the_memory_cannot_hold_is_refused_before_any_work(
        tmp_path, capsys, monkeypatch, argv):
    # 3 x 100,000^2 float32 is 120 GB an image: refused at once, whatever this machine has
    monkeypatch.chdir(tmp_path)
    line = _one_line_error(capsys, argv, [], "--image-size 100000:", "of memory available",
                           command=argv[0])
    assert "lower --image-size" in line and not (tmp_path / "o").exists()


def test_the_image_size_bound_follows_the_available_memory(monkeypatch, capsys, tmp_path):
    pytest.importorskip("torchvision")  # extract checks its extra before the sizes
    # 64 images of 3 x 512 x 512, 4 float32 copies: 805 MiB; refused with 512 MiB free,
    # accepted (the check passes, the command goes on) with 1 GiB
    monkeypatch.chdir(tmp_path)
    argv = ["extract", "--models", "demo:cnn_small", "--data", "npz:missing.npz", "--out",
            "o", "--image-size", "512", "--batch-size", "64"]
    monkeypatch.setattr(nctk.npz, "available_memory", lambda: 512 * 2**20)
    _one_line_error(capsys, argv, [], "64 images of 3 x 512 x 512 float32 need about 768.0 MiB",
                    "512.0 MiB of memory available", command="extract")
    monkeypatch.setattr(nctk.npz, "available_memory", lambda: 2**30)
    line = _one_line_error(capsys, argv, [], "missing.npz", command="extract")
    assert "--image-size" not in line
