"""Combining several scores of the same pool of models into one (``recommended``'s rules).

Every aggregator takes ``scores``: member -> {model: score} (higher = better, every member
over the same M models, finite) and returns (model -> combined score, higher = better;
model -> {member: its score, member_rank: its rank, 1 = best, ties averaged}).

* ``mean_rank``: (1/|S|) sum_s r_s(m) (or the ``weights``-weighted mean), r_s(m) the
  ascending rank of model m by member s (1 = lowest, M = highest, ties averaged,
  ``scipy.stats.rankdata``): the Borda count, in [1, M];
* ``median_rank``: the median over the members of r_s(m) (with three members one member
  that ranks a family of models backwards is outvoted);
* ``z_mean``: (1/|S|) sum_s z_s(m), z_s(m) = (s(m) - mean_m' s(m')) / std_m' s(m') with the
  population standard deviation over the pool (a member equal for every model contributes
  0): the members' scores on a common scale, so a member that barely separates two models
  moves them less than one that separates them widely.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nctk.transfer.registry import Components

AGGREGATORS = ("mean_rank", "median_rank", "z_mean")
#: Each aggregator in words ("<words> of ncti, nleep"), for notes and help.
IN_WORDS = {"mean_rank": "mean rank", "median_rank": "median rank", "z_mean": "mean z-score"}
RANK_SUFFIX = "_rank"


def _matrix(scores: Mapping[str, Mapping[str, float]]) -> tuple[list[str], np.ndarray]:
    """(models, (members, M) float64 scores), models in the first member's order."""
    models = list(next(iter(scores.values())))
    return models, np.array([[values[m] for m in models] for values in scores.values()],
                            dtype=np.float64)


def ascending_ranks(values: np.ndarray) -> np.ndarray:
    """(members, M) ascending ranks of each row, ties averaged."""
    from scipy.stats import rankdata  # here: scipy.stats takes ~0.8 s to import

    return rankdata(values, axis=1)


def member_components(scores: Mapping[str, Mapping[str, float]]) -> dict[str, Components]:
    """model -> {member: score, member_rank: 1-based rank, 1 = best, ties averaged}."""
    models, values = _matrix(scores)
    descending = len(models) + 1 - ascending_ranks(values)
    return {m: {key: value for i, s in enumerate(scores)
                for key, value in ((s, float(values[i, j])),
                                   (s + RANK_SUFFIX, float(descending[i, j])))}
            for j, m in enumerate(models)}


def rank_average(scores: Mapping[str, Mapping[str, float]],
                 weights: Sequence[float] | None = None
                 ) -> tuple[dict[str, float], dict[str, Components]]:
    """Mean (or ``weights``-weighted mean) ascending rank over the members (Borda)."""
    models, values = _matrix(scores)
    combined = np.average(ascending_ranks(values), axis=0, weights=weights)
    return dict(zip(models, combined.tolist(), strict=True)), member_components(scores)


def median_rank(scores: Mapping[str, Mapping[str, float]]
                ) -> tuple[dict[str, float], dict[str, Components]]:
    """Median ascending rank over the members."""
    models, values = _matrix(scores)
    combined = np.median(ascending_ranks(values), axis=0)
    return dict(zip(models, combined.tolist(), strict=True)), member_components(scores)


def z_mean(scores: Mapping[str, Mapping[str, float]]
           ) -> tuple[dict[str, float], dict[str, Components]]:
    """Mean over the members of the z-scored scores (population std over the pool)."""
    models, values = _matrix(scores)
    centred = values - values.mean(axis=1, keepdims=True)
    std = values.std(axis=1, keepdims=True)
    z = np.divide(centred, std, out=np.zeros_like(centred), where=std > 0)
    return dict(zip(models, z.mean(axis=0).tolist(), strict=True)), member_components(scores)


def aggregate(scores: Mapping[str, Mapping[str, float]], aggregator: str
              ) -> tuple[dict[str, float], dict[str, Components]]:
    """``scores`` combined by the aggregator named ``aggregator`` (:data:`AGGREGATORS`)."""
    functions = {"mean_rank": rank_average, "median_rank": median_rank, "z_mean": z_mean}
    if aggregator not in functions:
        raise ValueError(f"unknown aggregator {aggregator!r}; one of {AGGREGATORS}")
    return functions[aggregator](scores)
