"""Thread counts: a pool scored side by side gives every model one thread, so a model's
score is the same bit for bit whichever models share the pool, in whatever order, and
whatever thread count the caller had; the caller's thread count comes back afterwards.

Exact equality is the guarantee under test (the same single-threaded kernels on the same
data); the data are large enough that two-thread kernels change the last bits here (the
second test shows it, and skips where they do not), so the equalities are not vacuous."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nctk.errors import InputError
from nctk.transfer import get_method
from nctk.transfer.ranking import rank_arrays, single_threaded_kernels
from scores_core_data import blobs

METHODS = ("ncti", "logme", "hscore", "sfda")


@pytest.fixture(scope="module")
def pool():
    _, y = blobs(n=1000, d=100, classes=6, seed=5)
    features = {f"m{i}": (blobs(n=1000, d=100, classes=6, spread=0.8 + i, seed=5)[0]
                          + np.random.default_rng(i).normal(size=(1000, 100))
                          ).astype(np.float32) for i in range(3)}
    return features, y


@pytest.fixture
def caller_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _raw(pool, order, workers, threads):
    """(method, model) -> the model's own numbers: NCTI's raw terms, the other scores."""
    features, y = pool
    torch.set_num_threads(threads)
    result = rank_arrays({m: {"features": features[m]} for m in order}, y,
                         [get_method(name) for name in METHODS], workers=workers)
    assert torch.get_num_threads() == threads  # the caller's count is restored
    out = {}
    for name, res in result.items():
        for m in order:
            c = res.components.get(m, {})
            out[name, m] = ((c["seli"], c["ncc"], c["vc"]) if name == "ncti"
                            else res.scores[m])
    return out


def test_side_by_side_scores_do_not_depend_on_the_pool_order_or_thread_count(
        pool, caller_threads):
    base = _raw(pool, ["m0", "m1", "m2"], 2, 2)
    for order, threads in ((["m2", "m0", "m1"], 2), (["m1", "m2", "m0"], 1),
                           (["m2", "m0"], 2), (["m1", "m0"], 1)):
        got = _raw(pool, order, 2, threads)
        assert got == {k: base[k] for k in got}, (order, threads)
    # one worker on one thread runs the same kernels as every side-by-side worker
    assert _raw(pool, ["m0", "m1", "m2"], 1, 1) == base


def test_two_thread_kernels_change_the_last_bits_only(pool, caller_threads):
    base = _raw(pool, ["m0", "m1", "m2"], 2, 2)
    alone = _raw(pool, ["m0", "m1", "m2"], 1, 2)  # one by one, with two threads each
    for key, value in base.items():
        np.testing.assert_allclose(alone[key], value, rtol=1e-7, atol=0, err_msg=str(key))
    if alone == base:  # then the equalities above are not tested against a real difference
        pytest.skip("two-thread kernels give the same bits as one thread on this machine")


def test_the_thread_count_comes_back_after_an_error(caller_threads):
    torch.set_num_threads(2)
    with pytest.raises(InputError), single_threaded_kernels():
        assert torch.get_num_threads() == 1
        raise InputError("a model failed")
    assert torch.get_num_threads() == 2
    y = np.repeat([0, 1], 10)
    broken = np.ones((20, 3))
    broken[4, 1] = np.nan
    bad = {"a": {"features": np.eye(20)[:, :3]}, "b": {"features": broken}}
    with pytest.raises(InputError):
        rank_arrays(bad, y, [get_method("logme")], workers=2)
    assert torch.get_num_threads() == 2
