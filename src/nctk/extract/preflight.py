"""Checks on every model of a run before any extraction starts.

A mistake in the fifth model spec of a run (a typo, weights that are not cached, a
checkpoint that does not load, a model that cannot take the input size, two models with
the same name) should cost seconds, not the extraction of the first four. :func:`check_models`
loads each model once, one at a time on the CPU (or as Ray tasks, side by side, with the
Ray executor), runs one real image of the dataset through its preprocessing and forward
pass, and drops it again; the first problem (by position) is an
:class:`~nctk.errors.InputError` naming the model by its position and spec.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from nctk.errors import InputError, describe_exception
from nctk.extract.datasets import LabelledImages
from nctk.extract.models import (
    ModelAdapter,
    TrustedCheckpointWarning,
    load_model,
    split_name,
    warn_trusted,
)

#: How many leading samples are tried for a readable probe image.
PROBE_CANDIDATES = 16


def check_models(models: Sequence[str | ModelAdapter | torch.nn.Module], dataset: LabelledImages, *,
                 image_size: int | None = None, layers: Sequence[str] | str = (),
                 executor: Any = None, **load_options: Any) -> list[str]:
    """Load and try every model; return their names (feature-file stems), in order.

    Args:
        models: model specs (see :func:`~nctk.extract.load_model`) or adapters.
        dataset: the images the run will extract; one readable image of it is the probe.
        image_size: as for :func:`~nctk.extract.load_model`.
        layers: the intermediate layers the run asks for (checked to exist).
        executor: a remote executor (:class:`nctk.scale.RayExecutor`, entered) checks the
            models as tasks, side by side, where they will run (their weights load from
            the workers' caches); otherwise they are checked here, one at a time.
        **load_options: further arguments of :func:`~nctk.extract.load_model`.

    Raises:
        InputError: ``"model I of N (SPEC): <problem>"`` for the first model that cannot
            be loaded, lacks a layer or fails on the probe image; or two models with the
            same name (with the ``NAME=SPEC`` way to rename one).
    """
    job = ProbeJob(probe_image(dataset), image_size, layers, dataset.transform,
                   dict(load_options))
    where = [f"model {i} of {len(models)} ({_spec(m)})" for i, m in enumerate(models, 1)]
    if executor is not None and getattr(executor, "remote", False):
        names: list[str | None] = [None] * len(models)
        problems: dict[int, InputError] = {}
        for outcome in executor.map_unordered(check_model_task, job, list(models)):
            value = outcome.value
            if outcome.error is not None:
                problems[outcome.index] = InputError(outcome.error)
            elif isinstance(value, ProbeFailure):
                problems[outcome.index] = value.error
            else:
                names[outcome.index] = value.name
                if value.trust_warning:  # the task's load stayed silent: warn here
                    warn_trusted(value.trust_warning)
        if problems:
            first = min(problems)
            raise problems[first].within(where[first])
    else:
        names = []
        for model, place in zip(models, where, strict=True):
            try:
                names.append(check_model(job, model).name)
            except InputError as err:
                raise err.within(place) from None
    seen: dict[str, str] = {}
    for position, (model, name, place) in enumerate(zip(models, names, where, strict=True),
                                                     start=1):
        if name in seen:
            hint = (f"rename one with NAME=SPEC, e.g. {name}_{position}="
                    f"{split_name(model)[1]}" if isinstance(model, str)
                    else "give them distinct names")
            raise InputError(f"{seen[name]} and {place} are both named "
                             f"'{name}' (feature files are named after their model); " + hint)
        seen[name] = place
    return list(seen)


@dataclass(frozen=True)
class ProbeJob:
    """What checking each model needs: the probe image (None when none is readable), the
    load options, the layers asked for, the dataset's own transform (or None)."""

    image: Image.Image | None
    image_size: int | None
    layers: Sequence[str] | str
    transform: Any
    load_options: dict[str, Any]


@dataclass(frozen=True)
class ProbeFailure:
    """A model's bad input, reported by a task (not retried: it would fail again)."""

    error: InputError


@dataclass(frozen=True)
class ProbePassed:
    """A model that passed: its name, and the warning its loading gave when it is a
    trusted checkpoint carrying code (a task hands it to the driver to issue)."""

    name: str
    trust_warning: str | None = None


def check_model(job: ProbeJob, model: str | ModelAdapter | torch.nn.Module) -> ProbePassed:
    """Load one model, resolve its layers and run the probe image through it (then drop
    it). InputError on the first problem."""
    adapter = model if isinstance(model, ModelAdapter) else load_model(
        model, image_size=job.image_size, **job.load_options)
    layer_names = adapter.resolve_layers(job.layers)
    if job.image is not None:
        probe_input(adapter, job.image, layer_names, transform=job.transform)
    return ProbePassed(adapter.name, adapter.trust_warning)


def check_model_task(job: ProbeJob, model: str | ModelAdapter | torch.nn.Module
                     ) -> ProbePassed | ProbeFailure:
    """:func:`check_model` as an executor task: bad input is returned, not raised, and
    the trusted-checkpoint warning too (the driver issues it, not a remote worker)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrustedCheckpointWarning)
        try:
            return check_model(job, model)
        except InputError as err:
            return ProbeFailure(err)


def _spec(model: Any) -> str:
    return (model.name if isinstance(model, ModelAdapter) else type(model).__name__
            if isinstance(model, torch.nn.Module) else str(model))


def probe_image(dataset: LabelledImages) -> Image.Image | None:
    """The first readable image among the dataset's leading samples (None if none is:
    the extraction then reports the unreadable images itself)."""
    for position in range(min(len(dataset), PROBE_CANDIDATES)):
        try:
            return dataset.read_image(position)
        except InputError:
            continue
    return None


def probe_input(adapter: ModelAdapter, image: Image.Image, layers: Sequence[str] = (), *,
                transform: Any = None) -> None:
    """Run one image through the model's preprocessing (or ``transform``) and forward pass
    on the CPU, in eval mode; an InputError in one line when the model cannot take it
    (e.g. a ViT with a fixed input size given another ``image_size``)."""
    module = adapter.module
    was_training = module.training
    try:
        batch = (transform or adapter.transform)(image).unsqueeze(0)
    except Exception as exc:  # a user transform may raise anything
        raise InputError(f"model '{adapter.name}': its preprocessing fails on an image of the "
                         f"dataset ({describe_exception(exc)})") from None
    module.eval()
    try:
        with torch.inference_mode():
            adapter.forward(batch, layers)
    except InputError:
        raise
    except Exception as exc:  # shape mismatches surface as RuntimeError, AssertionError, ...
        raise InputError(f"model '{adapter.name}' cannot take its input: a batch of shape "
                         f"{tuple(batch.shape)} from its preprocessing fails in forward "
                         f"({describe_exception(exc)}); try another image size "
                         "(image_size=...)") from None
    finally:
        module.train(was_training)
