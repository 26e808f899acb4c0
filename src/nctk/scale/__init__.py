"""Pools of hundreds of models: one unit of work per model, run by a loop or by Ray.

* :mod:`nctk.scale.unit`: :func:`run_model`, extract + score one (model, dataset) through
  the feature cache, returning a small :class:`ModelRecord`;
* :mod:`nctk.scale.executors`: :class:`LoopExecutor` (this process) and
  :class:`RayExecutor` (Ray tasks: scheduling, retries, object store);
* :mod:`nctk.scale.pool`: :func:`rank_models` and :func:`extract_models`, the driver;
* :mod:`nctk.scale.shards`: neural-collapse statistics of a feature file too large for
  one worker, sharded over tasks and merged exactly.

See docs/scale.md.
"""

from __future__ import annotations

from nctk.scale.executors import LoopExecutor, RayExecutor
from nctk.scale.pool import PoolRanking, extract_models, rank_models, run_models
from nctk.scale.unit import ExtractSettings, ModelRecord, PoolJob, ScoreSettings, run_model

__all__ = [
    "ExtractSettings",
    "LoopExecutor",
    "ModelRecord",
    "PoolJob",
    "PoolRanking",
    "RayExecutor",
    "ScoreSettings",
    "extract_models",
    "rank_models",
    "run_model",
    "run_models",
]
