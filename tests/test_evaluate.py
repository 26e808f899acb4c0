"""nctk.evaluate against textbook formulas written out here (spec/metrics.md §11)."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest

from nctk.errors import InputError
from nctk.evaluation import (
    bootstrap_weighted_tau,
    evaluate,
    leave_one_out_weighted_tau,
    undefined_reason,
)


def _sgn(v: float) -> int:
    return int(v > 0) - int(v < 0)


def _one_sided_tau(x, y, order) -> float:
    """tau_rho of spec §11 for the ranking ``order`` (item indices, best first)."""
    rank = {item: r for r, item in enumerate(order)}
    w = {i: 1.0 / (rank[i] + 1) for i in range(len(x))}
    num = den_x = den_y = 0.0
    for i, j in combinations(range(len(x)), 2):
        wij = w[i] + w[j]
        num += wij * _sgn(x[i] - x[j]) * _sgn(y[i] - y[j])
        den_x += wij * (x[i] != x[j])
        den_y += wij * (y[i] != y[j])
    return num / math.sqrt(den_x * den_y)


def brute_weighted_tau(x, y) -> float:
    """Vigna's additive hyperbolic weighted tau, straight from spec §11."""
    idx = range(len(x))
    rho1 = sorted(idx, key=lambda i: (-x[i], -y[i]))
    rho2 = sorted(idx, key=lambda i: (-y[i], -x[i]))
    return 0.5 * (_one_sided_tau(x, y, rho1) + _one_sided_tau(x, y, rho2))


def brute_kendall_b(x, y) -> float:
    conc = n_x = n_y = 0
    for i, j in combinations(range(len(x)), 2):
        conc += _sgn(x[i] - x[j]) * _sgn(y[i] - y[j])
        n_x += x[i] != x[j]
        n_y += y[i] != y[j]
    return conc / math.sqrt(n_x * n_y)


def brute_pearson(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    dx, dy = x - x.mean(), y - y.mean()
    return float((dx * dy).sum() / math.sqrt((dx**2).sum() * (dy**2).sum()))


def _as_dicts(x, y):
    names = [f"m{i}" for i in range(len(x))]
    return dict(zip(names, map(float, x), strict=True)), dict(zip(names, map(float, y),
                                                                  strict=True))


@pytest.mark.parametrize("seed", range(8))
def test_weighted_tau_matches_spec_formula_with_ties(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(3, 14))
    # small integer ranges force ties in x, in y, and in both at once
    x = rng.integers(0, 5, size=m).astype(float)
    y = rng.integers(0, 4, size=m).astype(float)
    if np.all(x == x[0]) or np.all(y == y[0]):
        x[0], y[0] = x[0] + 1, y[0] + 1
    scores, truth = _as_dicts(x, y)
    got = evaluate(scores, truth)
    assert got["weighted_tau"] == pytest.approx(brute_weighted_tau(x, y), abs=1e-7)
    assert got["kendall_tau"] == pytest.approx(brute_kendall_b(x, y), abs=1e-7)
    assert got["pearson"] == pytest.approx(brute_pearson(x, y), abs=1e-7)


def test_weighted_tau_without_ties_and_spearman():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=11), rng.normal(size=11)
    got = evaluate(*_as_dicts(x, y))
    assert got["weighted_tau"] == pytest.approx(brute_weighted_tau(x, y), abs=1e-7)
    rank_x, rank_y = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    assert got["spearman"] == pytest.approx(brute_pearson(rank_x, rank_y), abs=1e-7)


def test_perfect_and_reversed_rankings():
    x = np.arange(7.0)
    perfect = evaluate(*_as_dicts(x, 10 + 2 * x))
    reversed_ = evaluate(*_as_dicts(x, 100 - x))
    for key in ("weighted_tau", "kendall_tau", "spearman", "pearson"):
        assert perfect[key] == pytest.approx(1.0)
        assert reversed_[key] == pytest.approx(-1.0)
    assert perfect["top1_relative"] == 1.0
    assert reversed_["top1_relative"] == pytest.approx(94 / 100)


def test_weighted_tau_weighs_the_top_more():
    # swapping the two best models costs more than swapping the two worst
    truth = {f"m{i}": float(10 - i) for i in range(6)}
    top_swapped = dict(truth, m0=truth["m1"], m1=truth["m0"])
    bottom_swapped = dict(truth, m4=truth["m5"], m5=truth["m4"])
    assert (evaluate(top_swapped, truth)["weighted_tau"]
            < evaluate(bottom_swapped, truth)["weighted_tau"] < 1.0)


def test_order_of_the_dicts_does_not_matter():
    rng = np.random.default_rng(0)
    scores, truth = _as_dicts(rng.normal(size=9), rng.uniform(50, 90, size=9))
    base = evaluate(scores, truth)
    for perm_seed in range(4):
        perm = np.random.default_rng(perm_seed).permutation(list(scores))
        shuffled_scores = {m: scores[m] for m in perm}
        shuffled_truth = {m: truth[m] for m in reversed(perm)}
        assert evaluate(shuffled_scores, shuffled_truth) == pytest.approx(base, abs=1e-7)


def test_top1_relative_and_stable_ties():
    truth = {"a": 80.0, "b": 90.0, "c": 60.0}
    assert evaluate({"a": 3, "b": 1, "c": 2}, truth)["top1_relative"] == pytest.approx(80 / 90)
    assert evaluate({"a": 1, "b": 5, "c": 2}, truth)["top1_relative"] == 1.0
    # a tie at the top goes to the first model in the order of the scores (stable sort)
    assert evaluate({"c": 5, "b": 5, "a": 1}, truth)["top1_relative"] == pytest.approx(60 / 90)
    assert evaluate({"b": 5, "c": 5, "a": 1}, truth)["top1_relative"] == 1.0


def test_float32_and_float64_scores_agree():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=10), rng.uniform(60, 95, size=10)
    s64, t = _as_dicts(x, y)
    s32 = {m: np.float32(v) for m, v in s64.items()}
    got64, got32 = evaluate(s64, t), evaluate(s32, t)
    for key in got64:
        assert got32[key] == pytest.approx(got64[key], rel=1e-5)
        assert type(got32[key]) is float


def test_extra_truth_entries_are_ignored():
    scores = {"a": 1.0, "b": 2.0}
    truth = {"a": 1.0, "b": 2.0, "unused": 100.0}
    assert evaluate(scores, truth)["top1_relative"] == 1.0


def test_missing_truth_names_the_model():
    with pytest.raises(InputError, match="'b'"):
        evaluate({"a": 1.0, "b": 2.0}, {"a": 3.0})


def test_constant_scores_give_nan_not_an_error():
    truth = {"a": 1.0, "b": 2.0, "c": 3.0}
    got = evaluate({"a": 0.5, "b": 0.5, "c": 0.5}, truth)
    for key in ("weighted_tau", "kendall_tau", "spearman", "pearson"):
        assert math.isnan(got[key])
    assert got["top1_relative"] == pytest.approx(1 / 3)  # stable: the first model
    assert "constant" in undefined_reason({"a": 0.5, "b": 0.5, "c": 0.5}, truth)


def test_nan_scores_give_nan_everywhere():
    truth = {"a": 1.0, "b": 2.0, "c": 3.0}
    scores = {"a": 0.1, "b": math.nan, "c": 0.3}
    got = evaluate(scores, truth)
    assert all(math.isnan(v) for v in got.values())
    assert "NaN" in undefined_reason(scores, truth)


def test_single_model_and_constant_truth():
    assert math.isnan(evaluate({"a": 1.0}, {"a": 2.0})["weighted_tau"])
    assert undefined_reason({"a": 1.0}, {"a": 2.0}).startswith("only 1 model")
    got = evaluate({"a": 1.0, "b": 2.0}, {"a": 5.0, "b": 5.0})
    assert math.isnan(got["spearman"])
    assert got["top1_relative"] == 1.0
    assert evaluate({"a": 1.0, "b": 2.0}, {"a": 5.0, "b": 7.0})["weighted_tau"] == 1.0


def test_empty_scores_are_an_input_error():
    with pytest.raises(InputError, match="no scores"):
        evaluate({}, {"a": 1.0})


def test_bootstrap_replicates_match_a_direct_resampling():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=8), rng.normal(size=8)
    scores, truth = _as_dicts(x, y)
    got = bootstrap_weighted_tau(scores, truth, n_boot=300, seed=11, level=0.9)
    draws = np.random.default_rng(11).integers(0, 8, size=(300, 8))
    taus = []
    for idx in draws:
        xs, ys = x[idx], y[idx]
        if np.all(xs == xs[0]) or np.all(ys == ys[0]):
            continue
        taus.append(brute_weighted_tau(list(xs), list(ys)))
    assert got["n_undefined"] == 300 - len(taus)
    assert got["low"] == pytest.approx(np.percentile(taus, 5), abs=1e-7)
    assert got["high"] == pytest.approx(np.percentile(taus, 95), abs=1e-7)
    assert got["estimate"] == pytest.approx(brute_weighted_tau(x, y), abs=1e-7)
    assert got["low"] <= got["high"]
    assert bootstrap_weighted_tau(scores, truth, n_boot=300, seed=11, level=0.9) == got


def test_bootstrap_counts_constant_resamples():
    # two models: half the replicates draw the same model twice (constant)
    got = bootstrap_weighted_tau({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0}, n_boot=400)
    assert 150 < got["n_undefined"] < 250
    assert got["low"] == got["high"] == 1.0


def test_bootstrap_rejects_bad_options():
    with pytest.raises(InputError, match="level"):
        bootstrap_weighted_tau({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0}, level=1.5)
    with pytest.raises(InputError, match="n_boot"):
        bootstrap_weighted_tau({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0}, n_boot=0)


def test_leave_one_out_against_direct_removal():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=6), rng.normal(size=6)
    scores, truth = _as_dicts(x, y)
    got = leave_one_out_weighted_tau(scores, truth)
    expected = {f"m{i}": brute_weighted_tau(list(np.delete(x, i)), list(np.delete(y, i)))
                for i in range(6)}
    assert got["per_removed"] == pytest.approx(expected, abs=1e-7)
    assert got["worst"] == pytest.approx(min(expected.values()), abs=1e-7)
    assert got["worst_removed"] == min(expected, key=expected.get)
    assert got["mean"] == pytest.approx(np.mean(list(expected.values())), abs=1e-7)
    assert got["full"] == pytest.approx(brute_weighted_tau(x, y), abs=1e-7)


def test_leave_one_out_with_two_models_is_all_nan():
    got = leave_one_out_weighted_tau({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0})
    assert got["worst_removed"] is None and math.isnan(got["worst"])


def test_package_level_call_survives_the_submodule_import():
    import nctk
    import nctk.evaluation as module

    scores, truth = {"a": 1.0, "b": 2.0, "c": 0.0}, {"a": 2.0, "b": 3.0, "c": 1.0}
    assert nctk.evaluate(scores, truth) == module.evaluate(scores, truth)
    assert nctk.evaluate(scores, truth)["weighted_tau"] == 1.0
