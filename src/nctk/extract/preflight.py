"""Checks on every model of a run before any extraction starts.

A mistake in the fifth model spec of a run (a typo, weights that are not cached, a
checkpoint that does not load, a model that cannot take the input size, two models with
the same name) should cost seconds, not the extraction of the first four. :func:`check_models`
loads each model once, one at a time on the CPU, runs one real image of the dataset
through its preprocessing and forward pass, and drops it again; the first problem is an
:class:`~nctk.errors.InputError` naming the model by its position and spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from nctk.errors import InputError
from nctk.extract.datasets import LabelledImages
from nctk.extract.models import ModelAdapter, load_model, split_name

#: How many leading samples are tried for a readable probe image.
PROBE_CANDIDATES = 16


def check_models(models: Sequence[str | ModelAdapter | torch.nn.Module], dataset: LabelledImages, *,
                 image_size: int | None = None, layers: Sequence[str] | str = (),
                 **load_options: Any) -> list[str]:
    """Load and try every model; return their names (feature-file stems), in order.

    Args:
        models: model specs (see :func:`~nctk.extract.load_model`) or adapters.
        dataset: the images the run will extract; one readable image of it is the probe.
        image_size: as for :func:`~nctk.extract.load_model`.
        layers: the intermediate layers the run asks for (checked to exist).
        **load_options: further arguments of :func:`~nctk.extract.load_model`.

    Raises:
        InputError: ``"model I of N (SPEC): <problem>"`` for the first model that cannot
            be loaded, lacks a layer or fails on the probe image; or two models with the
            same name (with the ``NAME=SPEC`` way to rename one).
    """
    image = probe_image(dataset)
    seen: dict[str, str] = {}
    for position, model in enumerate(models, start=1):
        spec = (model.name if isinstance(model, ModelAdapter) else type(model).__name__
                if isinstance(model, torch.nn.Module) else str(model))
        where = f"model {position} of {len(models)} ({spec})"
        try:
            adapter = model if isinstance(model, ModelAdapter) else load_model(
                model, image_size=image_size, **load_options)
            layer_names = adapter.resolve_layers(layers)
            if image is not None:
                probe_input(adapter, image, layer_names, transform=dataset.transform)
        except InputError as err:
            raise InputError(str(err), file=where) from None
        if adapter.name in seen:
            hint = (f"rename one with NAME=SPEC, e.g. {adapter.name}_{position}="
                    f"{split_name(spec)[1]}" if isinstance(model, str)
                    else "give them distinct names")
            raise InputError(f"{seen[adapter.name]} and {where} are both named "
                             f"'{adapter.name}' (feature files are named after their model); "
                             + hint)
        seen[adapter.name] = where
        del adapter
    return list(seen)


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
                         f"dataset ({_first_line(exc)})") from None
    module.eval()
    try:
        with torch.inference_mode():
            adapter.forward(batch, layers)
    except InputError:
        raise
    except Exception as exc:  # shape mismatches surface as RuntimeError, AssertionError, ...
        raise InputError(f"model '{adapter.name}' cannot take its input: a batch of shape "
                         f"{tuple(batch.shape)} from its preprocessing fails in forward "
                         f"({_first_line(exc)}); try another --image-size") from None
    finally:
        module.train(was_training)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
