"""Behaviour shared by the feature-based scores (NCTI, SFDA, LogME, the H-scores, ETran,
k-NN and DISCO): devices, dtypes, bad input in the library and on the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import nctk
from nctk.cli import main
from nctk.errors import InputError
from scores_core_data import blobs

#: The Gaussian scores computed by nctk's own torch code (they take ``device=``).
TORCH_METHODS = ["ncti", "sfda", "logme", "hscore", "reg_hscore"]
METHODS = [*TORCH_METHODS, "etran", "etran_equal", "knn", "disco"]


@pytest.fixture(scope="module")
def data():
    return blobs(n=160, d=70, classes=4, spread=2.0, seed=11)


@pytest.mark.parametrize("method", METHODS)
def test_registered_and_finite(method, data):
    x, y = data
    assert method in nctk.available_methods()
    assert np.isfinite(nctk.score(method, x, y))


@pytest.mark.parametrize("method", METHODS)
def test_torch_and_float32_match_numpy_float64(method, data):
    x, y = data
    want = nctk.score(method, x, y)
    assert nctk.score(method, torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(
        want, rel=1e-7)
    assert nctk.score(method, x.astype(np.float32), y) == pytest.approx(want, rel=1e-5)
    assert nctk.score(method, torch.from_numpy(x).float(), y) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("method", TORCH_METHODS)
def test_explicit_device_matches_the_input_device(method, data):
    x, y = data
    assert nctk.score(method, x, y, device="cpu") == pytest.approx(nctk.score(method, x, y),
                                                                     rel=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("method", METHODS)
def test_cuda_matches_cpu(method, data):
    x, y = data
    got = nctk.score(method, torch.from_numpy(x).cuda(), y)
    assert got == pytest.approx(nctk.score(method, x, y), rel=1e-7)


@pytest.mark.parametrize("as_tensor", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_bad_input_is_one_line_input_error(method, as_tensor, data):
    x, y = data
    bad = x.copy()
    bad[2, 3] = np.nan
    cases = [
        (torch.from_numpy(bad) if as_tensor else bad, y, "non-finite"),
        (x, np.zeros(len(y)), "at least 2"),
        (x, y[:-1], "rows"),
        (x, np.full(len(y), np.nan), "NaN"),
        (np.array([["a"] * 3] * 5), y[:5], "numbers"),
        (x[:0], y[:0], "empty"),
    ]
    for xx, yy, msg in cases:
        with pytest.raises(InputError, match=msg) as err:
            nctk.score(method, xx, yy)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("method", TORCH_METHODS)
def test_single_sample_class_is_accepted(method, data):
    x, y = data
    y = y.copy()
    y[0] = 99  # a class of one sample
    assert np.isfinite(nctk.score(method, x, y))


def _write(path: Path, x: np.ndarray, y: np.ndarray) -> str:
    np.savez(path, features=x, labels=y)
    return str(path)


@pytest.mark.parametrize("method", METHODS)
def test_cli_bad_input_exits_2_with_one_line_naming_the_file(method, data, tmp_path, capsys):
    x, y = data
    broken = x.copy()
    broken[4, 1] = np.inf
    paths = [_write(tmp_path / "good.npz", x, y), _write(tmp_path / "bad.npz", broken, y)]
    before = [Path(p).read_bytes() for p in paths]
    assert main(["rank", *paths, "--method", method]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.npz" in err[0] and "non-finite" in err[0]
    assert [Path(p).read_bytes() for p in paths] == before
    one_class = [_write(tmp_path / f"m{i}.npz", x * (i + 1), np.zeros(len(y)))
                 for i in range(2)]
    assert main(["rank", *one_class, "--method", method]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "m0.npz" in err[0] and "1 class" in err[0]


def test_knn_needs_two_samples_per_class(data, tmp_path, capsys):
    x, y = data
    y = y.copy()
    y[0] = 7  # a class of one sample cannot be split into folds
    with pytest.raises(InputError, match="class 7 has 1 sample"):
        nctk.score("knn", x, y)
    paths = [_write(tmp_path / f"m{i}.npz", x * (i + 1), y) for i in range(2)]
    assert main(["rank", *paths, "--method", "knn"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "class 7 has 1 sample" in err[0]


def test_rank_pool_names_the_model_in_errors(data):
    x, y = data
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(InputError, match=r"^broken: array 'features'"):
        nctk.rank({"fine": x, "broken": bad}, y, "ncti")


@pytest.mark.parametrize("method", METHODS)
def test_inputs_are_never_written_to(method, data):
    # _gaussian's promise, for every score built on it: numpy and torch inputs, float32
    x, y = data
    for features in (x.astype(np.float32), torch.from_numpy(x.copy())):
        before = features.clone() if torch.is_tensor(features) else features.copy()
        labels = y.copy()
        nctk.score(method, features, labels)
        if torch.is_tensor(features):
            assert torch.equal(features, before)
        else:
            np.testing.assert_array_equal(features, before)
        np.testing.assert_array_equal(labels, y)
