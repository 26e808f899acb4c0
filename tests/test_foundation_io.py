"""Feature-file IO, ground truth and atomic writes (nctk.io)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from nctk.errors import InputError
from nctk.io import (
    atomic_path,
    load_feature_file,
    load_ground_truth,
    load_pool,
    save_feature_file,
    write_json,
)


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_round_trip_keeps_every_array(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    y = np.array(["cat", "dog"] * 3)
    logits = rng.normal(size=(6, 4))
    layer = rng.normal(size=(6, 2))
    path = save_feature_file(tmp_path / "m1.npz", x, y, source_logits=logits,
                             layers={"block1": layer})
    f = load_feature_file(path)
    assert f.name == "m1"
    np.testing.assert_array_equal(f.features, x)
    np.testing.assert_array_equal(f.labels, y)
    np.testing.assert_array_equal(f.source_logits, logits)
    assert list(f.layers) == ["block1"]
    np.testing.assert_array_equal(f.layers["block1"], layer)


def test_layers_keep_file_order(tmp_path):
    x = np.ones((2, 1))
    arrays = {"features": x, "labels": np.array([0, 1]), "layer:z": x, "layer:a": x}
    f = load_feature_file(_write(tmp_path / "m.npz", **arrays))
    assert list(f.layers) == ["z", "a"]


@pytest.mark.parametrize(
    ("arrays", "array", "fragment"),
    [
        ({"labels": np.array([0, 1])}, "features", "missing"),
        ({"features": np.ones((2, 2))}, "labels", "missing"),
        ({"features": np.ones((3, 2)), "labels": np.array([0, 1])}, "labels", "features have 3"),
        ({"features": np.array([[1.0, np.nan], [0, 0]]), "labels": np.array([0, 1])},
         "features", "NaN"),
        ({"features": np.array([[1.0, np.inf], [0, 0]]), "labels": np.array([0, 1])},
         "features", "inf"),
        ({"features": np.ones((0, 2)), "labels": np.array([], dtype=int)}, "features", "empty"),
        ({"features": np.ones(4), "labels": np.array([0, 1, 0, 1])}, "features", "2-D"),
        ({"features": np.ones((2, 2)), "labels": np.array([0, 1]),
          "source_logits": np.ones((3, 2))}, "source_logits", "rows"),
        ({"features": np.ones((2, 2)), "labels": np.array([0, 1]),
          "layer:b1": np.ones((2, 2)) * np.nan}, "layer:b1", "NaN"),
    ],
)
def test_bad_arrays_name_file_and_array(tmp_path, arrays, array, fragment):
    path = _write(tmp_path / "model.npz", **arrays)
    with pytest.raises(InputError) as info:
        load_feature_file(path)
    message = str(info.value)
    assert str(path) in message and f"array '{array}'" in message and fragment in message
    assert "\n" not in message


def test_unreadable_files(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("not a zip")
    with pytest.raises(InputError, match=r"not a readable \.npz"):
        load_feature_file(text)
    with pytest.raises(InputError, match="no such file"):
        load_feature_file(tmp_path / "absent.npz")
    obj = tmp_path / "obj.npz"
    np.savez(obj, features=np.ones((2, 2)), labels=np.array([0, "a"], dtype=object))
    with pytest.raises(InputError, match="object array"):
        load_feature_file(obj)


def test_loading_does_not_modify_the_file(tmp_path):
    path = _write(tmp_path / "m.npz", features=np.array([[np.nan]]), labels=np.array([0]))
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    with pytest.raises(InputError):
        load_feature_file(path)
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before


def test_pool_labels_must_match(tmp_path):
    x = np.ones((4, 2))
    a = _write(tmp_path / "a.npz", features=x, labels=np.array([0, 1, 0, 1]))
    b = _write(tmp_path / "b.npz", features=x, labels=np.array([1, 0, 0, 1]))
    with pytest.raises(InputError) as info:
        load_pool([a, b])
    assert str(b) in str(info.value) and "labels differ" in str(info.value)
    assert [f.name for f in load_pool([a])] == ["a"]


def test_pool_rejects_duplicate_names(tmp_path):
    x = np.ones((2, 2))
    (tmp_path / "d").mkdir()
    a = _write(tmp_path / "m.npz", features=x, labels=np.array([0, 1]))
    b = _write(tmp_path / "d" / "m.npz", features=x, labels=np.array([0, 1]))
    with pytest.raises(InputError, match="twice"):
        load_pool([a, b])


def test_ground_truth(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"a": 90, "b": 80.5}))
    assert load_ground_truth(gt, ["a", "b"]) == {"a": 90.0, "b": 80.5}
    with pytest.raises(InputError, match=r"no accuracy for model\(s\) \['c'\]"):
        load_ground_truth(gt, ["a", "c"])
    gt.write_text('{"a": "high"}')
    with pytest.raises(InputError, match="not a finite number"):
        load_ground_truth(gt)
    gt.write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        load_ground_truth(gt)
    gt.write_text("{broken")
    with pytest.raises(InputError, match="not a readable JSON"):
        load_ground_truth(gt)


def test_write_json_is_strict_and_atomic(tmp_path):
    out = tmp_path / "out.json"
    write_json(out, {"x": float("nan"), "y": np.float32(1.5), "z": [np.int64(2)]})
    assert json.loads(out.read_text()) == {"x": None, "y": 1.5, "z": [2]}
    out.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("crash mid-write")
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        out = write_json(tmp_path / "out.json", {"a": 1})
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644
