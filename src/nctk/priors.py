"""Data-free priors for ranking models: one number per model, higher = better, no target data.

A prior is what one would rank by without looking at the target at all: a model's ImageNet
top-1, its accuracy on its own source task, its mean accuracy on other targets, its size.
On the published benchmarks such priors rival the transferability estimators
(docs/methods-recommended.md), so ``nctk rank`` takes one and the ``recommended`` method
averages it with the estimators' ranks. Two sources:

* a JSON file ``{model: value}`` (``prior=FILE.json``; ``nctk rank --prior FILE.json``),
  validated like a ground truth (a finite number for every model of the pool; exit 2 with
  one line otherwise);
* automatically, the ``source_accuracy`` recorded in every feature file of the pool (nctk
  records torchvision's ImageNet-1K acc@1 from the weights' metadata when it extracts
  features from a ``torchvision:`` spec, offline). A pool where only some files carry it
  gets no automatic prior, with a note naming the files without one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nctk.io import load_ground_truth

RECORDED_SOURCE = ("source_accuracy recorded in the feature files (each model's accuracy on "
                   "its source task: for torchvision weights the ImageNet-1K acc@1 of their "
                   "metadata, for lite: models the published top-1 of their checkpoints, for "
                   "demo models their source test accuracy)")


class Scored(Protocol):
    """A model of a pool as the priors see it: a FeatureFile or an nctk.scale ModelRecord."""

    name: str
    source_accuracy: float | None


@dataclass(frozen=True)
class Prior:
    """A data-free prior over a pool.

    Attributes:
        values: model -> value, higher = better.
        source: where the values came from, in words.
    """

    values: dict[str, float]
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "values": dict(self.values)}


def load_prior(path: str | os.PathLike, models: Sequence[str] | None = None) -> Prior:
    """Read ``{model: value}`` JSON; every model of ``models`` needs a finite value."""
    values = load_ground_truth(path, models, what="prior value")
    if models is not None:
        values = {m: values[m] for m in models}
    return Prior(values, f"prior={path}")


def recorded_prior(pool: Sequence[Scored]) -> tuple[Prior | None, str | None]:
    """The prior recorded in the feature files, or None with a note when some lack it."""
    missing = [f.name for f in pool if f.source_accuracy is None]
    if not pool:
        return None, None
    if not missing:
        return Prior({f.name: float(f.source_accuracy) for f in pool}, RECORDED_SOURCE), None
    if len(missing) == len(pool):
        return None, None
    return None, (f"no automatic prior: {len(missing)} of {len(pool)} models record no "
                  f"source accuracy ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}"
                  "); pass prior=FILE.json")


def resolve_prior(path: str | os.PathLike | None, pool: Sequence[Scored]
                  ) -> tuple[Prior | None, str | None]:
    """The prior file ``path`` when given, else the recorded prior; (prior or None, note or
    None)."""
    if path is not None:
        return load_prior(path, [f.name for f in pool]), None
    return recorded_prior(pool)
