"""``nctk select``: pick the model to fine-tune under a compute budget (docs/select.md).

* :mod:`nctk.select.schedule`: successive halving, one pure function;
* :mod:`nctk.select.budget`: budgets, the cost model and the plan;
* :mod:`nctk.select.shortlist`: the hybrid zero-training order (Renggli et al. 2020);
* :mod:`nctk.select.zero`: the zero-training phase (scores from cached features);
* :mod:`nctk.select.trials`: one model trained to one rung (an executor's task);
* :mod:`nctk.select.state`: the resumable state;
* :mod:`nctk.select.api`: :func:`select` and :func:`prepare`.

``nctk.select(...)`` calls :func:`nctk.select.api.select`: this package is callable.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    """``nctk.select`` is both this package and the function: the package attribute of
    ``nctk`` is this module once any submodule is imported, so the module forwards calls
    to :func:`nctk.select.api.select`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from nctk.select.api import select

        return select(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


def __getattr__(name: str) -> Any:
    if name in {"select", "prepare", "Selection", "Prepared"}:
        from nctk.select import api

        return getattr(api, name)
    raise AttributeError(f"module 'nctk.select' has no attribute {name!r}")
