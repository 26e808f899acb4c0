"""Frozen-feature extraction: model adapters, labelled image datasets, a cached engine.

    from nctk.extract import extract_pool
    pool = extract_pool("torchvision:resnet50:IMAGENET1K_V2,timm:vit_small_patch16_224",
                        "imagefolder:data/", per_class=50, cache_dir="~/.cache/nctk")

See docs/extraction.md for the spec strings, preprocessing, layer names and the cache; a new
kind of spec registers itself in :mod:`nctk.extract.specs`. The names below import torch
when first used, so that the spec-kind registry can be imported without it.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "LabelledImages": "nctk.extract.datasets",
    "load_dataset": "nctk.extract.datasets",
    "subsample_per_class": "nctk.extract.datasets",
    "extract_features": "nctk.extract.engine",
    "extract_pool": "nctk.extract.engine",
    "write_pool": "nctk.extract.engine",
    "ModelAdapter": "nctk.extract.models",
    "load_model": "nctk.extract.models",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nctk.extract' has no attribute {name!r}")
