"""``nctk collapse`` on a file too large for one worker: rows read shard by shard from the
memory-mapped .npz, class statistics merged; equal to the one-pass profile to 1e-7 (the
Ray executor runs the same code in tests/test_scale_ray.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torchvision")  # the vision extra: nctk.extract needs it

from nctk.cli import main
from nctk.collapse import layer_profile
from nctk.demo.run import extract_pool_features
from nctk.errors import InputError
from nctk.io import load_feature_file, save_feature_file
from nctk.scale import LoopExecutor
from nctk.scale.shards import sharded_profile


def assert_profiles_equal(got, expected, rtol=1e-7):
    assert list(got) == list(expected)
    for layer in expected:
        assert list(got[layer]) == list(expected[layer])
        for key, value in expected[layer].items():
            assert got[layer][key] == pytest.approx(value, rel=rtol, abs=0), (layer, key)


@pytest.fixture(scope="module")
def feature_file(tmp_path_factory):
    """A real demo model's penultimate features and block outputs on the shipped images."""
    (result,) = extract_pool_features(["cnn_small"])
    path = tmp_path_factory.mktemp("features") / "cnn_small.npz"
    save_feature_file(path, result.features, result.labels, source_logits=result.source_logits,
                      layers=result.layers)
    return path


def test_compressed_files_give_the_same_profile(feature_file, tmp_path):
    """A compressed archive cannot be memory-mapped: each task inflates it (same result)."""
    with np.load(feature_file) as npz:
        np.savez_compressed(tmp_path / "packed.npz", **{k: npz[k] for k in npz.files})
    assert_profiles_equal(sharded_profile(tmp_path / "packed.npz", LoopExecutor(), shards=3),
                          sharded_profile(feature_file, LoopExecutor(), shards=3), rtol=0)


@pytest.mark.parametrize("shards, scatter_bytes", [(1, 1 << 30), (5, 1 << 30), (7, 20_000)])
def test_sharded_profile_equals_one_pass(feature_file, shards, scatter_bytes):
    """Any number of shards, and the per-class scatter kept a few classes at a time, give
    the one-pass profile of every layer to 1e-7 (float32 file)."""
    expected = layer_profile(load_feature_file(feature_file))
    got = sharded_profile(feature_file, LoopExecutor(), shards=shards,
                          scatter_bytes=scatter_bytes)
    assert_profiles_equal(got, expected)


def test_sharded_profile_against_textbook_formulas(tmp_path):
    """float64 features: NC1 = tr(S_W S_B^+)/K and NCC accuracy written out directly."""
    rng = np.random.default_rng(3)
    labels = np.repeat(np.array(["x", "y", "z", "w"]), [30, 41, 25, 36])
    centres = rng.normal(size=(4, 6)) * 3
    codes = np.unique(labels, return_inverse=True)[1]
    x = centres[codes] + rng.normal(size=(labels.size, 6)) + 100.0  # far from the origin
    path = save_feature_file(tmp_path / "m.npz", x, labels)
    got = sharded_profile(path, LoopExecutor(), shards=6)["penultimate"]
    means = np.stack([x[codes == k].mean(0) for k in range(4)])
    within = sum((x[codes == k] - means[k]).T @ (x[codes == k] - means[k])
                 for k in range(4)) / labels.size
    centred = means - means.mean(0)
    between = centred.T @ centred / 4
    assert got["nc1"] == pytest.approx(np.trace(within @ np.linalg.pinv(between)) / 4,
                                       rel=1e-7)
    nearest = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert got["ncc_accuracy"] == np.mean(nearest == codes)
    # sample order and the number of shards do not matter
    order = rng.permutation(labels.size)
    shuffled = save_feature_file(tmp_path / "s.npz", x[order], labels[order])
    assert_profiles_equal(sharded_profile(shuffled, LoopExecutor(), shards=4),
                          sharded_profile(path, LoopExecutor(), shards=1))


def test_classifier_terms_equal_one_pass(feature_file, tmp_path, capsys):
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(5, load_feature_file(feature_file).features.shape[1]))
    np.save(tmp_path / "head.npy", weight)
    out = {}
    for name, extra in (("one", []), ("sharded", ["--shards", "4"])):
        code = main(["collapse", str(feature_file), "--classifier", str(tmp_path / "head.npy"),
                     "--json", str(tmp_path / f"{name}.json"), *extra])
        assert code == 0, capsys.readouterr().err
        out[name] = json.loads((tmp_path / f"{name}.json").read_text())["layers"]
    assert "nc4_agreement" in out["sharded"]["penultimate"]
    assert_profiles_equal(out["sharded"], out["one"])


def test_bad_input_names_the_file_array_and_rows(feature_file, tmp_path, capsys):
    ff = load_feature_file(feature_file)
    rows = 300  # 3 shards of 100 rows: row 205 lies in the last
    layers = {name: value[:rows].copy() for name, value in ff.layers.items()}
    first = next(iter(layers))
    layers[first][205, 3] = np.nan
    bad = save_feature_file(tmp_path / "bad.npz", ff.features[:rows], ff.labels[:rows],
                            layers=layers)
    with pytest.raises(InputError, match=rf"bad.npz: array 'layer:{first}': rows 200..299: "
                                         r"contains 1 non-finite value\(s\)"):
        sharded_profile(bad, LoopExecutor(), shards=3)
    single = save_feature_file(tmp_path / "single.npz", ff.features[:11],
                               np.array([0] * 10 + [1]))
    with pytest.raises(InputError, match=r"single\.npz: array .labels.*at least 2"):
        sharded_profile(single, LoopExecutor(), shards=2)
    np.savez(tmp_path / "nolabels.npz", features=ff.features)
    for args, message in [
        ([str(tmp_path / "nolabels.npz"), "--shards", "2"], "array 'labels': missing"),
        ([str(feature_file), "--shards", "2", "--probe"], "--probe: needs the whole features"),
        ([str(tmp_path / "none.npz"), "--shards", "2"], "none.npz: no such file"),
        ([str(feature_file), "--shards", "0"], "argument --shards: expected an integer >= 1"),
    ]:
        assert main(["collapse", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_cli_sharded_equals_one_pass(feature_file, tmp_path, capsys):
    other = tmp_path / "other.npz"
    other.write_bytes(feature_file.read_bytes())
    for name, extra in (("one", []), ("sharded", ["--shards", "3"])):
        assert main(["collapse", str(feature_file), str(other), "--json",
                     str(tmp_path / f"{name}.json"), *extra]) == 0
    printed = capsys.readouterr().out
    assert "== cnn_small ==" in printed and "== other ==" in printed
    one = json.loads((tmp_path / "one.json").read_text())["models"]
    sharded = json.loads((tmp_path / "sharded.json").read_text())["models"]
    assert list(sharded) == ["cnn_small", "other"]
    for model in one:
        assert_profiles_equal(sharded[model]["layers"], one[model]["layers"])
