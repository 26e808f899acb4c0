"""nctk: the neural-collapse toolkit for transfer learning.

Public API (arrays in, plain floats and dicts out; numpy or torch tensors accepted)::

    nctk.score("ncti", features, labels)          # one model, pool-independent variant
    nctk.rank(pool, labels, "ncti")               # a pool {name: features} -> MethodResult
    nctk.evaluate(scores, truth)                  # weighted tau and friends
    nctk.collapse.measure(features, labels)       # NC1, CDNV, numerical rank, NC2-NC4
    nctk.select(models, data, budget=3)           # the model to fine-tune, within a budget

Heavy parts (torch, extraction, fine-tuning) import lazily. Importing ``nctk`` registers
the shipped demo's spec kinds (``demo:<model>``, ``demo:target``) in the spec-kind
registry of :mod:`nctk.extract.specs`, which does not know the demo (a light import).
"""

from __future__ import annotations

import importlib
from typing import Any

import nctk.demo.kinds  # noqa: F401  (registers the demo's spec kinds)
from nctk.version import __version__

_LAZY = {
    "score": ("nctk.transfer", "score"),
    "rank": ("nctk.transfer", "rank"),
    "rank_pool": ("nctk.transfer", "rank_pool"),
    "available_methods": ("nctk.transfer", "available_methods"),
    "evaluate": ("nctk.evaluation", "evaluate"),
    "InputError": ("nctk.errors", "InputError"),
    "load_feature_file": ("nctk.io", "load_feature_file"),
    "load_pool": ("nctk.io", "load_pool"),
    "save_feature_file": ("nctk.io", "save_feature_file"),
}

__all__ = ["__version__", *_LAZY, "select"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in {"collapse", "stats", "transfer", "extract", "finetune", "report", "analyses",
                "select"}:
        return importlib.import_module(f"nctk.{name}")
    raise AttributeError(f"module 'nctk' has no attribute {name!r}")
