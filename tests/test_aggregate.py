"""The aggregators of ``recommended`` (nctk.transfer.aggregate) against values counted by
hand, their invariances, and ``recommended`` run with any rule (members that are and are
not pool-relative, every aggregator)."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

import nctk
from nctk.transfer import aggregate, recommended
from nctk.transfer.aggregate import median_rank, rank_average, z_mean
from scores_core_data import blobs

SCORES = {"a": {"w": 0.1, "x": 0.9, "y": 0.5, "z": 0.5},
          "b": {"w": 3.0, "x": 1.0, "y": 2.0, "z": 0.0},
          "c": {"w": -1.0, "x": 4.0, "y": 7.0, "z": 2.0}}


def ranks_by_hand(values):
    """1 + (number of smaller values) + (number of other equal values) / 2."""
    return [1 + sum(w < v for w in values) + (sum(w == v for w in values) - 1) / 2
            for v in values]


def per_member_ranks():
    return {s: dict(zip(v, ranks_by_hand(list(v.values())), strict=True))
            for s, v in SCORES.items()}


def test_median_rank_by_hand():
    ranks = per_member_ranks()
    combined, comps = median_rank(SCORES)
    for m in "wxyz":
        # exact: the median of three half-integers is one of them
        assert combined[m] == statistics.median(ranks[s][m] for s in SCORES)
        assert comps[m]["c_rank"] == 5 - ranks["c"][m]


def test_weighted_mean_rank_by_hand():
    ranks = per_member_ranks()
    combined, _ = rank_average(SCORES, weights=[2.0, 1.0, 1.0])
    for m in "wxyz":
        want = (2 * ranks["a"][m] + ranks["b"][m] + ranks["c"][m]) / 4
        assert combined[m] == pytest.approx(want, abs=1e-7)


def test_z_mean_by_hand():
    combined, comps = z_mean(SCORES)
    for m in "wxyz":
        z = []
        for values in SCORES.values():
            v = list(values.values())
            mean = sum(v) / len(v)
            std = (sum((u - mean) ** 2 for u in v) / len(v)) ** 0.5
            z.append((values[m] - mean) / std)
        assert combined[m] == pytest.approx(sum(z) / 3, abs=1e-7)
        assert comps[m]["b"] == SCORES["b"][m]


def test_z_mean_invariances_and_a_constant_member():
    rng = np.random.default_rng(0)
    scores = {s: {f"m{i}": float(v) for i, v in enumerate(rng.normal(size=7))}
              for s in "abc"}
    want, _ = z_mean(scores)
    affine = {s: {m: 3.5 * v - 20.0 for m, v in values.items()}
              for s, values in scores.items()}
    assert z_mean(affine)[0] == pytest.approx(want, abs=1e-7)
    shuffled = {s: dict(reversed(values.items())) for s, values in scores.items()}
    assert z_mean(shuffled)[0] == pytest.approx(want, abs=1e-7)
    flat = {**scores, "d": {m: 1.0 for m in scores["a"]}}
    got = z_mean(flat)[0]  # the constant member contributes 0: three quarters of the rest
    assert got == pytest.approx({m: 0.75 * v for m, v in want.items()}, abs=1e-7)


@pytest.mark.parametrize("aggregator", ["mean_rank", "median_rank"])
def test_rank_aggregators_ignore_monotone_transforms(aggregator):
    want, _ = aggregate.aggregate(SCORES, aggregator)
    warped = {s: {m: float(np.exp(3 * v)) for m, v in values.items()}
              for s, values in SCORES.items()}
    assert aggregate.aggregate(warped, aggregator)[0] == want


def test_unknown_aggregator():
    with pytest.raises(ValueError, match="unknown aggregator 'mode'"):
        aggregate.aggregate(SCORES, "mode")
    with pytest.raises(ValueError, match="unknown aggregator"):
        recommended.Rule(("ncti",), "mode")


@pytest.fixture(scope="module")
def pool():
    x, y = blobs(n=150, d=10, classes=3, spread=1.0, seed=2)
    rng = np.random.default_rng(0)
    return {f"m{i}": x * (i + 1) + rng.normal(size=x.shape) * (0.5 + i) for i in range(4)}, y


@pytest.mark.parametrize("aggregator", aggregate.AGGREGATORS)
def test_recommended_runs_any_rule(pool, monkeypatch, aggregator):
    """A rule with a member that is not pool-relative (NLEEP, given the seed) and any
    aggregator: recommended is that aggregator over the members' own pool scores."""
    features, y = pool
    rule = recommended.Rule(("ncti", "nleep", "logme"), aggregator)
    monkeypatch.setattr(recommended, "WITHOUT_PRIOR", rule)
    monkeypatch.setattr(recommended, "WITH_PRIOR", recommended.Rule(("ncti",), aggregator))
    monkeypatch.setattr(recommended, "ESTIMATORS", ("ncti", "nleep", "logme"))
    members = {m: nctk.rank(features, y, m, **({"seed": 3} if m == "nleep" else {})).scores
               for m in rule.members}
    result = nctk.rank(features, y, "recommended", seed=3)
    assert result.scores == pytest.approx(aggregate.aggregate(members, aggregator)[0],
                                          abs=1e-7)
    assert recommended.members_used(result.components) == list(rule.members)
    prior = {"m0": 1.0, "m1": 4.0, "m2": 2.0, "m3": 3.0}
    with_prior = nctk.rank(features, y, "recommended", seed=3, prior=prior)
    want = aggregate.aggregate({"ncti": members["ncti"], "prior": prior}, aggregator)[0]
    assert with_prior.scores == pytest.approx(want, abs=1e-7)
    assert recommended.combine_scores(members)[0] == pytest.approx(result.scores, abs=1e-7)
