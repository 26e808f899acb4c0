"""Labelled torch datasets for fine-tuning: labels, class codes, seeded subsets.

Any map-style ``torch.utils.data.Dataset`` whose items are ``(input, label)`` works; its
labels are read without loading inputs when possible (``label_values()`` of
``nctk.extract.LabelledImages``, a ``labels`` attribute, ``TensorDataset``'s last tensor,
``Subset`` of those), otherwise by indexing every item.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from nctk.arrays import to_numpy
from nctk.errors import InputError
from nctk.sampling import exactly_per_class
from nctk.validation import EncodedLabels, encode_labels


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """The (N,) labels of a map-style dataset of ``(input, label)`` items."""
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[np.asarray(dataset.indices)]
    if isinstance(dataset, TensorDataset):
        return to_numpy(dataset.tensors[-1])
    if callable(getattr(dataset, "label_values", None)):  # nctk.extract.LabelledImages
        return np.asarray(dataset.label_values())
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        return np.asarray(to_numpy(labels) if torch.is_tensor(labels) else labels)
    return np.asarray([int(dataset[i][1]) if torch.is_tensor(dataset[i][1]) else dataset[i][1]
                       for i in range(len(dataset))])


class CodedDataset(Dataset):
    """``dataset`` with its labels replaced by class codes 0..C-1 (int64 tensors)."""

    def __init__(self, dataset: Dataset, codes: np.ndarray):
        self.dataset = dataset
        self.codes = torch.as_tensor(codes, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset[i][0], self.codes[i]


def encode_dataset(dataset: Dataset, name: str = "train data", *,
                   classes: Sequence | None = None) -> tuple[CodedDataset, EncodedLabels]:
    """Map a dataset's labels to codes once; ``classes`` fixes the code order (test data).

    Every class needs two samples (one for training, one for validation). A test label
    outside ``classes`` is an error.
    """
    labels = dataset_labels(dataset)
    if classes is None:
        encoded = encode_labels(labels, len(labels), name, min_classes=2, min_per_class=2)
        return CodedDataset(dataset, encoded.codes), encoded
    lookup = {c.item() if hasattr(c, "item") else c: k for k, c in enumerate(classes)}
    values = [v.item() if hasattr(v, "item") else v for v in labels]
    unknown = sorted({str(v) for v in values if v not in lookup})
    if unknown:
        raise InputError(f"labels not among the training classes: {', '.join(unknown[:5])}",
                         array=name)
    codes = np.asarray([lookup[v] for v in values], dtype=np.int64)
    counts = np.bincount(codes, minlength=len(lookup))
    return CodedDataset(dataset, codes), EncodedLabels(codes, np.asarray(classes), counts)


def encode_validation(dataset: Dataset, classes: Sequence) -> CodedDataset:
    """Explicit validation data coded like the training data: its classes must be exactly
    the training ``classes`` (a label outside them, or a training class it lacks, is an
    :class:`InputError`)."""
    coded, encoded = encode_dataset(dataset, "validation data", classes=classes)
    missing = [str(c) for c, n in zip(encoded.classes, encoded.counts, strict=True) if n == 0]
    if missing:
        raise InputError(f"has no sample of the training class(es) {', '.join(missing[:5])}; "
                         "validation data need the classes of the training data",
                         array="validation data")
    return coded


def per_class_subset(dataset: Dataset, per_class: int, seed: int) -> Subset:
    """A seeded subset with ``per_class`` samples of every class (Figure 11's data scarcity):
    :func:`nctk.sampling.exactly_per_class`.

    Raises :class:`InputError` if a class has fewer samples.
    """
    classes, codes = np.unique(dataset_labels(dataset), return_inverse=True)
    chosen = exactly_per_class(codes, per_class, seed, classes=classes, what="train data")
    return Subset(dataset, chosen.tolist())
