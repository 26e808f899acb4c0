"""The shipped demo assets in ``nctk/demo/assets/`` and their build record (no torch here).

Built by ``benchmarks/build_demo_pool.py``: ``<model>.pt`` (float16 state dicts of the
:data:`nctk.demo.models.POOL` networks), ``target_subset.npz`` (the target images),
``ground_truth.json`` (``{model: fine-tuned accuracy}``) and ``pool.json`` (how they were
built, with the source accuracies).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nctk.errors import InputError

#: Where the shipped weights, target subset and ground truth live.
ASSETS = Path(__file__).resolve().with_name("assets")
SUBSET = "target_subset.npz"
GROUND_TRUTH = "ground_truth.json"
POOL_INFO = "pool.json"


def asset(name: str) -> Path:
    """Path of a shipped asset; InputError when the installation lacks it."""
    path = ASSETS / name
    if not path.is_file():
        raise InputError("demo asset missing: the package was installed without its assets "
                         "(rebuild with benchmarks/build_demo_pool.py)", file=str(path))
    return path


def pool_info() -> dict[str, Any]:
    """The build record ``pool.json``: tasks, schedules and per-model figures."""
    return json.loads(asset(POOL_INFO).read_text(encoding="utf-8"))


def source_accuracy(name: str) -> float | None:
    """The test accuracy of pool member ``name`` on its source task (``pool.json``)."""
    figures = {m["name"]: m for m in pool_info()["models"]}
    return figures.get(name, {}).get("source_test_accuracy")
