"""``--unit auto``: choose the fine-tuning unit by the neural-collapse criterion.

Li et al. (2023, §3.3) conjecture that "the topmost transfer accuracy can be achieved by
selectively fine-tuning the layers such that the features of penultimate layer are the most
collapsed on the downstream training data". We turn that into a rule: for every candidate
unit, run a SHORT Layer FT (``probe_epochs``, default 1, on the same seeded training split),
measure NC1 of the penultimate features on the training split, and pick the unit with the
smallest NC1 (ties: the earlier unit). Its cost is ``probe_epochs / epochs`` of trying every
unit fully; benchmarks/bench_finetune.py measures how often it agrees with the best unit.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch.nn as nn
from torch.utils.data import Dataset

from nctk.finetune.train import TrainConfig, finetune
from nctk.finetune.units import find_units, resolve_unit


@dataclass
class UnitSelection:
    """The unit chosen by the NC criterion and the probe NC1 of every candidate."""

    unit: str
    index: int
    nc1: dict[str, float]
    probe_epochs: int
    seconds: float

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def select_unit(model: nn.Module, train_data: Dataset, *,
                candidates: Sequence[int | str] | None = None,
                unit_names: list[str] | None = None, config: TrainConfig | None = None,
                probe_epochs: int = 1) -> UnitSelection:
    """Pick the unit whose short Layer FT gives the lowest penultimate NC1 (train split).

    Args:
        model: pre-trained network (not modified).
        train_data: downstream training dataset of ``(input, label)``.
        candidates: unit numbers or names to try; default every unit of the model.
        unit_names: explicit unit sub-module names (architectures not auto-discovered).
        config: training settings; ``epochs`` is replaced by ``probe_epochs`` and early
            stopping is off for the probes.
        probe_epochs: length of each probe run.
    """
    started = time.perf_counter()
    config = config or TrainConfig()
    probe = dataclasses.replace(config, epochs=probe_epochs, patience=None)
    units = find_units(model, unit_names)
    chosen = [resolve_unit(units, c, type(model).__name__) for c in candidates] if candidates \
        else units
    nc1 = {}
    for unit in chosen:
        result = finetune(model, train_data, method="layer", unit=unit.name,
                          unit_names=unit_names, config=probe)
        nc1[unit.name] = result.train_nc1
    best = min(chosen, key=lambda u: (nc1[u.name], u.index))
    return UnitSelection(unit=best.name, index=best.index, nc1=nc1, probe_epochs=probe_epochs,
                         seconds=time.perf_counter() - started)
