"""The neural-collapse profile of a feature file too large for one worker.

:func:`sharded_profile` gives what :func:`nctk.collapse.layer_profile` gives (every
``layer:<name>`` array, then ``features`` as ``penultimate``), without any process
holding a whole array: the rows are split into shards, each task reads only its rows
(stored ``.npz`` members are memory-mapped by :func:`nctk.npz.read_npz`; a compressed
member is inflated whole, after its size checks) and returns a small mergeable state, and
the driver merges the states (exactly: :meth:`nctk.stats.ClassStats.merge`, Chan et al.).

Passes over the data, per array:

1. :class:`~nctk.stats.ClassStats` of each shard, merged: NC1, CDNV, NC2, NC3 with a
   classifier (:func:`~nctk.collapse.from_stats`). The numerical rank needs every class's
   d x d scatter; a task keeps it for as many classes as fit ``scatter_bytes``, so K d^2
   beyond that takes one pass per chunk of classes (each chunk's ratios are computed and
   its scatter dropped before the next).
2. :class:`~nctk.collapse.NCCAgreement` of each shard against the merged class means:
   NCC accuracy (and NC4 with a classifier).

The shared part of each pass (the label codes, the merged means) is shipped once (Ray's
object store with the Ray executor); a task gets only its array name and row range.
States are merged as they arrive, so the result equals a single pass to rounding
(~1e-15 relative), not bit for bit.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from nctk.collapse.ncc import LinearClassifier, NCCAgreement
from nctk.collapse.profile import MIN_PER_CLASS, PENULTIMATE, from_stats, profile_row
from nctk.collapse.rank import class_rank_ratios, mean_rank_ratio
from nctk.errors import InputError
from nctk.io import LAYER_PREFIX
from nctk.npz import read_npz
from nctk.stats import ClassStats
from nctk.validation import check_matrix, encode_labels

#: Bytes of per-class scatter one task keeps at most (float64 d x d per class kept).
SCATTER_BYTES = 512 << 20


@dataclass(frozen=True)
class ShardJob:
    """What every task of one pass shares.

    Attributes:
        path: the feature file (every worker must be able to read it).
        codes: (N,) int64 class codes 0..K-1 of the rows.
        num_classes: K.
        means: array key -> (K, d) merged class means (the NCC pass only).
        classifier: the linear head for the penultimate ``features`` (NC3/NC4), or None.
    """

    path: str
    codes: np.ndarray
    num_classes: int
    means: dict[str, np.ndarray] = field(default_factory=dict)
    classifier: LinearClassifier | None = None


@dataclass(frozen=True)
class ShardTask:
    """Rows ``start:stop`` of array ``key``; ``classes`` whose scatter to keep (the
    statistics pass) or None (the NCC pass)."""

    key: str
    start: int
    stop: int
    classes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ShardFailure:
    """A task's bad input (not retried: it would fail the same way)."""

    message: str


def run_shard(job: ShardJob, task: ShardTask) -> ClassStats | NCCAgreement | ShardFailure:
    """The state of one shard: ``ClassStats`` (statistics pass) or ``NCCAgreement``."""
    rows = np.array(read_npz(job.path)[task.key][task.start:task.stop])  # only these rows
    try:
        x = check_matrix(rows, task.key)
    except InputError as err:
        return ShardFailure(f"{job.path}: array '{task.key}': rows {task.start}.."
                            f"{task.stop - 1}: {err.problem}")
    x = x.astype(np.float64)
    codes = job.codes[task.start:task.stop]
    if task.classes is None:
        classifier = job.classifier if task.key == "features" else None
        return NCCAgreement(job.means[task.key], classifier).update(x, codes)
    return ClassStats(job.num_classes, x.shape[1], per_class_cov=list(task.classes)
                      ).update(x, codes)


def sharded_profile(path: str | os.PathLike, executor: Any, *, shards: int,
                    classifier: Any = None, scatter_bytes: int = SCATTER_BYTES
                    ) -> dict[str, dict[str, float]]:
    """:func:`nctk.collapse.layer_profile` of the file at ``path``, its rows split into
    ``shards`` tasks per pass of ``executor`` (see the module docstring).

    Args:
        path: an uncompressed feature file (``np.savez``; a compressed one works, each
            task then inflating the whole archive).
        executor: a :class:`~nctk.scale.LoopExecutor` or an entered
            :class:`~nctk.scale.RayExecutor`.
        shards: row ranges per array (at most N).
        classifier: linear head W (K, d) or (W, b) for the penultimate features.
        scatter_bytes: per-class scatter one task may keep (chunks of classes beyond).
    """
    where = str(path)
    members = read_npz(path)  # memory maps: nothing is read yet
    arrays = _profile_arrays(members, where)
    labels = np.array(members["labels"])
    try:
        encoded = encode_labels(labels, None, "labels", min_per_class=MIN_PER_CLASS)
    except InputError as err:
        raise err.located(file=where) from None
    n, k = labels.shape[0], encoded.num_classes
    bounds = np.linspace(0, n, min(max(int(shards), 1), n) + 1).round().astype(int)
    ranges = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    job = ShardJob(where, encoded.codes, k)
    if classifier is not None:
        dim = members["features"].shape[1]
        try:
            job = replace(job, classifier=LinearClassifier.coerce(classifier, k, dim))
        except InputError as err:
            raise err.located(file=where, array="features") from None

    profile, means = {}, {}
    for name, key in arrays.items():
        dim = members[key].shape[1]
        ratios = np.full(k, np.nan)
        for chunk in _class_chunks(k, dim, scatter_bytes):
            tasks = [ShardTask(key, a, b, chunk) for a, b in ranges]
            state = _merge(state for _, state in _run(executor, job, tasks))
            classes, values = class_rank_ratios(state)
            ratios[classes] = values
            if name not in profile:  # every chunk's state has the same means and scatter
                final = state.compute()
                profile[name] = from_stats(final, job.classifier if key == "features"
                                           else None)
                means[key] = final.means
            del state  # one chunk of per-class scatter at a time
        profile[name]["numerical_rank"] = mean_rank_ratio(ratios)
    ncc_job = replace(job, means=means)
    tasks = [ShardTask(key, a, b) for key in arrays.values() for a, b in ranges]
    agreement: dict[str, NCCAgreement] = {}
    for task, state in _run(executor, ncc_job, tasks):
        agreement[task.key] = agreement[task.key].merge(state) if task.key in agreement \
            else state
    return {name: profile_row({**profile[name], **agreement[key].compute()})
            for name, key in arrays.items()}


def _profile_arrays(members: dict[str, np.ndarray], where: str) -> dict[str, str]:
    """Profile name -> array key: ``layer:*`` in file order, then ``features``; checks
    that they are 2-D with one row per label."""
    for required in ("features", "labels"):
        if required not in members:
            raise InputError(f"missing (found: {', '.join(members) or 'nothing'})",
                             file=where, array=required)
    n = members["labels"].shape
    if len(n) != 1:
        raise InputError(f"expected shape (N,), got {n}", file=where, array="labels")
    arrays = {key[len(LAYER_PREFIX):]: key for key in members if key.startswith(LAYER_PREFIX)}
    if PENULTIMATE in arrays:
        raise InputError(f"the layer name '{PENULTIMATE}' is reserved for the 'features' "
                         "array", file=where, array=f"layer:{PENULTIMATE}")
    arrays[PENULTIMATE] = "features"
    for key in arrays.values():
        shape = members[key].shape
        if len(shape) != 2 or shape[0] != n[0] or 0 in shape:
            raise InputError(f"expected shape ({n[0]}, d) with d >= 1 to match the labels, "
                             f"got {shape}", file=where, array=key)
    return arrays


def _class_chunks(k: int, dim: int, scatter_bytes: int) -> Iterator[tuple[int, ...]]:
    """Consecutive chunks of class codes whose float64 d x d scatters fit the budget."""
    size = max(1, int(scatter_bytes) // (dim * dim * 8))
    for start in range(0, k, size):
        yield tuple(range(start, min(start + size, k)))


def _run(executor: Any, job: ShardJob, tasks: Sequence[ShardTask]
         ) -> Iterator[tuple[ShardTask, Any]]:
    """``(task, state)`` as each task finishes; a failed task ends the profile
    (InputError naming the file, the array and the rows)."""
    with contextlib.closing(executor.map_unordered(run_shard, job, list(tasks))) as outcomes:
        yield from _checked(outcomes, job, tasks)


def _checked(outcomes: Iterator[Any], job: ShardJob, tasks: Sequence[ShardTask]
             ) -> Iterator[tuple[ShardTask, Any]]:
    for outcome in outcomes:
        task = tasks[outcome.index]
        if outcome.error is not None:
            raise InputError(f"rows {task.start}..{task.stop - 1} failed: {outcome.error}",
                             file=job.path, array=task.key)
        if isinstance(outcome.value, ShardFailure):
            raise InputError(outcome.value.message)
        yield task, outcome.value


def _merge(states: Iterator[ClassStats]) -> ClassStats:
    """Fold the states into a new one, in the order they come (exact up to rounding; the
    states themselves may be read-only, as Ray hands them over)."""
    first = next(states)
    merged = ClassStats(first.num_classes, first.dim, per_class_cov=first.scatter_classes.tolist()
                        ).merge(first)
    for state in states:
        merged.merge(state)
    return merged
