"""Candidate combination rules and their leave-one-collection-out (LOCO) choice.

A *collection* is a set of targets with a ground truth and per-model scores of every
method (:class:`Evidence`). A *rule* turns the member scores of one target into one score
per model:

* ``mean_rank``: the mean ascending rank over the members (a Borda count,
  ``rank_average``); with ``weights``, a weighted mean;
* ``median_rank``: the median of the members' ranks (three members: one failing member is
  outvoted);
* ``z_mean``: the mean of the members' z-scored scores (keeps how far apart models are).

The candidates (declared before the LOCO figures were seen; benchmarks/README.md): NCTI
with 0, 1 or 2 other feature-based methods, under each aggregator, NCTI counted once or
twice in a mean rank (fixed weights); in the with-prior mode the same sets with and
without the prior as one more member (not the prior alone: a default that ignores the
target data cannot beat the prior it is, which is reported beside it anyway). The rule that
ships is chosen among members that take no seed (``rule_report.feature_methods``; decided
after the first LOCO run: NLEEP made the ranking move with the seed and the sample order);
the choice with seeded members is reported beside it.

The choice, on a set of collections: the candidates that are **never worse than any of
their members, nor than NCTI, beyond the bootstrap noise** on any of them (the paired
95 % interval of the difference in mean weighted tau, models resampled, reaches 0), and
among those the best mean over the collections of the mean weighted tau (then the fewer
members). LOCO: for each collection, the rule chosen on the others is scored on it (among
the candidates computable there: which methods a collection has scores for needs no
ground truth).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from nctk.evaluation import weighted_tau
from nctk.transfer.aggregate import aggregate, rank_average

PRIOR = "prior"
ANCHOR = "ncti"

Scores = dict[str, dict[str, float]]  # target -> model -> score


def seeded(method: str, seed: int) -> str:
    """The row of ``method`` run with ``seed``."""
    return f"{method} (seed {seed})"


@dataclass(frozen=True)
class Rule:
    """``members`` (row names; :data:`PRIOR` is the collection's prior) combined by
    ``aggregator``; ``weights`` (one per member) for a weighted mean rank."""

    members: tuple[str, ...]
    aggregator: str = "mean_rank"
    weights: tuple[float, ...] | None = None

    @property
    def name(self) -> str:
        if self.weights:
            return "+".join(f"{w:g}*{m}" if w != 1 else m
                            for m, w in zip(self.members, self.weights, strict=True))
        joined = "+".join(self.members)
        return joined if len(self.members) == 1 or self.aggregator == "mean_rank" else (
            f"{self.aggregator}({joined})")


def combine(rule: Rule, scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """One target: member -> {model: score} combined into {model: score} by ``rule``
    (the library's aggregators, :mod:`nctk.transfer.aggregate`)."""
    members = {m: scores[m] for m in rule.members}
    if rule.weights:
        return rank_average(members, rule.weights)[0]
    return aggregate(members, rule.aggregator)[0]


def candidates(others: Sequence[str], *, with_prior: bool, anchor: str = ANCHOR) -> list[Rule]:
    """The declared candidates (module docstring): ``anchor`` plus 0..2 of ``others``."""
    sets = [(anchor, *s) for k in range(3) for s in itertools.combinations(others, k)]
    if with_prior:
        sets += [(*s, PRIOR) for s in sets]
    rules = []
    for members in sets:
        rules.append(Rule(members))
        if len(members) >= 2:
            rules.append(Rule(members, "z_mean"))
            rules.append(Rule(members, weights=tuple(2.0 if m == anchor else 1.0
                                                     for m in members)))
        if len(members) >= 3:
            rules.append(Rule(members, "median_rank"))
    return rules


def target_pairs(scores: Scores, truth: Scores) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per target of ``truth``: (scores, truth) as arrays in the truth's model order."""
    return [(np.array([scores[t][m] for m in values], dtype=np.float64),
             np.array(list(values.values()), dtype=np.float64)) for t, values in truth.items()]


def _ranked_tau(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(B,) Vigna's weighted tau of each row pair of ``x``, ``y`` (B, M), the pairs weighted
    by the additive hyperbolic weigher 1/(r_i + 1) + 1/(r_j + 1) of the rank r by decreasing
    (x, then y): scipy's ``_weightedrankedtau`` with ``rank=None``, written over all pairs at
    once. Sum_{i<j} w sgn(dx) sgn(dy) / sqrt(Sum w [dx != 0] Sum w [dy != 0]); NaN where a
    row is constant."""
    order = np.lexsort((y, x), axis=-1)[:, ::-1]
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(x.shape[1])[None, :], axis=-1)
    weight = 1.0 / (rank + 1.0)
    w = weight[:, :, None] + weight[:, None, :]
    sx = np.sign(x[:, :, None] - x[:, None, :])
    sy = np.sign(y[:, :, None] - y[:, None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * sx * sy).sum((1, 2)) / np.sqrt((w * (sx != 0)).sum((1, 2))
                                                   * (w * (sy != 0)).sum((1, 2)))


def batch_weighted_tau(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(B,) ``scipy.stats.weightedtau(x[b], y[b]).statistic`` for every row (its defaults:
    hyperbolic additive weigher, ``rank=True``: the mean of the taus ranked by (x, y) and by
    (y, x)). Written out because the bootstraps call it millions of times and scipy's takes
    ~0.4 ms a call here; equal to scipy's to 1e-12 (checked in tests/test_rule_selection.py
    on draws with repeated models and ties)."""
    x, y = np.atleast_2d(x).astype(np.float64), np.atleast_2d(y).astype(np.float64)
    return (_ranked_tau(x, y) + _ranked_tau(y, x)) / 2


def bootstrap_taus(pairs: Sequence[tuple[np.ndarray, np.ndarray]], draws: np.ndarray
                   ) -> np.ndarray:
    """(n_boot, targets) weighted taus on the resampled models (``draws``: (n_boot, M)
    model indices, the same draw in every target)."""
    if draws.size == 0:
        return np.zeros((0, len(pairs)))
    return np.stack([batch_weighted_tau(x[draws], y[draws]) for x, y in pairs], axis=1)


def bootstrap_draws(models: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, M) model indices, drawn as ``nctk.evaluation.bootstrap_weighted_tau`` draws
    them (same seed, same model count: the same draws)."""
    return np.random.default_rng(seed).integers(0, models, size=(n_boot, models))


@dataclass
class Evidence:
    """One collection: ``rows`` (row -> target -> model -> score), ``truth`` (target ->
    model -> accuracy), the row holding its prior (None: none), the bootstrap draws
    (n_boot, M) of model indices shared by every row (paired differences), and the other
    ``seeds`` its seeded methods were run with (rows ``<method> (seed <s>)``).

    A rule's figures are averaged over the seeds of its seeded members (all at the same
    seed): what a user gets with any seed, not with the one the others were chosen at.
    """

    name: str
    rows: dict[str, Scores]
    truth: Scores
    prior_row: str | None
    draws: np.ndarray
    seeds: tuple[int, ...] = ()
    _cache: dict = field(default_factory=dict, repr=False)

    def computable(self, rule: Rule) -> bool:
        return all((self.prior_row is not None) if m == PRIOR else m in self.rows
                   for m in rule.members)

    def scores(self, rule: Rule) -> Scores:
        rows = {m: self.rows[self.prior_row if m == PRIOR else m] for m in rule.members}
        return {t: combine(rule, {m: rows[m][t] for m in rule.members}) for t in self.truth}

    def variants(self, rule: Rule) -> list[Rule]:
        """``rule``, and the same with its seeded members at each other seed."""
        out = [rule]
        for seed in self.seeds:
            members = tuple(seeded(m, seed) if seeded(m, seed) in self.rows else m
                            for m in rule.members)
            if members != rule.members:
                out.append(Rule(members, rule.aggregator, rule.weights))
        return out

    def tau_at(self, rule: Rule) -> float:
        """The mean weighted tau over the targets of exactly ``rule`` (no variants)."""
        key = ("tau", rule)
        if key not in self._cache:
            self._cache[key] = float(np.mean([
                weighted_tau(x, y) for x, y in target_pairs(self.scores(rule), self.truth)]))
        return self._cache[key]

    def mean_tau(self, rule: Rule) -> float:
        """The mean weighted tau of ``rule`` over the targets, averaged over its variants."""
        return float(np.mean([self.tau_at(v) for v in self.variants(rule)]))

    def replicates(self, rule: Rule) -> np.ndarray:
        """(n_boot,) the mean weighted tau over the targets (and the variants) on each
        draw of models."""
        key = ("boot", rule)
        if key not in self._cache:
            self._cache[key] = np.mean([
                np.nanmean(bootstrap_taus(target_pairs(self.scores(v), self.truth),
                                          self.draws), axis=1)
                for v in self.variants(rule)], axis=0)
        return self._cache[key]

    def worse_beyond_noise(self, rule: Rule, reference: Rule) -> bool:
        """Whether the paired 95 % interval of tau(rule) - tau(reference) is below 0."""
        diff = self.replicates(rule) - self.replicates(reference)
        diff = diff[np.isfinite(diff)]
        return diff.size > 1 and float(np.percentile(diff, 97.5)) < 0


def references(rule: Rule) -> list[Rule]:
    """What a rule must not be worse than: each of its members alone, and NCTI."""
    return [Rule((m,)) for m in dict.fromkeys((*rule.members, ANCHOR))]


def admissible(rule: Rule, evidence: Sequence[Evidence]) -> bool:
    """Never worse than a member or NCTI beyond the noise on any of ``evidence``."""
    return not any(ev.worse_beyond_noise(rule, ref) for ev in evidence
                   for ref in references(rule) if ref != rule)


def choose(rules: Sequence[Rule], evidence: Sequence[Evidence]) -> tuple[Rule, bool]:
    """(rule, admissible): the admissible rule computable on every collection of
    ``evidence`` with the best mean of their mean taus (then the fewest members); when
    none is admissible, the best mean, flagged."""
    pool = [r for r in rules if all(ev.computable(r) for ev in evidence)]
    if not pool:
        raise ValueError(f"no candidate is computable on {[ev.name for ev in evidence]}")

    def key(rule: Rule) -> tuple[float, int]:
        return (float(np.mean([ev.mean_tau(rule) for ev in evidence])), -len(rule.members))

    ranked = sorted(pool, key=key, reverse=True)
    for rule in ranked:
        if admissible(rule, evidence):
            return rule, True
    return ranked[0], False


def leave_one_collection_out(rules: Sequence[Rule], evidence: Sequence[Evidence]
                             ) -> dict[str, dict]:
    """Per held-out collection: the rule chosen on the others, and how it does there."""
    out = {}
    for held in evidence:
        others = [ev for ev in evidence if ev is not held]
        rule, ok = choose([r for r in rules if held.computable(r)], others)
        out[held.name] = {"rule": rule, "admissible_on_others": ok,
                          "tau": held.mean_tau(rule),
                          "admissible_here": admissible(rule, [held])}
    return out
