"""The pure parts of ``nctk select``: successive halving on given scores, the budget
arithmetic and plan, the hybrid order. No training: every figure is checked by hand."""

from __future__ import annotations

import math

import pytest

from nctk.errors import InputError
from nctk.select.budget import (
    Budget,
    halving_cost,
    ladder,
    parse_budget,
    plan,
    zero_training_epochs,
)
from nctk.select.schedule import Failure, rung_sizes, successive_halving
from nctk.select.shortlist import hybrid_order


def curves_evaluate(curves, calls=None):
    """``evaluate`` from recorded curves: the best value up to the epoch (the replay)."""
    def evaluate(epoch, models):
        if calls is not None:
            calls.append((epoch, list(models)))
        return {m: max(curves[m][:epoch]) for m in models}
    return evaluate


def test_rung_sizes_divide_by_eta_and_keep_one():
    assert rung_sizes(9, 3, 3) == [9, 3, 1]
    assert rung_sizes(8, 3, 3) == [8, 2, 1]
    assert rung_sizes(24, 3, 3) == [24, 8, 2]
    assert rung_sizes(2, 3, 3) == [2, 1, 1]
    assert rung_sizes(5, 1, 2) == [5]


def test_successive_halving_promotes_the_best_and_picks_at_the_last_rung():
    curves = {"a": [0.5, 0.5, 0.6], "b": [0.7, 0.7, 0.7], "c": [0.2, 0.9, 0.9],
              "d": [0.6, 0.8, 0.95], "e": [0.1, 0.1, 0.1], "f": [0.65, 0.66, 0.67]}
    calls = []
    schedule = successive_halving(list("abcdef"), [1, 3], 3, curves_evaluate(curves, calls))
    # rung 1 (epoch 1): b 0.7 > f 0.65 > d 0.6 > a 0.5 > c 0.2 > e 0.1; keep 6 // 3 = 2
    assert calls == [(1, list("abcdef")), (3, ["b", "f"])]
    rows = {r.model: r for r in schedule.rows}
    assert schedule.pick == "b" and rows["b"].scores == [0.7, 0.7]
    assert rows["f"].scores == [0.65, 0.67] and rows["f"].dropped_at is None
    assert rows["d"].dropped_at == 0 and rows["d"].epochs == 1  # a late bloomer, dropped
    assert schedule.epochs_trained == 2 * 3 + 4 * 1
    assert [r.zero_rank for r in schedule.rows] == [1, 2, 3, 4, 5, 6]
    assert schedule.sizes == [6, 2]


def test_ties_go_to_the_better_zero_training_rank():
    curves = {"x": [0.5, 0.6], "y": [0.5, 0.6], "z": [0.5, 0.6]}
    schedule = successive_halving(["z", "y", "x"], [1, 2], 3, curves_evaluate(curves))
    assert schedule.pick == "z"
    assert [r.model for r in schedule.rows if r.dropped_at == 0] == ["y", "x"]


def test_a_failed_model_is_dropped_and_the_others_go_on():
    def evaluate(epoch, models):
        return {m: Failure("out of memory") if m == "a" and epoch == 3 else
                {"a": 0.9, "b": 0.8, "c": 0.1}[m] + epoch / 100 for m in models}

    schedule = successive_halving(["a", "b", "c"], [1, 3], 2, evaluate)
    rows = {r.model: r for r in schedule.rows}
    assert rows["a"].failure == "out of memory" and rows["a"].dropped_at == 1
    assert rows["a"].scores == [0.91]
    # rung 1 keeps 3 // 2 = 1: a; a fails at rung 2, nothing is left to pick from
    assert schedule.pick is None
    schedule = successive_halving(["a", "b", "c"], [1, 3], 2, lambda e, ms: {
        m: Failure("boom") if m == "a" else {"b": 0.5, "c": 0.4}[m] for m in ms})
    assert schedule.pick == "b"  # a failed at rung 1: b and c compete for its place


def test_missing_or_non_finite_scores_are_failures():
    schedule = successive_halving(["a", "b"], [1], 2, lambda e, ms: {"a": math.nan})
    rows = {r.model: r for r in schedule.rows}
    assert "not finite" in rows["a"].failure and "no score" in rows["b"].failure
    assert schedule.pick is None


def test_schedule_rejects_bad_rungs_eta_and_models():
    evaluate = curves_evaluate({"a": [1.0]})
    for rungs in ([], [0, 1], [3, 1], [1, 1]):
        with pytest.raises(InputError, match="rungs"):
            successive_halving(["a"], rungs, 3, evaluate)
    with pytest.raises(InputError, match="eta"):
        successive_halving(["a"], [1], 1, evaluate)
    with pytest.raises(InputError, match="distinct"):
        successive_halving(["a", "a"], [1], 3, evaluate)


@pytest.mark.parametrize("text, runs, seconds", [
    ("3", 3.0, None), (" 2.5 ", 2.5, None), (4, 4.0, None), ("90s", None, 90.0),
    ("20m", None, 1200.0), ("1.5h", None, 5400.0), ("1e1m", None, 600.0)])
def test_parse_budget(text, runs, seconds):
    assert parse_budget(text) == Budget(runs=runs, seconds=seconds)


@pytest.mark.parametrize("text", ["0", "-1", "0m", "abc", "3 runs", "1d", "", "nan", "inf",
                                  True, float("nan"), -2.0])
def test_bad_budgets_are_input_errors(text):
    with pytest.raises(InputError, match="budget"):
        parse_budget(text)


def test_ladder_is_geometric_down_from_e():
    assert ladder(9, 3) == [1, 3, 9]
    assert ladder(10, 3) == [1, 3, 10]   # 10/9 and 10/3 rounded
    assert ladder(27, 3) == [1, 3, 9, 27]
    assert ladder(8, 2) == [1, 2, 4, 8]
    assert ladder(2, 3) == [2]
    assert ladder(1, 3) == [1]
    with pytest.raises(InputError, match="epochs"):
        ladder(0, 3)


def test_halving_cost_counts_each_promoted_model_once_up_to_its_rung():
    # 9 models to epoch 1, 3 of them on to 3, 1 on to 9
    assert halving_cost(9, [1, 3, 9], 3) == 9 * 1 + 3 * 2 + 1 * 6
    assert halving_cost(2, [10], 3) == 20


def test_zero_training_phase_in_model_epochs():
    # N forward passes against an epoch of 3 n_train + n_val forward passes
    assert zero_training_epochs(100, 80, 20) == pytest.approx(100 / 260)


def test_plan_takes_the_largest_shortlist_the_budget_pays_for():
    zero = 9 * zero_training_epochs(100, 80, 20)
    chosen = plan(Budget(runs=2.25), pool=9, epochs=9, eta=3, samples=100, train=80, val=20)
    # budget 2.25 x 9 = 20.25 model-epochs; with the zero phase (9 x 100 / 260 = 3.46),
    # n = 6 costs 6x1 + 2x2 + 1x6 = 16 (19.46, fits), n = 7 costs 17 (20.46, does not)
    assert chosen.shortlist == 6 and chosen.sizes == [6, 2, 1] and chosen.rungs == [1, 3, 9]
    assert chosen.halving_epochs == 16 and chosen.zero_epochs == pytest.approx(zero)
    assert chosen.cost_fraction == pytest.approx((16 + zero) / 81)
    everything = plan(Budget(runs=50), pool=9, epochs=9, eta=3, samples=100, train=80, val=20)
    assert everything.shortlist == 9


def test_a_wall_time_budget_uses_the_measured_epoch_seconds():
    chosen = plan(Budget(seconds=60), pool=4, epochs=3, eta=3, samples=10, train=8, val=2,
                  epoch_seconds=5.0)
    assert chosen.budget_epochs == 12.0 and chosen.shortlist == 4
    with pytest.raises(InputError, match="measured seconds"):
        plan(Budget(seconds=60), pool=4, epochs=3, eta=3, samples=10, train=8, val=2)


def test_a_budget_too_small_names_the_smallest_that_works():
    kwargs = dict(pool=9, epochs=9, eta=3, samples=100, train=80, val=20)
    with pytest.raises(InputError, match=r"too small.*at least 1\.5 \(runs of 9 epochs\)"):
        plan(Budget(runs=1), **kwargs)
    # n = 2: 2x1 + 1x2 + 1x6 = 10, with the zero phase 13.46 model-epochs = 1.496 runs
    assert plan(Budget(runs=1.5), **kwargs).shortlist == 2
    with pytest.raises(InputError, match=r"at least 81s"):
        plan(Budget(seconds=30), **kwargs, epoch_seconds=6.0)  # 13.46 model-epochs x 6 s
    assert plan(Budget(seconds=81), **kwargs, epoch_seconds=6.0).shortlist == 2
    with pytest.raises(InputError, match="at least 2 models"):
        plan(Budget(runs=5), **(kwargs | {"pool": 1}))


def test_hybrid_order_alternates_the_two_rankings():
    aware, prior = ["a", "b", "c", "d", "e"], ["c", "e", "a", "d", "b"]
    assert hybrid_order(aware, prior) == ["a", "c", "b", "e", "d"]
    assert hybrid_order(aware, None) == aware
    order = hybrid_order(aware, prior)
    for k in range(1, 6):  # the union of the two top-k is always a prefix of the order
        union = set(aware[:k]) | set(prior[:k])
        assert set(order[:len(union)]) == union
    with pytest.raises(InputError, match="other models"):
        hybrid_order(aware, ["a", "b"])


def test_promote_with_a_margin_treats_close_scores_as_ties():
    from nctk.select.schedule import promote

    scores = {"a": 0.80, "b": 0.74, "c": 0.73, "d": 0.60, "e": 0.72}
    zero = {"a": 5, "b": 4, "c": 1, "d": 2, "e": 3}
    assert promote(scores, zero, 2) == ["a", "b"]  # exact ties only
    # cut = b's 0.74; within 0.03 of it: b, c, e (0.71..0.77), taken in zero order
    assert promote(scores, zero, 2, lambda p: 0.03) == ["a", "c"]
    assert promote(scores, zero, 3, lambda p: 0.03) == ["a", "c", "e"]
    # a margin as wide as every gap: the zero-training order decides alone
    assert promote(scores, zero, 2, lambda p: 1.0) == ["c", "d"]
    assert promote(scores, zero, 1, lambda p: 0.0) == ["a"]


def test_a_margin_at_the_last_rung_picks_the_better_zero_rank_among_near_ties():
    curves = {"x": [0.5, 0.70], "y": [0.5, 0.72], "z": [0.4, 0.60]}
    plain = successive_halving(["x", "y", "z"], [2], 2, curves_evaluate(curves))
    assert plain.pick == "y"
    near = successive_halving(["x", "y", "z"], [2], 2, curves_evaluate(curves),
                              margin=lambda p: 0.03)
    assert near.pick == "x"  # 0.70 is within 0.03 of the best: x's zero rank wins
    assert all(r.dropped_at is None for r in near.rows)  # the last rung drops no one
    wide = successive_halving(["z", "x", "y"], [2], 2, curves_evaluate(curves),
                              margin=lambda p: 0.05)
    assert wide.pick == "x"  # z (0.60) is beyond 0.05 of 0.72, x is within


def test_binomial_margin_is_the_standard_error_of_a_difference():
    from nctk.select.budget import binomial_margin

    assert binomial_margin(500)(0.7) == pytest.approx(math.sqrt(2 * 0.21 / 500))
    assert binomial_margin(200)(0.5) == pytest.approx(0.05)
