"""How long a fine-tuning job will take, measured before it starts.

A fine-tuning command is a plan of runs (one run = one method on one unit for some epochs
on some number of training samples). :func:`measure` times the real pieces of a run on
one batch of the real data, on the device the job will use: reading a batch (decoding and
preprocessing), one training step (forward, backward, SGD update) of each method kind in
the plan (Layer FT and SCL FT on the plan's middle unit, standing for every unit), an
evaluation forward pass, and building the network of each kind. :func:`estimate`
multiplies out, per run:

    seconds = setup + epochs × (steps × (t_step + B × t_read)
                                + n_val × (t_read + t_eval))
                    + (n_train + n_test) × (t_read + t_eval)      # NC1 and test passes

It is an estimate: Layer FT on a shallow unit back-propagates further than on the middle
one, early stopping ends runs sooner, and a busy machine times everything slower.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

from nctk.finetune.data import encode_dataset
from nctk.finetune.methods import METHOD_LABELS, FineTuneNet
from nctk.finetune.train import TrainConfig


@dataclass(frozen=True)
class Run:
    """One run of a plan: ``method`` on ``unit`` (None for lp/full) with ``train`` training
    samples and ``evaluated`` samples predicted per epoch (the validation split)."""

    method: str
    unit: str | None
    epochs: int
    train: int
    evaluated: int


@dataclass
class Timings:
    """Measured seconds: a training step per method kind (``step``) and building its
    network (``setup``); reading and evaluating one sample (``read``, ``evaluate``)."""

    step: dict[str, float]
    setup: dict[str, float]
    read: float
    evaluate: float


@dataclass
class Estimate:
    """The estimated seconds of a plan, with the measured step times it rests on."""

    seconds: float
    runs: int
    step_seconds: dict[str, float]
    batch_size: int

    def line(self, device: str = "CPU") -> str:
        steps = ", ".join(f"{METHOD_LABELS[m]} {t:.2g} s" for m, t in self.step_seconds.items())
        return (f"estimated time on this {device}: about {format_duration(self.seconds)} for "
                f"{self.runs} run{'s' if self.runs != 1 else ''} (one training step of "
                f"{self.batch_size} images, measured now: {steps}); fewer epochs (epochs=...), "
                "fewer units (sweep_units=...) or a GPU shorten it")


def format_duration(seconds: float) -> str:
    """``4 h 05 min``, ``12 min``, ``40 s``."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def plan_runs(methods_units: Sequence[tuple[str, str | None]], *, epochs: int,
              samples: int, val_fraction: float) -> list[Run]:
    """The runs of ``(method, unit)`` pairs on ``samples`` training samples, split as the
    training loop splits them (a ``val_fraction`` share for validation)."""
    evaluated = math.ceil(samples * val_fraction) if val_fraction > 0 else 0
    return [Run(m, u, epochs, samples - evaluated, evaluated) for m, u in methods_units]


def measure(model: torch.nn.Module, train_data: Dataset, runs: Sequence[Run],
            config: TrainConfig, unit_names: list[str] | None = None) -> Timings:
    """Time the pieces of the runs (see the module docstring) on a batch of
    ``config.batch_size`` real samples and the job's device; the caller's model and the
    global random state are left untouched."""
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    coded, encoded = encode_dataset(train_data)
    take = np.arange(min(config.batch_size, len(coded)))
    started = time.perf_counter()
    x, y = default_collate([coded[int(i)] for i in take])
    read = (time.perf_counter() - started) / len(take)
    x, y = x.to(device), y.to(device)
    kinds: dict[str, str | None] = {}
    for method in dict.fromkeys(r.method for r in runs):
        units = [r.unit for r in runs if r.method == method]
        kinds[method] = units[len(units) // 2]  # the middle unit stands for all of them
    step, setup = {}, {}
    with torch.random.fork_rng(devices=[]):
        for method, unit in kinds.items():
            started = time.perf_counter()
            net = FineTuneNet(copy.deepcopy(model), encoded.num_classes, method, unit,
                              unit_names).to(device)
            setup[method] = time.perf_counter() - started
            step[method] = _time_step(net, x, y, config)
        net.eval()
        with torch.no_grad():
            started = time.perf_counter()
            net(x)
            _synchronize(device)
            evaluate = (time.perf_counter() - started) / len(take)
    return Timings(step, setup, read, evaluate)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_step(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
               config: TrainConfig) -> float:
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    net.train()
    times = []
    for _ in range(2):
        started = time.perf_counter()
        loss = F.cross_entropy(net(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _synchronize(x.device)
        times.append(time.perf_counter() - started)
        if times[0] > 1.0:  # long steps are already warm enough to time
            break
    return min(times)


def epoch_seconds(run: Run, timings: Timings, *, batch_size: int) -> float:
    """Seconds of one epoch of ``run``: its training steps (reading each batch) and its
    validation pass."""
    steps = run.train // batch_size + (run.train % batch_size > 1)
    batch = min(batch_size, run.train)
    return (steps * (timings.step[run.method] + batch * timings.read)
            + run.evaluated * (timings.read + timings.evaluate))


def estimate(runs: Sequence[Run], timings: Timings, *, batch_size: int,
             test_samples: int = 0) -> Estimate:
    """Seconds of ``runs`` from measured ``timings`` (see the module docstring);
    ``test_samples``: the test set predicted once at the end of every run."""
    per_sample = timings.read + timings.evaluate
    total = 0.0
    for run in runs:
        total += (timings.setup[run.method]
                  + run.epochs * epoch_seconds(run, timings, batch_size=batch_size))
        total += (run.train + test_samples) * per_sample
    return Estimate(total, len(runs), dict(timings.step), batch_size)


def estimate_plan(model: torch.nn.Module, train_data: Dataset, runs: Sequence[Run],
                  config: TrainConfig, *, unit_names: list[str] | None = None,
                  test_samples: int = 0) -> Estimate:
    """:func:`measure` then :func:`estimate`."""
    timings = measure(model, train_data, runs, config, unit_names)
    return estimate(runs, timings, batch_size=config.batch_size, test_samples=test_samples)
