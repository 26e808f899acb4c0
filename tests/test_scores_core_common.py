"""Behaviour shared by NCTI, SFDA, LogME and the H-scores: devices, dtypes, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nctk
from nctk.errors import InputError
from scores_core_data import blobs

METHODS = ["ncti", "sfda", "logme", "hscore", "reg_hscore"]


@pytest.fixture(scope="module")
def data():
    return blobs(n=160, d=70, classes=4, spread=2.0, seed=11)


@pytest.mark.parametrize("method", METHODS)
def test_registered_and_finite(method, data):
    x, y = data
    assert method in nctk.available_methods()
    assert np.isfinite(nctk.score(method, x, y))


@pytest.mark.parametrize("method", METHODS)
def test_torch_cpu_matches_numpy(method, data):
    x, y = data
    want = nctk.score(method, x, y)
    assert nctk.score(method, torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(
        want, rel=1e-8)
    assert nctk.score(method, x, y, device="cpu") == pytest.approx(want, rel=1e-12)
    t32 = torch.from_numpy(x.astype(np.float32))
    assert nctk.score(method, t32, y) == pytest.approx(want, rel=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("method", METHODS)
def test_cuda_matches_cpu(method, data):
    x, y = data
    got = nctk.score(method, torch.from_numpy(x).cuda(), y)
    assert got == pytest.approx(nctk.score(method, x, y), rel=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_bad_input_is_one_line_input_error(method, data):
    x, y = data
    bad = torch.from_numpy(x).clone()
    bad[2, 3] = float("nan")
    cases = [
        (bad, y, "non-finite"),
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


@pytest.mark.parametrize("method", METHODS)
def test_single_sample_class_is_accepted(method, data):
    x, y = data
    y = y.copy()
    y[0] = 99  # a class of one sample
    assert np.isfinite(nctk.score(method, x, y))


def test_rank_pool_names_the_model_in_errors(data):
    x, y = data
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(InputError, match=r"^broken: array 'features'"):
        nctk.rank({"fine": x, "broken": bad}, y, "ncti")
