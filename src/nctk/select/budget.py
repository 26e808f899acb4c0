"""The budget of ``nctk select`` and the plan it buys: shortlist size and rungs.

Units. Compute is counted in **model-epochs**: one epoch of fine-tuning of one model (its
training steps and its validation pass). Brute force, fine-tuning every one of the M models
of the pool for the E epochs the pick will get, costs M x E. A budget is either

* a number B of E-epoch fine-tuning runs of the average model: B x E model-epochs (``3``
  of a 12-model pool is a quarter of brute force), or
* wall time (``90s``, ``20m``, ``1h``, ``1.5h``), turned into model-epochs with the
  seconds per epoch of the average model of the pool, measured on real training steps
  as ``nctk finetune``'s estimate does (:mod:`nctk.finetune.estimate`).

The zero-training phase is counted too: scoring a model needs one forward pass over the
N labelled images, and an epoch is a forward and backward pass over the n_train training
images plus a forward pass over the n_val validation images. With a backward pass costing
two forward passes (the usual ratio of their arithmetic, e.g. Kaplan et al. 2020), one
model's zero-training phase is N / (3 n_train + n_val) model-epochs, about 0.4 at a
validation fraction of 0.2. It is charged at that rate even when the features come from
the cache (the cache was paid for once).

The plan. The rungs are the geometric ladder E / eta^(K-1), ..., E / eta, E (rounded,
at least one epoch, distinct): the longest ladder the run admits. Successive halving with
n candidates costs sum_k n_k (r_k - r_{k-1}) model-epochs (n_k as in
:func:`nctk.select.schedule.rung_sizes`, r_{-1} = 0). The shortlist is the largest n
(at most M) whose cost, with the zero-training phase of all M models, fits in the budget.
Below n = 2 there is nothing to select: the budget is too small, and the error names the
smallest budget that works.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

from nctk.errors import InputError
from nctk.select.schedule import rung_sizes

#: Seconds per unit of a wall-time budget.
TIME_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
#: The arithmetic of a backward pass, in forward passes.
BACKWARD_FORWARDS = 2.0

_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([smh]?)\s*$")


@dataclass(frozen=True)
class Budget:
    """A parsed budget: ``runs`` (E-epoch runs of the average model) or ``seconds``."""

    runs: float | None = None
    seconds: float | None = None

    def describe(self) -> str:
        if self.runs is not None:
            return f"{self.runs:g} fine-tuning run{'s' if self.runs != 1 else ''}"
        from nctk.finetune.estimate import format_duration

        return f"{self.seconds:g} s" if self.seconds < 90 else format_duration(self.seconds)


def parse_budget(text: str | float) -> Budget:
    """``"3"`` / ``3`` -> 3 runs; ``"90s"``, ``"20m"``, ``"1.5h"`` -> seconds.

    Raises:
        InputError: not a number with an optional unit s/m/h, or not > 0.
    """
    if isinstance(text, bool):
        raise InputError(f"expected a number of runs or a time such as 20m, got {text!r}",
                         parameter="budget")
    if isinstance(text, int | float):
        value, unit = float(text), ""
    else:
        match = _BUDGET.match(str(text))
        if not match:
            raise InputError(f"expected a number of runs (e.g. 3) or a time (90s, 20m, 1h), "
                             f"got {text!r}", parameter="budget")
        value, unit = float(match.group(1)), match.group(2)
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"must be > 0, got {text!r}", parameter="budget")
    return Budget(seconds=value * TIME_UNITS[unit]) if unit else Budget(runs=value)


def ladder(epochs: int, eta: int) -> list[int]:
    """The rung epochs: round(E / eta^j) for j = K-1, ..., 0 with eta^(K-1) <= E, each at
    least 1, distinct; the last is E."""
    if epochs < 1:
        raise InputError(f"epochs must be >= 1, got {epochs}", parameter="epochs")
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise InputError(f"eta must be an integer >= 2, got {eta!r}", parameter="eta")
    powers = [1]
    while powers[-1] * eta <= epochs:
        powers.append(powers[-1] * eta)
    rungs = [max(1, round(epochs / p)) for p in reversed(powers)]
    return sorted(set(rungs))


def halving_cost(candidates: int, rungs: list[int], eta: int) -> int:
    """Model-epochs of successive halving: sum_k n_k (r_k - r_{k-1})."""
    sizes = rung_sizes(candidates, len(rungs), eta)
    return sum(n * (r - prev) for n, r, prev in zip(sizes, rungs, [0, *rungs[:-1]],
                                                    strict=True))


def binomial_margin(validation: int) -> Callable[[float], float]:
    """The standard error of the difference of two independent accuracies near p, each
    on ``validation`` samples: p -> sqrt(2 p (1 - p) / n)."""
    return lambda p: math.sqrt(2 * p * (1 - p) / validation)


def zero_training_epochs(samples: int, train: int, val: int) -> float:
    """Model-epochs of one model's zero-training phase: N / (3 n_train + n_val)."""
    return samples / ((1 + BACKWARD_FORWARDS) * train + val)


@dataclass(frozen=True)
class Plan:
    """What the budget buys.

    Attributes:
        pool: M, models in the pool.
        epochs: E, the pick's fine-tuning (the last rung).
        eta: the halving factor.
        shortlist: n, candidates fine-tuned at the first rung.
        rungs: the rung epochs; ``sizes``: models per rung.
        budget_epochs: the budget in model-epochs.
        zero_epochs: model-epochs of the zero-training phase (all M models).
        halving_epochs: model-epochs of successive halving (at most; failures end early).
        brute_force_epochs: M x E.
        epoch_seconds: measured seconds per epoch of the average model (of the shortlist
            for a budget in runs, of the pool for a wall-time budget; None if unmeasured).
    """

    pool: int
    epochs: int
    eta: int
    shortlist: int
    rungs: list[int]
    sizes: list[int]
    budget_epochs: float
    zero_epochs: float
    halving_epochs: int
    brute_force_epochs: int
    epoch_seconds: float | None = None

    @property
    def cost_fraction(self) -> float:
        """(zero-training + successive halving) / brute force, as planned."""
        return (self.zero_epochs + self.halving_epochs) / self.brute_force_epochs

    def to_json(self) -> dict:
        return asdict(self) | {"cost_fraction": self.cost_fraction}


def budget_epochs(budget: Budget, epochs: int, epoch_seconds: float | None) -> float:
    """The budget in model-epochs (wall time needs the average model's epoch seconds)."""
    if budget.runs is not None:
        return budget.runs * epochs
    if epoch_seconds is None or not epoch_seconds > 0:
        raise InputError("a wall-time budget needs the measured seconds per epoch",
                         parameter="budget")
    return budget.seconds / epoch_seconds


def plan(budget: Budget, *, pool: int, epochs: int, eta: int, samples: int, train: int,
         val: int, epoch_seconds: float | None = None) -> Plan:
    """The largest shortlist whose successive halving fits the budget (module docstring).

    Args:
        budget: from :func:`parse_budget`.
        pool: M, models in the pool (>= 2).
        epochs: E; eta: the halving factor.
        samples, train, val: images scored by the zero-training phase, trained on and
            validated on per epoch.
        epoch_seconds: seconds per epoch of the average model, measured (needed for a
            wall-time budget; recorded otherwise).

    Raises:
        InputError: the budget cannot pay for two candidates; the message names the
            smallest budget that would.
    """
    if pool < 2:
        raise InputError(f"selection needs at least 2 models, got {pool}", parameter="models")
    rungs = ladder(epochs, eta)
    available = budget_epochs(budget, epochs, epoch_seconds)
    zero = pool * zero_training_epochs(samples, train, val)
    fits = [n for n in range(2, pool + 1) if zero + halving_cost(n, rungs, eta) <= available]
    if not fits:
        needed = zero + halving_cost(2, rungs, eta)
        raise InputError(f"{budget.describe()} is too small: the zero-training phase of "
                         f"{pool} models and two candidates on the rungs {rungs} need "
                         f"{needed:.3g} model-epochs, a budget of at least "
                         f"{_minimum(needed, budget, epochs, epoch_seconds)}", parameter="budget")
    n = max(fits)
    return Plan(pool, epochs, eta, n, rungs, rung_sizes(n, len(rungs), eta), available, zero,
                halving_cost(n, rungs, eta), pool * epochs, epoch_seconds)


def _minimum(needed: float, budget: Budget, epochs: int, epoch_seconds: float | None) -> str:
    """The smallest budget, in the unit the user gave, that pays ``needed`` model-epochs."""
    if budget.runs is not None:
        return f"{math.ceil(needed / epochs * 100) / 100:g} (runs of {epochs} epochs)"
    seconds = math.ceil(needed * epoch_seconds)
    return f"{seconds}s"
