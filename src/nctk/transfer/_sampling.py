"""Seeded stratified subsamples, for the scores whose cost grows faster than N (PARC, NLEEP)."""

from __future__ import annotations

import numpy as np


def stratified_subsample(codes: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices (sorted) of ``size`` samples drawn without replacement, per class in proportion.

    Class c gets ⌊size·n_c/N⌋ samples plus one for the classes with the largest remainders
    (largest-remainder rounding), so the total is exactly ``size``.
    """
    counts = np.bincount(codes)
    quota = size * counts / codes.shape[0]
    take = np.floor(quota).astype(np.int64)
    short = size - int(take.sum())
    take[np.argsort(take - quota, kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(codes == c), size=take[c], replace=False)
              for c in range(counts.shape[0])]
    return np.sort(np.concatenate(chosen))
