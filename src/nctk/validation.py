"""Input checks at the library boundary (scikit-learn ``check_array`` style).

Each check raises :class:`nctk.errors.InputError` with a one-line message naming the
array and the problem; callers add the file name. Checks never modify their input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nctk.arrays import to_numpy
from nctk.errors import InputError


def check_matrix(x: Any, name: str = "features", *, dtype_out: Any = None) -> np.ndarray:
    """Validate a 2-D finite float matrix of shape (N, d) with N >= 1 and d >= 1.

    Integer input is accepted and converted to float64; float16/bfloat16 to float32.
    ``dtype_out`` forces the output dtype. The input itself is never modified (a view or
    a copy is returned, and callers must not write to it).
    """
    arr = to_numpy(x)
    if arr.dtype == object or arr.dtype.kind in "USV":
        raise InputError(f"expected numbers, got dtype {arr.dtype}", array=name)
    if arr.dtype.kind == "b":
        raise InputError("expected numbers, got booleans", array=name)
    if arr.ndim != 2:
        raise InputError(f"expected a 2-D array (samples, dims), got shape {arr.shape}", array=name)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"is empty (shape {arr.shape})", array=name)
    if dtype_out is not None:
        arr = arr.astype(dtype_out, copy=False)
    elif arr.dtype.kind in "iu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind == "f" and arr.dtype.itemsize < 4:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind == "c":
        raise InputError("expected real numbers, got complex", array=name)
    finite = np.isfinite(arr)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        bad = "NaN" if np.isnan(arr[row, col]) else "inf"
        count = int((~finite).sum())
        raise InputError(f"contains {count} non-finite value(s) ({bad} first at row {row}, "
                         f"column {col})", array=name)
    return arr


@dataclass(frozen=True)
class EncodedLabels:
    """Labels mapped to contiguous codes.

    Attributes:
        codes: (N,) int64 in 0..C-1, ``classes[codes[i]]`` is the original label of sample i.
        classes: (C,) the distinct original labels, sorted.
        counts: (C,) int64 samples per class.
    """

    codes: np.ndarray
    classes: np.ndarray
    counts: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.classes.shape[0])


def label_values(arr: np.ndarray, name: str = "labels") -> np.ndarray:
    """``arr`` as labels numpy can sort: integers, strings or booleans as they are, floats
    as int64 when every value is a finite integer; InputError otherwise (NaN, inf, 2.5, an
    unsupported dtype)."""
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            kind = "NaN" if np.isnan(arr).any() else "inf"
            raise InputError(f"contains {kind} ({int((~np.isfinite(arr)).sum())} of "
                             f"{arr.size}); labels must be integers or strings", array=name)
        if not np.all(arr == np.round(arr)):
            raise InputError("contains non-integer numbers; labels must be integers or strings",
                             array=name)
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iuUSb":
        raise InputError(f"unsupported label dtype {arr.dtype}", array=name)
    return arr


def encode_labels(
    y: Any,
    n_samples: int | None = None,
    name: str = "labels",
    *,
    min_classes: int = 2,
    min_per_class: int = 1,
) -> EncodedLabels:
    """Validate labels and map them to 0..C-1 (any hashable values are accepted).

    Labels may be integers (any values, gaps allowed) or strings. Floats are accepted only
    when every value is integral. Raises when the count does not match ``n_samples``, when
    there are fewer than ``min_classes`` classes, or a class has fewer than ``min_per_class``
    samples.
    """
    arr = to_numpy(y)
    if arr.dtype == object:
        try:
            arr = arr.astype(str)
        except (TypeError, ValueError) as exc:
            raise InputError(f"cannot be read as labels ({exc})", array=name) from None
    if arr.ndim != 1:
        raise InputError(f"expected a 1-D array, got shape {arr.shape}", array=name)
    if arr.shape[0] == 0:
        raise InputError("is empty", array=name)
    if n_samples is not None and arr.shape[0] != n_samples:
        raise InputError(f"has {arr.shape[0]} entries but the features have {n_samples} rows",
                         array=name)
    arr = label_values(arr, name)
    classes, codes, counts = np.unique(arr, return_inverse=True, return_counts=True)
    if classes.shape[0] < min_classes:
        raise InputError(f"has {classes.shape[0]} class(es); at least {min_classes} are needed",
                         array=name)
    if counts.min() < min_per_class:
        small = classes[int(np.argmin(counts))].item()
        raise InputError(
            f"class {small!r} has {int(counts.min())} sample(s); this needs at least "
            f"{min_per_class} per class", array=name)
    return EncodedLabels(codes=codes.reshape(-1).astype(np.int64), classes=classes,
                         counts=counts.astype(np.int64))


def check_same_length(arrays: Sequence[tuple[str, np.ndarray]], n: int) -> None:
    """Raise unless every named array has ``n`` rows."""
    for name, arr in arrays:
        if arr.shape[0] != n:
            raise InputError(f"has {arr.shape[0]} rows but the features have {n}", array=name)
