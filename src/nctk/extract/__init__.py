"""Frozen-feature extraction: model adapters, labelled image datasets, a cached engine.

    from nctk.extract import extract_pool
    pool = extract_pool("torchvision:resnet50:IMAGENET1K_V2,timm:vit_small_patch16_224",
                        "imagefolder:data/", per_class=50, cache_dir="~/.cache/nctk")

See docs/extraction.md for the spec strings, preprocessing, layer names and the cache.
"""

from __future__ import annotations

from nctk.extract.datasets import LabelledImages, load_dataset, subsample_per_class
from nctk.extract.engine import extract_features, extract_pool, write_pool
from nctk.extract.models import ModelAdapter, load_model

__all__ = [
    "LabelledImages",
    "ModelAdapter",
    "extract_features",
    "extract_pool",
    "load_dataset",
    "load_model",
    "subsample_per_class",
    "write_pool",
]
