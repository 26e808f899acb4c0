"""The demo's spec kinds: ``demo:<model>`` (a model of the shipped pool with its weights)
and ``demo:target`` (the shipped target images), registered in
:mod:`nctk.extract.specs` when ``nctk`` is imported.

Light on purpose (the package root imports it): the loaders import torch when a demo spec
is first loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nctk.errors import InputError
from nctk.extract.specs import DataRequest, ModelRequest, register_data_kind, register_model_kind

#: The datasets shipped with the demo (``demo:<name>``).
DATASETS = ("target",)


def demo_model(request: ModelRequest) -> Any:
    """A model of the shipped demo pool with its weights: the CIFAR normalisation it was
    trained with (images resized to ``image_size`` when given; the pool was trained on
    32x32), its ``head``, its ``block1..K`` units and its accuracy on the source test split
    (recorded with its features: the data-free prior)."""
    from nctk.demo.assets import asset, source_accuracy
    from nctk.demo.run import image_transform, load_demo_model
    from nctk.extract.models import ModelAdapter

    member = request.rest
    module = load_demo_model(member)
    weights = asset(f"{member}.pt").stat()
    return ModelAdapter(module, name=request.name or member,
                        transform=image_transform(request.image_size), head=module.head,
                        identity=f"demo:{member}:{weights.st_size}:{weights.st_mtime_ns}",
                        units=module.block_names, source_accuracy=source_accuracy(member))


def demo_dataset(request: DataRequest) -> Any:
    """``demo:target``: the shipped target subset (images and string labels)."""
    from nctk.demo.assets import SUBSET, asset
    from nctk.extract.datasets import npz_images

    if request.rest not in DATASETS:
        raise InputError(f"unknown demo dataset {request.rest!r}; shipped: "
                            f"{', '.join(f'demo:{n}' for n in DATASETS)}", file=request.spec)
    return npz_images(request.spec, str(asset(SUBSET)))


def model_weights(rest: str) -> list[Path]:
    """The weights file a ``demo:<model>`` spec reads."""
    from nctk.demo.assets import ASSETS

    return [ASSETS / f"{rest}.pt"]


register_model_kind("demo", demo_model, paths=model_weights, form="demo:<name>",
                    summary="a model of the shipped demo pool (trained by nctk on CIFAR-10 "
                            "source classes)")
register_data_kind("demo", demo_dataset, form="demo:target",
                   summary="the shipped demo target images (1,000 CIFAR-10 images of 5 classes)")
