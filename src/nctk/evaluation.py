"""How well a transferability score ranks models: rank correlations with the ground truth.

The protocol of the NCTI and SFDA papers (docs/evaluation.md): pair each model's
score with its fine-tuned accuracy by model name and report Vigna's weighted Kendall tau
exactly as ``scipy.stats.weightedtau(scores, truth)`` computes it (hyperbolic weigher
1/(r+1), ranks from the data, additive weights; tau_w = mean of the two one-sided tau's),
beside Kendall's tau-b, Spearman's rho, Pearson's r and the top-1 relative accuracy
(rel@1: ground truth of the top-scored model / best ground truth).

Undefined statistics are NaN, never an exception: a correlation is NaN when there are fewer
than two models, when the scores or the ground truth contain NaN, or when either is
constant (no ordering to compare). :func:`undefined_reason` says which of these applies.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nctk.errors import InputError

#: The keys of :func:`evaluate`'s result, in display order.
STATISTICS = ("weighted_tau", "kendall_tau", "spearman", "pearson", "top1_relative")


def paired_arrays(scores: Mapping[str, float], truth: Mapping[str, float]
                  ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Pair scores with ground truth by model name, in the order of ``scores``.

    Returns:
        (models, x, y): the model names, their (M,) float64 scores and (M,) ground truth.

    Raises:
        InputError: when ``scores`` is empty or the ground truth lacks a scored model
            (extra ground-truth entries are ignored).
    """
    models = list(scores)
    if not models:
        raise InputError("no scores to evaluate", array="scores")
    missing = [m for m in models if m not in truth]
    if missing:
        raise InputError(f"no value for model(s) {missing}", array="ground truth")
    x = np.array([float(scores[m]) for m in models], dtype=np.float64)
    y = np.array([float(truth[m]) for m in models], dtype=np.float64)
    return models, x, y


def undefined_reason(scores: Mapping[str, float], truth: Mapping[str, float]) -> str | None:
    """Why the correlations of :func:`evaluate` are NaN, or None when they are defined."""
    _, x, y = paired_arrays(scores, truth)
    return _undefined(x, y)


def _undefined(x: np.ndarray, y: np.ndarray) -> str | None:
    if x.size < 2:
        return f"only {x.size} model; correlations need at least 2"
    if not np.isfinite(x).all():
        return "some scores are NaN or infinite"
    if not np.isfinite(y).all():
        return "some ground-truth values are NaN or infinite"
    if np.all(x == x[0]):
        return "the scores are constant (all models tie)"
    if np.all(y == y[0]):
        return "the ground truth is constant"
    return None


def weighted_tau(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """``scipy.stats.weightedtau(x, y).statistic`` as a float, NaN where undefined.

    Args:
        x: (M,) scores. y: (M,) ground truth, paired by position.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if _undefined(x, y):
        return math.nan
    from scipy import stats  # here: scipy.stats takes ~0.8 s; rank needs it only with truth

    return float(stats.weightedtau(x, y).statistic)


def top1_relative(x: np.ndarray, y: np.ndarray) -> float:
    """rel@1 of the NCTI repository's evaluation: y of the top-scored model / max(y).

    Ties in the score go to the first model in input order (a stable sort, as the
    reference). NaN when a score is NaN, when there is no model, or when max(y) <= 0
    (the ratio has no meaning for non-positive accuracies).
    """
    if x.size == 0 or not np.isfinite(x).all() or not np.isfinite(y).all():
        return math.nan
    best = float(y.max())
    if best <= 0:
        return math.nan
    top = int(np.argsort(-x, kind="stable")[0])
    return float(y[top]) / best


def evaluate(scores: Mapping[str, float], truth: Mapping[str, float]) -> dict[str, float]:
    """Rank correlations between one method's scores and the ground truth.

    Args:
        scores: model -> score (higher = predicted more transferable).
        truth: model -> fine-tuned accuracy; must cover every scored model.

    Returns:
        ``{weighted_tau, kendall_tau, spearman, pearson, top1_relative}`` as plain floats:
        ``scipy.stats.weightedtau(x, y)`` (Vigna 2015, the papers' protocol),
        ``scipy.stats.kendalltau`` (tau-b), ``scipy.stats.spearmanr``,
        ``scipy.stats.pearsonr`` and rel@1 (:func:`top1_relative`). The correlations are
        NaN where :func:`undefined_reason` is not None.
    """
    _, x, y = paired_arrays(scores, truth)
    result = {"top1_relative": top1_relative(x, y)}
    if _undefined(x, y):
        result.update(weighted_tau=math.nan, kendall_tau=math.nan, spearman=math.nan,
                      pearson=math.nan)
    else:
        from scipy import stats

        with warnings.catch_warnings():  # two models: scipy warns about the p-values only
            warnings.simplefilter("ignore")
            result.update(
                weighted_tau=weighted_tau(x, y),
                kendall_tau=float(stats.kendalltau(x, y).statistic),
                spearman=float(stats.spearmanr(x, y).statistic),
                pearson=float(stats.pearsonr(x, y).statistic))
    return {key: result[key] for key in STATISTICS}


def by_weighted_tau(evaluation: Mapping[str, Mapping[str, float | None]]) -> list[str]:
    """The keys of ``evaluation`` (method -> :func:`evaluate`), best weighted tau first;
    undefined ones (NaN or None) last; ties keep the given order. Every table of
    evaluations (terminal and report) lists its rows in this order."""
    def tau(name: str) -> float:
        value = evaluation[name].get("weighted_tau")
        return -math.inf if value is None or math.isnan(value) else float(value)

    return sorted(evaluation, key=tau, reverse=True)  # stable: ties keep their order


def bootstrap_weighted_tau(scores: Mapping[str, float], truth: Mapping[str, float], *,
                           n_boot: int = 2000, seed: int = 0, level: float = 0.95
                           ) -> dict[str, Any]:
    """Percentile bootstrap confidence interval of the weighted tau over models.

    Each replicate draws M models with replacement (numpy ``default_rng(seed)``) and
    computes ``scipy.stats.weightedtau`` on the drawn (score, truth) pairs. A model drawn
    twice is an exact tie in both variables: the pair contributes nothing to the numerator
    and is left out of both normalisers, exactly as weightedtau treats ties. A replicate
    whose scores or ground truth are constant (e.g. one model drawn M times) has no
    ordering; it is counted in ``n_undefined`` and left out of the interval.

    Returns:
        ``{estimate, low, high, level, std, n_boot, n_undefined, seed}``: the full-sample
        tau, the (1-level)/2 and (1+level)/2 percentiles and standard deviation of the
        defined replicates (NaN when fewer than two are defined).
    """
    if n_boot < 1:
        raise InputError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    _, x, y = paired_arrays(scores, truth)
    estimate = weighted_tau(x, y)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, x.size, size=(n_boot, x.size))
    taus = np.array([weighted_tau(x[idx], y[idx]) for idx in draws])
    defined = taus[np.isfinite(taus)]
    if defined.size >= 2:
        low, high = np.percentile(defined, [50 * (1 - level), 50 * (1 + level)])
        std = float(defined.std(ddof=1))
    else:
        low = high = std = math.nan
    return {"estimate": estimate, "low": float(low), "high": float(high), "level": level,
            "std": std, "n_boot": n_boot, "n_undefined": int(taus.size - defined.size),
            "seed": seed}


def leave_one_out_weighted_tau(scores: Mapping[str, float], truth: Mapping[str, float]
                               ) -> dict[str, Any]:
    """Weighted tau with each model removed in turn (how much one model sways the result).

    Returns:
        ``{full, per_removed: {model: tau without it}, mean, worst, worst_removed}``;
        ``mean`` and ``worst`` (the minimum) ignore NaN removals; ``worst_removed`` names
        the model whose removal gives the worst tau (None if every removal is NaN).
    """
    models, x, y = paired_arrays(scores, truth)
    keep = ~np.eye(len(models), dtype=bool)
    per_removed = {m: weighted_tau(x[keep[i]], y[keep[i]]) for i, m in enumerate(models)}
    values = np.array(list(per_removed.values()))
    finite = np.isfinite(values)
    if finite.any():
        worst_index = int(np.flatnonzero(finite)[np.argmin(values[finite])])
        worst, worst_removed = float(values[worst_index]), models[worst_index]
        mean = float(values[finite].mean())
    else:
        worst, worst_removed, mean = math.nan, None, math.nan
    return {"full": weighted_tau(x, y), "per_removed": per_removed, "mean": mean,
            "worst": worst, "worst_removed": worst_removed}
