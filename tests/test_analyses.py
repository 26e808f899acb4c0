"""nctk.analyses with a small pool-relative method defined here (NCTI-shaped: three terms,
min-max normalised over the pool, weights w_<term>)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import weightedtau

from nctk import analyses
from nctk.errors import InputError
from nctk.io import FeatureFile
from nctk.sampling import at_most_per_class
from nctk.transfer import registry
from nctk.transfer.registry import Method


class ThreeTerms:
    """Components: mean of column 0 (up), spread of column 1 (up), mean of column 2 (down).

    Counts the per-model component calls, so tests can check they happen once per model.
    """

    def __init__(self):
        self.calls = 0

    def components(self, x, labels):
        self.calls += 1
        x = np.asarray(x, dtype=float)
        if x.shape[0] < 4:
            raise InputError(f"needs at least 4 samples, got {x.shape[0]}", array="features")
        return {"up": float(x[:, 0].mean()), "spread": float(x[:, 1].std()),
                "down": float(x[:, 2].mean())}

    @staticmethod
    def combine(raw, w_up=1.0, w_spread=1.0, w_down=1.0):
        def norm(term):
            v = np.array([raw[m][term] for m in raw])
            return (v - v.min()) / (v.max() - v.min())

        total = w_up * norm("up") + w_spread * norm("spread") - w_down * norm("down")
        scores = {m: float(s) for m, s in zip(raw, total, strict=True)}
        return scores, {m: dict(raw[m]) for m in raw}

    def score(self, x, labels):
        return sum(self.components(x, labels).values())

    def method(self):
        return Method("three", self.score, components=self.components, combine=self.combine,
                      combine_options=("w_up", "w_spread", "w_down"))


def _pool(seed=0, models=6, n=60, classes=3):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n // classes)
    pool = {f"m{i}": rng.normal(size=(n, 4)) + np.array([i, 0, -i, 0]) * 0.3
            for i in range(models)}
    truth = {f"m{i}": 50.0 + 5 * i + rng.normal() for i in range(models)}
    return pool, labels, truth


def _norm(values):
    v = np.asarray(values, float)
    return (v - v.min()) / (v.max() - v.min())


def test_term_names_and_variants():
    meth = ThreeTerms().method()
    assert analyses.term_names(meth) == ["up", "spread", "down"]
    variants = analyses.ablation_variants(["up", "spread", "down"])
    assert list(variants) == ["all", "only up", "only spread", "only down", "without up",
                              "without spread", "without down"]
    assert variants["without spread"] == {"up": 1.0, "spread": 0.0, "down": 1.0}


def test_term_names_refuses_methods_without_weights():
    plain = Method("plain", lambda x, y: 0.0)
    with pytest.raises(InputError, match="no weighted terms"):
        analyses.term_names(plain)


def test_ablation_recombines_components_computed_once():
    three = ThreeTerms()
    meth = three.method()
    pool, labels, truth = _pool()
    raw = analyses.pool_components(pool, labels, meth)
    assert three.calls == len(pool)
    result = analyses.ablation(raw, truth, meth)
    analyses.weight_sweep(raw, truth, meth)
    assert three.calls == len(pool)  # no feature work per variant
    models = list(pool)
    up = _norm([pool[m][:, 0].mean() for m in models])
    spread = _norm([pool[m][:, 1].std() for m in models])
    down = _norm([pool[m][:, 2].mean() for m in models])
    gt = [truth[m] for m in models]
    expected = {"all": up + spread - down, "only up": up, "only spread": spread,
                "only down": -down, "without up": spread - down,
                "without spread": up - down, "without down": up + spread}
    for name, scores in expected.items():
        assert result[name]["weighted_tau"] == pytest.approx(weightedtau(scores, gt).statistic,
                                                             abs=1e-7)


def test_weight_sweep_varies_one_weight_with_the_others_at_one():
    meth = ThreeTerms().method()
    pool, labels, truth = _pool(seed=4)
    raw = analyses.pool_components(pool, labels, meth)
    sweep = analyses.weight_sweep(raw, truth, meth)
    assert list(sweep) == ["up", "spread", "down"]
    assert list(sweep["up"]) == list(analyses.PAPER_WEIGHT_VALUES)
    models = list(pool)
    up = _norm([pool[m][:, 0].mean() for m in models])
    spread = _norm([pool[m][:, 1].std() for m in models])
    down = _norm([pool[m][:, 2].mean() for m in models])
    gt = [truth[m] for m in models]
    for w in analyses.PAPER_WEIGHT_VALUES:
        want = weightedtau(up + spread - w * down, gt).statistic
        assert sweep["down"][w] == pytest.approx(want, abs=1e-7)
    # weight 1 reproduces the full method
    full = analyses.ablation(raw, truth, meth)["all"]["weighted_tau"]
    assert analyses.weight_sweep(raw, truth, meth, values=[1.0])["spread"][1.0] == full


def test_missing_truth_is_an_input_error():
    meth = ThreeTerms().method()
    pool, labels, truth = _pool()
    raw = analyses.pool_components(pool, labels, meth)
    del truth["m2"]
    with pytest.raises(InputError, match="m2"):
        analyses.ablation(raw, truth, meth)


def test_few_shot_shares_draws_and_is_seeded():
    pool, labels, truth = _pool(n=60)
    seen = []

    def sized(x, y):
        seen.append(np.asarray(x)[:, 3].sum())
        return float(np.asarray(x)[:, 0].mean())

    methods = [Method("first", sized), Method("second", sized)]
    out = analyses.few_shot(pool, labels, truth, methods, shots=[2, 5, 50], repeats=3, seed=7)
    assert out["shots"] == [2, 5, 50] and out["repeats"] == 3
    per_draw = len(pool)
    # 3 shots x 2 methods x 3 repeats x 6 models; method 2 sees the same rows as method 1
    chunks = np.array(seen).reshape(3, 2, 3, per_draw)
    assert np.array_equal(chunks[:, 0], chunks[:, 1])
    assert any("k=50" in note and "used whole" in note for note in out["notes"])
    stats = out["methods"]["first"][5]
    assert stats["mean"] == pytest.approx(np.mean(stats["taus"]))
    assert stats["std"] == pytest.approx(np.std(stats["taus"]))
    again = analyses.few_shot(pool, labels, truth, methods, shots=[2, 5, 50], repeats=3, seed=7)
    assert again["methods"] == out["methods"]


def test_few_shot_direct_tau_for_one_draw():
    pool, labels, truth = _pool(n=90)
    meth = Method("col0", lambda x, y: float(np.asarray(x)[:, 0].mean()))
    out = analyses.few_shot(pool, labels, truth, [meth], shots=[4], repeats=1, seed=3)
    idx = at_most_per_class(labels, 4, np.random.default_rng([3, 4, 0]))
    models = list(pool)
    want = weightedtau([pool[m][idx, 0].mean() for m in models],
                       [truth[m] for m in models]).statistic
    assert out["methods"]["col0"][4]["taus"] == [pytest.approx(want, abs=1e-7)]


def test_few_shot_records_a_method_that_rejects_small_draws():
    three = ThreeTerms()
    pool, labels, truth = _pool()
    out = analyses.few_shot(pool, labels, truth, [three.method()], shots=[1, 10], repeats=2)
    assert all(math.isnan(t) for t in out["methods"]["three"][1]["taus"])
    assert math.isnan(out["methods"]["three"][1]["mean"])
    assert any("needs at least 4 samples" in n for n in out["notes"])
    assert all(math.isfinite(t) for t in out["methods"]["three"][10]["taus"])


def test_few_shot_says_why_a_tau_is_undefined():
    pool, labels, truth = _pool()
    flat = Method("flat", lambda x, y: 1.0)
    out = analyses.few_shot(pool, labels, truth, [flat], shots=[3], repeats=1)
    assert math.isnan(out["methods"]["flat"][3]["mean"])
    assert out["notes"] == ["flat, k=3, repeat 0: weighted tau undefined: the scores are "
                            "constant (all models tie)"]


def test_few_shot_rejects_bad_options():
    pool, labels, truth = _pool()
    meth = Method("col0", lambda x, y: 0.0)
    with pytest.raises(InputError, match="repeats"):
        analyses.few_shot(pool, labels, truth, [meth], repeats=0)
    with pytest.raises(InputError, match="shots"):
        analyses.few_shot(pool, labels, truth, [meth], shots=[0, 2])


def test_timing_reports_seconds_per_model():
    pool, labels, _ = _pool(models=3)
    files = [FeatureFile(name=m, features=x, labels=labels) for m, x in pool.items()]
    out = analyses.timing(files, [ThreeTerms().method()], repeat=2)
    row = out["three"]
    assert len(row["pool_seconds"]) == 2 and row["models"] == 3
    assert row["per_model_min"] == pytest.approx(min(row["pool_seconds"]) / 3)
    assert 0 < row["per_model_min"] <= row["per_model_mean"]


def test_source_terms_use_each_models_own_source_labels():
    rng = np.random.default_rng(1)
    three = ThreeTerms()
    meth = three.method()
    files = []
    for i in range(5):
        n = 20 + i  # source subsets of different sizes and labels per model
        files.append(FeatureFile(name=f"m{i}", features=rng.normal(size=(n, 4)) + i * 0.2,
                                 labels=rng.integers(0, 3, size=n)))
    truth = {f"m{i}": 60.0 + i for i in range(5)}
    source_raw = analyses.components_per_model(files, meth)
    out = analyses.source_terms(source_raw, truth, meth, target_raw=source_raw)
    assert list(out) == ["up", "spread", "down", "all"]
    models = [f.name for f in files]
    down = _norm([f.features[:, 2].mean() for f in files])
    want = weightedtau(-down, [truth[m] for m in models]).statistic
    assert out["down"]["source"] == pytest.approx(want, abs=1e-7)
    assert out["down"]["target"] == out["down"]["source"]
    assert analyses.source_terms(source_raw, truth, meth)["all"]["target"] is None


def test_supported_options_reads_signatures():
    meth = ThreeTerms().method()
    seeded = Method("seeded", lambda x, y, seed=0: 0.0)
    assert registry.supported_options(meth, {"seed": 1, "w_up": 2.0}) == {"w_up": 2.0}
    assert registry.supported_options(seeded, {"seed": 1, "w_up": 2.0}) == {"seed": 1}


def test_real_ncti_ablation_equals_ranking_with_those_weights():
    from nctk.evaluation import evaluate
    from nctk.transfer import rank

    pool, labels, truth = _pool(seed=2, models=4, n=45, classes=3)
    raw = analyses.pool_components(pool, labels, "ncti")
    result = analyses.ablation(raw, truth, "ncti")
    for variant, weights in [("all", {}), ("without seli", {"w_seli": 0.0}),
                             ("only ncc", {"w_seli": 0.0, "w_vc": 0.0})]:
        scores = rank(pool, labels, "ncti", **weights).scores
        assert result[variant]["weighted_tau"] == pytest.approx(
            evaluate(scores, truth)["weighted_tau"], abs=1e-7)
