"""Small labelled data for the ``nctk select`` tests: the shipped demo target images (five
CIFAR-10 classes, 32x32) written as ``npz:`` datasets, and the demo models that train
fastest."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import nctk.demo

#: Fast demo members of three families.
MODELS = ("demo:cnn_small", "demo:mlp", "demo:cnn_wide", "demo:mobilenet_tiny")


def demo_images() -> tuple[np.ndarray, np.ndarray]:
    """The shipped target subset: images (N, 32, 32, 3) uint8 and string labels."""
    shipped = np.load(Path(nctk.demo.__file__).parent / "assets" / "target_subset.npz")
    return shipped["images"], shipped["labels"]


def write_npz(path: Path, per_class: int, *, offset: int = 0, classes: int = 5,
              counts: dict[str, int] | None = None) -> str:
    """``per_class`` images of the first ``classes`` classes (from position ``offset`` of
    each class; ``counts`` overrides a class's count) as ``npz:PATH``."""
    images, labels = demo_images()
    chosen = []
    for name in sorted(set(labels.tolist()))[:classes]:
        members = np.flatnonzero(labels == name)
        chosen += members[offset:offset + (counts or {}).get(name, per_class)].tolist()
    np.savez(path, images=images[chosen], labels=labels[chosen])
    return f"npz:{path}"
