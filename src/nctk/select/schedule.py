"""Synchronous successive halving over a shortlist, as ONE pure function.

Successive halving (Jamieson & Talwalkar 2016; the bracket of Hyperband, Li et al. 2018):
n candidates are trained to the first rung r_0, the best ``n_1 = max(1, floor(n_0 / eta))``
go on to r_1, and so on up to r_{K-1} = E, the full run; the best at the last rung is the
pick. Here the rungs are prefixes of one E-epoch run (``nctk.finetune.finetune(...,
stop_after=r)``), so a model promoted to rung k has cost r_k epochs in all.

The rung score of a model is what the caller's ``evaluate`` reports, in ``nctk select``
the best validation accuracy up to the rung's epoch. Ties (at every rung; with small
validation sets they are common at the first ones) go to the better zero-training rank,
i.e. the earlier position in ``order``. With a ``margin``, scores closer than it to the
cut of a rung (or to the best score, at the last rung) count as ties too (:func:`promote`):
e.g. the standard error of a difference of two validation accuracies, below which the
validation data cannot tell two models apart. A model whose evaluation fails is dropped at that
rung with its reason; the others go on, and the rung promotes its planned count from the
models that did not fail.

The same function runs the local loop, the Ray tasks (``evaluate`` submits a rung's
runs at once) and the benchmark's replay of recorded learning curves, so all three make
the same decisions from the same scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from nctk.errors import InputError


@dataclass(frozen=True)
class Failure:
    """A run that failed at a rung, with a one-line ``reason``."""

    reason: str


#: ``evaluate(epoch, models)`` -> {model: rung score (higher is better) or Failure}, for
#: every model of ``models`` trained to ``epoch``.
Evaluate = Callable[[int, Sequence[str]], Mapping[str, "float | Failure"]]


@dataclass
class Row:
    """One model of the rung table.

    Attributes:
        model: its name.
        zero_rank: its position in the zero-training order (1 = first).
        scores: its score at each rung it reached, in rung order.
        dropped_at: the rung index (0-based) after which it stopped; None for the models
            of the last rung.
        failure: why it failed, when it did (at rung ``dropped_at``).
        epochs: epochs trained in all (the epoch of the last rung it reached).
    """

    model: str
    zero_rank: int
    scores: list[float] = field(default_factory=list)
    dropped_at: int | None = None
    failure: str | None = None
    epochs: int = 0

    def to_json(self) -> dict:
        return {"model": self.model, "zero_rank": self.zero_rank, "scores": self.scores,
                "dropped_at": self.dropped_at, "failure": self.failure,
                "epochs": self.epochs}


@dataclass
class Schedule:
    """The outcome: rung epochs, planned sizes, one row per model (zero-training order) and
    the pick (None when every model failed)."""

    rungs: list[int]
    sizes: list[int]
    rows: list[Row]
    pick: str | None

    @property
    def epochs_trained(self) -> int:
        """Model-epochs spent: the sum of every model's epochs."""
        return sum(row.epochs for row in self.rows)

    def to_json(self) -> dict:
        return {"rungs": self.rungs, "sizes": self.sizes, "pick": self.pick,
                "epochs_trained": self.epochs_trained,
                "rows": [row.to_json() for row in self.rows]}


def rung_sizes(candidates: int, rungs: int, eta: int) -> list[int]:
    """Models at each rung: n_0 = ``candidates``, n_{k+1} = max(1, floor(n_k / eta))."""
    sizes = [candidates]
    for _ in range(rungs - 1):
        sizes.append(max(1, sizes[-1] // eta))
    return sizes


def _check(order: Sequence[str], rungs: Sequence[int], eta: int) -> None:
    if len(order) < 1 or len(set(order)) != len(order):
        raise InputError(f"needs distinct models, got {list(order)}", parameter="models")
    if not rungs or any(r < 1 for r in rungs) or list(rungs) != sorted(set(rungs)):
        raise InputError(f"rungs must be increasing epochs >= 1, got {list(rungs)}",
                         parameter="rungs")
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise InputError(f"eta must be an integer >= 2, got {eta!r}", parameter="eta")


def _score(value: float | Failure | None) -> float | Failure:
    """A finite score, or the failure it stands for."""
    if value is None:
        return Failure("no score was reported")
    if isinstance(value, Failure):
        return value
    if not math.isfinite(value):
        return Failure(f"score {value} is not finite")
    return float(value)


def promote(scores: Mapping[str, float], zero_rank: Mapping[str, int], keep: int,
            margin: Callable[[float], float] | None = None) -> list[str]:
    """The ``keep`` best models by score, best first; ties go to the better zero rank.

    With ``margin``, a tie is a difference within ``margin(c)`` of the score c of the
    last model kept (the cut): the models above ``c + margin(c)`` are kept, then those
    within the margin of the cut in zero-training order. ``margin`` = None or 0: exact ties.
    """
    ranked = sorted(scores, key=lambda m: (-scores[m], zero_rank[m]))
    if margin is None or not ranked:
        return ranked[:keep]
    cut = scores[ranked[min(keep, len(ranked)) - 1]]
    width = margin(cut)
    above = [m for m in ranked if scores[m] > cut + width]
    tied = sorted((m for m in ranked if abs(scores[m] - cut) <= width),
                  key=lambda m: zero_rank[m])
    return (above + tied)[:keep]


def successive_halving(order: Sequence[str], rungs: Sequence[int], eta: int,
                       evaluate: Evaluate, *,
                       margin: Callable[[float], float] | None = None) -> Schedule:
    """Run successive halving (see the module docstring).

    Args:
        order: the candidates, best zero-training score first (breaks ties).
        rungs: increasing epochs r_0 < ... < r_{K-1}; the last is the full run.
        eta: the halving factor (>= 2).
        evaluate: ``evaluate(epoch, models)`` -> {model: score or :class:`Failure`}.
        margin: score -> the difference below which two scores are a tie (see
            :func:`promote`); None: only equal scores tie.

    Returns:
        The :class:`Schedule`: every model's scores, where it was dropped, the pick.
    """
    _check(order, rungs, eta)
    sizes = rung_sizes(len(order), len(rungs), eta)
    rows = {m: Row(m, rank) for rank, m in enumerate(order, start=1)}
    zero_rank = {m: row.zero_rank for m, row in rows.items()}
    alive = list(order)
    kept: list[str] = []
    for k, epoch in enumerate(rungs):
        reported = evaluate(epoch, list(alive))
        for model in alive:
            row = rows[model]
            row.epochs = epoch
            value = _score(reported.get(model))
            if isinstance(value, Failure):
                row.failure, row.dropped_at = value.reason, k
            else:
                row.scores.append(value)
        scores = {m: rows[m].scores[-1] for m in alive if rows[m].failure is None}
        last = k + 1 == len(rungs)
        kept = promote(scores, zero_rank, 1 if last else sizes[k + 1], margin)
        for model in scores:
            if model not in kept and not last:
                rows[model].dropped_at = k
        alive = kept
        if not kept:
            break
    return Schedule(list(rungs), sizes, list(rows.values()), kept[0] if kept else None)
