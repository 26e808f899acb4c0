"""Real small models for the pool-run tests: the shipped demo networks, and wrappers that
misbehave on purpose (a worker process that dies on its first attempt, a model that always
raises, a slow model). Ray workers cannot import this file, so the Ray tests ship it by
value (``cloudpickle.register_pickle_by_value``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from torch import nn

from nctk.demo.assets import SUBSET, asset
from nctk.demo.run import image_transform, load_demo_model
from nctk.extract import ModelAdapter, load_dataset, subsample_per_class

#: The demo members the tests rank (fast ones of every family).
NAMES = ("cnn_small", "cnn_small_1ep", "cnn_wide", "resnet_tiny", "mobilenet_tiny", "mlp")


def demo_data(per_class: int = 10):
    """The shipped target subset (5 classes), ``per_class`` images of each."""
    return subsample_per_class(load_dataset(f"npz:{asset(SUBSET)}"), per_class, seed=0)


def adapter(module: nn.Module, name: str, head: nn.Module) -> ModelAdapter:
    return ModelAdapter.from_module(module, name=name, transform=image_transform(), head=head)


def demo_adapters(names=NAMES) -> list[ModelAdapter]:
    out = []
    for name in names:
        module = load_demo_model(name)
        out.append(adapter(module, name, module.head))
    return out


class Wrapped(nn.Module):
    """A demo network with a side effect before each forward (see the subclasses)."""

    def __init__(self, name: str, marker: str):
        super().__init__()
        self.inner = load_demo_model(name)
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.before()
        return self.inner(x)

    def before(self) -> None:
        raise NotImplementedError

    def attempts(self) -> int:
        path = Path(self.marker)
        return len(path.read_text().splitlines()) if path.exists() else 0

    def log_attempt(self) -> None:
        with open(self.marker, "a") as handle:
            handle.write(f"{os.getpid()}\n")


class DiesOnFirstAttempt(Wrapped):
    """The process running it exits abruptly the first time (no marker file yet)."""

    def before(self) -> None:
        if not Path(self.marker).exists():
            self.log_attempt()
            os._exit(1)


class AlwaysRaises(Wrapped):
    """Raises on every attempt; the marker counts the attempts."""

    def before(self) -> None:
        self.log_attempt()
        raise RuntimeError("boom in forward")


class Slow(Wrapped):
    """Sleeps ``marker`` seconds (a number here) before each forward."""

    def before(self) -> None:
        time.sleep(float(self.marker))


def wrapped_adapter(cls: type[Wrapped], name: str, marker: str, as_name: str | None = None
                    ) -> ModelAdapter:
    module = cls(name, marker)
    return adapter(module, as_name or name, module.inner.head)


def assigned_resources(_shared, _item) -> dict:
    """What Ray reserved for the task running this (a Ray task body)."""
    import ray

    return dict(ray.get_runtime_context().get_assigned_resources())
