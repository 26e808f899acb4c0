"""benchmarks/bench_select.py: regret, cost, the goal lines and the resolution figures of a
target, on a hand-made target whose answers are worked out by hand below."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmark_scripts import benchmark_module


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("bench_select") as module:
        yield module


def flat(*values: float) -> list[float]:
    """A 9-epoch validation curve: values[0] for epoch 1-2, [1] for 3-8, [2] for 9."""
    return [values[0]] * 2 + [values[1]] * 6 + [values[2]]


def target(bench):
    """4 models, E = 9; ``a`` is best by ground truth, ``b`` by validation accuracy."""
    truth = {"a": 0.80, "b": 0.79, "c": 0.70, "d": 0.60}
    curves = {"a": flat(0.50, 0.70, 0.74), "b": flat(0.55, 0.72, 0.76),
              "c": flat(0.52, 0.60, 0.65), "d": flat(0.40, 0.50, 0.55)}
    seeds = {"a": [0.79, 0.80, 0.81], "b": [0.78, 0.79, 0.80],
             "c": [0.70, 0.70, 0.70], "d": [0.59, 0.60, 0.61]}
    orders = {"prior": ["b", "a", "c", "d"], "recommended": ["c", "a", "b", "d"],
              "ncti": ["d", "c", "b", "a"]}
    orders["hybrid"] = ["c", "b", "a", "d"]
    return bench.Target("t", Path("."), {m: f"demo:{m}" for m in truth}, curves, truth,
                        orders, 9, 1000, 800, 200, "", seeds,
                        {"a": 0.78, "b": 0.795, "c": 0.7, "d": 0.6})


def test_zero_training_picks_pay_the_zero_phase_and_one_run(bench):
    t = target(bench)
    zero = 1000 / (3 * 800 + 200)  # model-epochs per model: N / (3 n_train + n_val)
    prior = bench.zero_training_pick(t, "prior")
    assert prior["pick"] == "b" and prior["regret"] == pytest.approx(1.0, abs=1e-7)
    assert prior["cost"] == pytest.approx(9 / 36, abs=1e-7)
    ncti = bench.zero_training_pick(t, "ncti")
    assert ncti["pick"] == "d" and ncti["regret"] == pytest.approx(20.0, abs=1e-7)
    assert ncti["cost"] == pytest.approx((4 * zero + 9) / 36, abs=1e-7)


def test_brute_force_picks_the_best_validation_accuracy(bench):
    t = target(bench)
    assert bench.brute_force(t) == {"pick": "b", "cost": 1.0,
                                    "regret": pytest.approx(1.0, abs=1e-7)}


def test_replay_of_successive_halving_on_the_curves(bench):
    t = target(bench)
    # 2.5 runs = 22.5 model-epochs; zero phase 4 x 0.3846 = 1.54; n = 4 on rungs 1, 3, 9:
    # sizes 4, 1, 1 -> 4 + 2 + 6 = 12 model-epochs; rung 1 keeps b (0.55 is the best).
    out = bench.replay(t, t.orders["hybrid"], 2.5 / 4)
    assert out["shortlist"] == 4 and out["rungs"] == [1, 3, 9] and out["pick"] == "b"
    zero = 4 * 1000 / (3 * 800 + 200)
    assert out["cost"] == pytest.approx((zero + 12) / 36, abs=1e-7)


def test_resolution_figures_by_hand(bench):
    r = bench.resolution(target(bench))
    assert r["best"] == "a" and r["gap"] == pytest.approx(1.0, abs=1e-7)
    seed_std = (0.01 + 0.01 + 0.0 + 0.01) / 4  # sample std of (x-.01, x, x+.01) is 0.01
    assert r["seed_std"] == pytest.approx(100 * seed_std, abs=1e-7)
    assert r["truth_diff_se"] == pytest.approx(100 * seed_std * math.sqrt(2 / 3), abs=1e-7)
    se = math.sqrt(2 * 0.76 * 0.24 / 200)  # at the best final validation accuracy, b's
    assert r["val_diff_se"] == pytest.approx(100 * se, abs=1e-7)
    assert r["within_val_se"] == 2  # a (0.74) and b (0.76) are 0.02 < 0.0427 apart
    assert r["selection_test_oracle"] == "b"
    assert r["selection_test_oracle_regret"] == pytest.approx(1.0, abs=1e-7)


def test_goal_lines_count_targets_honestly(bench):
    t = target(bench)
    results = {"t": bench.strategies(t, orders=5)}
    lines = bench.goal(results, "hybrid+SH@0.5")
    assert "mean regret 1.00 points" in lines[1]
    assert "lower than every zero-training pick (or zero) on 0 of 1" in lines[2]
    assert "the true best on 0 of 1" in lines[3]
