"""Synthetic labelled features shared by the tests of NCTI, SFDA, LogME and H-score."""

from __future__ import annotations

import numpy as np


def blobs(n: int = 300, d: int = 20, classes: int = 4, *, spread: float = 1.0,
          scale: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float64 Gaussian class blobs with overlapping classes, and labels 0..C-1.

    Every class gets at least two samples; ``spread`` is the within-class standard
    deviation relative to the unit-variance class means; ``scale`` multiplies everything.
    """
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.repeat(np.arange(classes), 2),
                        rng.integers(0, classes, n - 2 * classes)])
    rng.shuffle(y)
    means = rng.standard_normal((classes, d))
    x = means[y] + spread * rng.standard_normal((n, d)) * rng.uniform(0.5, 1.5, d)
    return scale * x, y
