"""Per-model statistics shared by several scores: same values whatever runs first, and
the same rankings through ``rank_arrays`` (one pass per model, any number of workers)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import nctk
from nctk.transfer import get_method
from nctk.transfer._shared import shared_features
from nctk.transfer.ranking import rank_arrays
from scores_core_data import blobs

SHARED = ["ncti", "logme", "hscore", "reg_hscore", "sfda"]
FEATURE_METHODS = [*SHARED, "parc", "gbc", "transrate", "nleep"]


def _value(name, x, y):
    meth = get_method(name)
    return meth.components(x, y)["seli"] if meth.pool_relative else meth.score(x, y)


@pytest.mark.parametrize("shape", [(300, 40), (60, 150)])
def test_values_do_not_depend_on_what_ran_before(shape):
    n, d = shape
    x, y = blobs(n=n, d=d, classes=5, spread=1.5, seed=n)
    x = x.astype(np.float32)
    alone = {name: _value(name, x, y) for name in SHARED}
    for order in itertools.islice(itertools.permutations(SHARED), 0, None, 17):
        stats = shared_features(x, y)
        for name in order:
            assert _value(name, stats, y) == pytest.approx(alone[name], rel=1e-7), (name, order)


def test_numpy_methods_read_the_shared_features():
    x, y = blobs(n=120, d=12, classes=3, seed=3)
    stats = shared_features(x, y)
    for name in ("parc", "gbc", "transrate", "nleep"):
        assert nctk.score(name, stats, y) == nctk.score(name, x, y)


def test_statistics_belong_to_their_labels():
    x, y = blobs(n=50, d=5, classes=2, seed=4)
    with pytest.raises(ValueError, match="other labels"):
        nctk.score("hscore", shared_features(x, y), y.copy())


@pytest.mark.parametrize("workers", [1, 2])
def test_rank_arrays_matches_one_method_at_a_time(workers):
    _, y = blobs(n=200, d=20, classes=4, seed=5)
    pool = {f"m{i}": blobs(n=200, d=20, classes=4, spread=0.5 + i, seed=5)[0] for i in range(4)}
    pool = {m: x + np.random.default_rng(i).normal(size=x.shape) for i, (m, x) in
            enumerate(pool.items())}
    methods = [get_method(name) for name in FEATURE_METHODS]
    together = rank_arrays({m: {"features": x} for m, x in pool.items()}, y, methods,
                           workers=workers)
    for name in FEATURE_METHODS:
        alone = nctk.rank(pool, y, name)
        assert together[name].ranking == alone.ranking
        for model, value in alone.scores.items():
            assert together[name].scores[model] == pytest.approx(value, rel=1e-7)
        assert together[name].seconds >= 0
