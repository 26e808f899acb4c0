"""``--unit auto``: choose the fine-tuning unit by the neural-collapse criterion.

Li et al. (2023, §3.3) conjecture that "the topmost transfer accuracy can be achieved by
selectively fine-tuning the layers such that the features of penultimate layer are the most
collapsed on the downstream training data". We turn that into a rule: for every candidate
unit, run a SHORT Layer FT (``probe_epochs``, default 1, on the same seeded training split),
measure NC1 of the penultimate features on the training split, and pick the unit with the
smallest NC1 (ties: the earlier unit). Its cost is ``probe_epochs / epochs`` of trying every
unit fully; benchmarks/bench_finetune.py measures how often it agrees with the best unit.

How much the choice rests on the samples: NC1 is estimated from the class means and
within-class scatter of the training split, which few samples estimate poorly. The probes'
features are resampled with replacement within each class (a stratified bootstrap,
``BOOTSTRAP_DRAWS`` draws shared by all units), NC1 recomputed per draw, and ``stability``
is the share of draws in which the chosen unit still has the lowest NC1. Below
``STABLE_SHARE`` the choice is within the sampling noise: ``UnitSelection.stable`` is
False and ``nctk finetune`` warns.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch.nn as nn
from torch.utils.data import Dataset

from nctk.finetune.data import encode_dataset
from nctk.finetune.train import TrainConfig, finetune, predict
from nctk.finetune.units import find_units, resolve_unit
from nctk.sampling import train_validation_split

#: Bootstrap draws behind ``stability``; the share below which a choice is called unstable.
BOOTSTRAP_DRAWS = 30
STABLE_SHARE = 0.8


@dataclass
class UnitSelection:
    """The unit chosen by the NC criterion and the probe NC1 of every candidate.

    ``stability``: share of the bootstrap draws of the training split in which the chosen
    unit keeps the lowest NC1; ``train_samples`` and ``smallest_class``: the training
    split's size and its smallest class count, the samples NC1 rests on.
    """

    unit: str
    index: int
    nc1: dict[str, float]
    probe_epochs: int
    seconds: float
    stability: float = 1.0
    train_samples: int = 0
    smallest_class: int = 0

    @property
    def stable(self) -> bool:
        return self.stability >= STABLE_SHARE

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"stable": self.stable}


def penultimate_nc1(features: np.ndarray, codes: np.ndarray) -> float:
    """NC1 = (1/K) tr(Sigma_W Sigma_B^+) of (n, d) features with class codes 0..K-1 (n,),
    accumulated in float64 (:func:`nctk.collapse.metrics.nc1`, as ``collapse.measure``)."""
    from nctk.collapse import metrics
    from nctk.stats import ClassStats

    x64 = np.asarray(features, dtype=np.float64)
    stats = ClassStats(int(codes.max()) + 1, x64.shape[1]).update(x64, codes)
    return float(metrics.nc1(stats.compute()))


def bootstrap_draws(codes: np.ndarray, draws: int, seed: int) -> list[np.ndarray]:
    """``draws`` stratified resamples (with replacement within each class) of the
    indices 0..n-1 of ``codes``, seeded."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(codes == c) for c in np.unique(codes)]
    return [np.concatenate([rng.choice(m, len(m), replace=True) for m in members])
            for _ in range(draws)]


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
    coded, encoded = encode_dataset(train_data)
    train_idx, _ = train_validation_split(encoded.codes, probe.val_fraction, probe.seed)
    codes = encoded.codes[train_idx]
    draws = bootstrap_draws(codes, BOOTSTRAP_DRAWS, probe.seed)
    nc1, resampled = {}, {}
    for unit in chosen:
        result = finetune(model, train_data, method="layer", unit=unit.name,
                          unit_names=unit_names, config=probe, measure_collapse=False)
        device = next(result.network.parameters()).device
        feats, _, _ = predict(result.network, coded, train_idx, probe, device)
        nc1[unit.name] = penultimate_nc1(feats, codes)
        resampled[unit.name] = [penultimate_nc1(feats[d], codes[d]) for d in draws]
    best = min(chosen, key=lambda u: (nc1[u.name], u.index))
    wins = [min(chosen, key=lambda u, k=k: (resampled[u.name][k], u.index)) is best
            for k in range(len(draws))]
    return UnitSelection(unit=best.name, index=best.index, nc1=nc1, probe_epochs=probe_epochs,
                         seconds=time.perf_counter() - started,
                         stability=float(np.mean(wins)), train_samples=len(train_idx),
                         smallest_class=int(np.bincount(codes).min()))
