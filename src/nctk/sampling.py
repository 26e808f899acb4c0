"""Seeded stratified draws of samples: one function per meaning.

Every function takes the (N,) class codes 0..C-1 of the samples (``nctk.validation.
encode_labels(...).codes``) and returns sorted int64 indices, so the kept samples stay in
their original order; the randomness is ``rng``: a ``numpy.random.Generator``, or a seed
(an int or a sequence of ints) for ``numpy.random.default_rng``. Classes are visited in
code order and each draw is ``rng.choice(members, size, replace=False)``, so a seed gives
the same samples on every machine.

* :func:`at_most_per_class`: up to k samples of each class (``--per-class``, the few-shot
  analysis);
* :func:`exactly_per_class`: k samples of each class, refusing a class with fewer (data
  scarcity in fine-tuning);
* :func:`proportional`: a subsample of a given total size, each class in proportion
  (the scores whose cost grows faster than N: PARC, NLEEP, k-NN);
* :func:`train_validation_split`: a stratified split into training and validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nctk.errors import InputError

Seed = np.random.Generator | int | Sequence[int]


def _positive(k: Any, what: str) -> int:
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
        raise InputError(f"{what} must be a positive integer, got {k!r}")
    return int(k)


def _members(codes: np.ndarray) -> list[np.ndarray]:
    """The indices of each class, in code order."""
    codes = np.asarray(codes)
    return [np.flatnonzero(codes == c) for c in range(int(codes.max(initial=-1)) + 1)]


def at_most_per_class(codes: np.ndarray, k: int, rng: Seed) -> np.ndarray:
    """Indices of min(k, n_c) samples of every class c, drawn without replacement.

    A class with at most ``k`` samples is kept whole, without a draw (so it takes nothing
    from ``rng``).

    Returns:
        sorted (sum_c min(k, n_c),) int64 indices.
    """
    k = _positive(k, "samples per class")
    generator = np.random.default_rng(rng)
    chosen = [members if members.size <= k else generator.choice(members, size=k,
                                                                 replace=False)
              for members in _members(codes)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def exactly_per_class(codes: np.ndarray, k: int, rng: Seed, *,
                      classes: Sequence[Any] | None = None, what: str = "labels") -> np.ndarray:
    """Indices of exactly ``k`` samples of every class, drawn without replacement.

    Raises:
        InputError: a class has fewer than ``k`` samples (named by ``classes[c]`` when
            given; ``what`` names the array).
    """
    k = _positive(k, "samples per class")
    generator = np.random.default_rng(rng)
    chosen = []
    for code, members in enumerate(_members(codes)):
        if members.size < k:
            name = classes[code] if classes is not None else code
            raise InputError(f"class {name!r} has {members.size} samples, fewer than {k} per "
                             "class", array=what)
        chosen.append(generator.choice(members, k, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def proportional(codes: np.ndarray, size: int, rng: Seed) -> np.ndarray:
    """Indices of ``size`` samples drawn without replacement, each class in proportion.

    Class c gets ⌊size·n_c/N⌋ samples plus one for the classes with the largest remainders
    (largest-remainder rounding), so the total is exactly ``size`` (at most N).
    """
    codes = np.asarray(codes)
    size = min(_positive(size, "subsample size"), codes.shape[0])
    counts = np.bincount(codes)
    quota = size * counts / codes.shape[0]
    take = np.floor(quota).astype(np.int64)
    short = size - int(take.sum())
    take[np.argsort(take - quota, kind="stable")[:short]] += 1
    generator = np.random.default_rng(rng)
    chosen = [generator.choice(members, size=take[c], replace=False)
              for c, members in enumerate(_members(codes))]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def train_validation_split(codes: np.ndarray, val_fraction: float, seed: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of sample indices into (train, validation), both sorted.

    ``round(val_fraction * N)`` samples go to validation, each class in proportion
    (``sklearn.model_selection.train_test_split(..., stratify=codes)``); ``val_fraction``
    = 0 gives an empty validation set.

    Raises:
        InputError: ``val_fraction`` outside [0, 1), or too few samples to give every
            class a sample on both sides.
    """
    codes = np.asarray(codes)
    n = len(codes)
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"validation fraction must be in [0, 1), got {val_fraction}",
                         array="val_fraction")
    if val_fraction == 0.0:
        return np.arange(n), np.arange(0)
    num_classes = int(codes.max()) + 1
    n_val = round(val_fraction * n)
    if n_val < num_classes or n - n_val < num_classes:
        raise InputError(f"dataset too small for the split: {n} samples, {num_classes} classes, "
                         f"validation fraction {val_fraction} gives {n_val} validation samples "
                         "(each side needs at least one per class)", array="train data")
    from sklearn.model_selection import train_test_split  # here: sklearn imports slowly

    train, val = train_test_split(np.arange(n), test_size=n_val, random_state=seed,
                                  stratify=codes)
    return np.sort(train), np.sort(val)
