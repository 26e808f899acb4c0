"""``nctk collapse``: the JSON contract, tables, plots, pool mode and one-line errors."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
from sklearn.datasets import load_digits

from nctk.cli import main
from nctk.collapse import measure
from nctk.io import save_feature_file

CONTRACT_KEYS = {"nc1", "nc1_trace_ratio", "cdnv", "numerical_rank", "etf_error", "equinorm",
                 "equiangularity", "ncc_accuracy"}


def _digits(n=300):
    x, y = load_digits(return_X_y=True)
    return x[:n] / 16.0, y[:n]


@pytest.fixture
def feature_file(tmp_path):
    x, y = _digits()
    path = tmp_path / "resnet.npz"
    save_feature_file(path, x, y, layers={"block1": x[:, :20], "block2": x[:, 10:50]})
    return path, x, y


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_single_file_json_contract_table_and_plot(feature_file, tmp_path, capsys):
    path, x, y = feature_file
    before = _sha(path)
    out, png = tmp_path / "out.json", tmp_path / "nc.png"
    assert main(["collapse", str(path), "--json", str(out), "--plot", str(png)]) == 0
    data = json.loads(out.read_text())
    assert list(data) == ["layers", "provenance"]  # the contract, and where it came from
    assert data["provenance"]["feature_files"] == [str(path)]
    assert data["provenance"]["samples"] == len(y)
    assert list(data["layers"]) == ["block1", "block2", "penultimate"]
    for metrics in data["layers"].values():
        assert CONTRACT_KEYS <= set(metrics)
    assert data["layers"]["penultimate"]["nc1"] == pytest.approx(measure(x, y)["nc1"])
    captured = capsys.readouterr()
    printed = captured.out.splitlines()
    assert captured.err.strip() == f"wrote {out}, {png}"  # what it wrote, on stderr
    assert printed[0].split()[:3] == ["layer", "NC1", "trW/trB"]
    assert [line.split()[0] for line in printed[2:]] == ["block1", "block2", "penultimate"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _sha(path) == before


def test_probe_adds_a_column_and_a_correlation(feature_file, tmp_path, capsys):
    path, _, _ = feature_file
    out = tmp_path / "out.json"
    assert main(["collapse", str(path), "--probe", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert all(0 <= v["probe_accuracy"] <= 1 for v in data["layers"].values())
    assert "spearman" in data["nc1_vs_probe"]
    printed = capsys.readouterr().out
    assert "probe acc" in printed and "-NC1 vs probe accuracy over layers" in printed


def test_classifier_adds_nc3_and_nc4(feature_file, tmp_path, capsys):
    path, x, y = feature_file
    head = tmp_path / "head.npz"
    w = np.random.default_rng(0).normal(size=(10, 64))
    np.savez(head, weight=w, bias=np.zeros(10))
    out = tmp_path / "out.json"
    assert main(["collapse", str(path), "--classifier", str(head), "--json", str(out)]) == 0
    penultimate = json.loads(out.read_text())["layers"]["penultimate"]
    assert penultimate["nc4_agreement"] == pytest.approx(
        measure(x, y, classifier=w)["nc4_agreement"])
    assert "NC4 agree" in capsys.readouterr().out


def test_pool_with_ground_truth(tmp_path, capsys):
    x, y = _digits()
    rng = np.random.default_rng(0)
    paths = []
    for name, scale in [("a", 0.1), ("b", 0.8), ("c", 2.0)]:
        paths.append(tmp_path / f"{name}.npz")
        save_feature_file(paths[-1], x + rng.normal(scale=scale, size=x.shape), y)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"a": 0.9, "b": 0.8, "c": 0.6}))
    out, png = tmp_path / "out.json", tmp_path / "scatter.svg"
    args = ["collapse", *map(str, paths), "--ground-truth", str(gt), "--json", str(out),
            "--plot", str(png)]
    assert main(args) == 0
    data = json.loads(out.read_text())
    assert list(data["models"]) == ["a", "b", "c"]
    assert list(data["models"]["a"]["layers"]) == ["penultimate"]
    result = data["nc1_vs_accuracy"]
    assert result["models"]["c"]["accuracy"] == 0.6
    assert result["correlation"]["spearman"] == pytest.approx(1.0)
    assert "-NC1 (penultimate) vs accuracy over models" in capsys.readouterr().out
    assert b"<svg" in png.read_bytes()[:500]


def test_several_files_without_ground_truth(feature_file, tmp_path, capsys):
    path, x, y = feature_file
    other = tmp_path / "vit.npz"
    save_feature_file(other, x[:, ::-1], y)
    out = tmp_path / "out.json"
    assert main(["collapse", str(path), str(other), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert list(data["models"]) == ["resnet", "vit"]
    assert "== vit ==" in capsys.readouterr().out


def _write(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _junk(path):
    path.write_text("not a zip")
    return str(path)


@pytest.mark.parametrize("make, message", [
    (lambda d: _write(d / "nan.npz", features=np.full((4, 2), np.nan), labels=[0, 0, 1, 1]),
     r"nan\.npz: array 'features': contains 8 non-finite"),
    (lambda d: _write(d / "one.npz", features=np.eye(4), labels=[3, 3, 3, 3]),
     r"one\.npz: array 'labels': has 1 class"),
    (lambda d: _write(d / "single.npz", features=np.eye(5), labels=[0, 0, 1, 1, 2]),
     r"single\.npz: array 'labels': class 2 has 1 sample"),
    (lambda d: _write(d / "short.npz", features=np.eye(4), labels=[0, 0, 1]),
     r"short\.npz: array 'labels': has 3 rows"),
    (lambda d: _write(d / "layer.npz", features=np.eye(4), labels=[0, 0, 1, 1],
                      **{"layer:b1": np.ones((3, 2))}),
     r"layer\.npz: array 'layer:b1': has 3 rows"),
    (lambda d: _junk(d / "junk.npz"),
     r"junk\.npz: not a readable"),
    (lambda d: str(d / "missing.npz"), r"missing\.npz: no such file"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, make, message):
    path = make(tmp_path)
    assert main(["collapse", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("nctk collapse: error: ")
    assert re.search(message, err), err


def test_bad_options_exit_2(feature_file, tmp_path, capsys):
    path, _, _ = feature_file
    head = tmp_path / "head.npy"
    np.save(head, np.ones((10, 5)))
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"resnet": 0.5}))
    cases = [
        (["--classifier", str(head)], "array 'classifier': has shape (10, 5)"),
        (["--plot", str(tmp_path / "x.jpgg")], "--plot needs a .png, .svg or .pdf"),
        (["--ground-truth", str(gt)], "needs at least 3"),
        (["--probe", "--ground-truth", str(gt)], "separate analyses"),
        (["--classifier", str(tmp_path / "none.npz")], "none.npz: no such file"),
    ]
    for extra, message in cases:
        assert main(["collapse", str(path), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
