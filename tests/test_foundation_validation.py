"""Boundary checks (nctk.validation)."""

from __future__ import annotations

import numpy as np
import pytest

from nctk.errors import InputError
from nctk.validation import check_matrix, encode_labels


def test_encode_labels_any_hashable_values():
    enc = encode_labels(np.array(["dog", "cat", "dog", "emu"]))
    assert enc.classes.tolist() == ["cat", "dog", "emu"]
    assert enc.codes.tolist() == [1, 0, 1, 2]
    assert enc.counts.tolist() == [1, 2, 1]
    gapped = encode_labels(np.array([7, 3, 7, 100]))
    assert gapped.codes.tolist() == [1, 0, 1, 2] and gapped.num_classes == 3


def test_integral_floats_are_labels_but_fractions_are_not():
    assert encode_labels(np.array([0.0, 1.0, 1.0])).codes.tolist() == [0, 1, 1]
    with pytest.raises(InputError, match="non-integer"):
        encode_labels(np.array([0.5, 1.0]))
    with pytest.raises(InputError, match="NaN"):
        encode_labels(np.array([np.nan, 1.0]))


@pytest.mark.parametrize(
    ("labels", "kwargs", "fragment"),
    [
        (np.array([1, 1, 1]), {}, "1 class(es)"),
        (np.array([], dtype=int), {}, "empty"),
        (np.array([[0, 1]]), {}, "1-D"),
        (np.array([0, 1, 1]), {"n_samples": 4}, "3 entries"),
        (np.array([0, 1, 1]), {"min_per_class": 2}, "class 0 has 1 sample"),
    ],
)
def test_bad_labels(labels, kwargs, fragment):
    with pytest.raises(InputError) as info:
        encode_labels(labels, **kwargs)
    assert fragment in str(info.value) and "array 'labels'" in str(info.value)


def test_check_matrix_converts_without_touching_input():
    ints = np.arange(6).reshape(3, 2)
    out = check_matrix(ints)
    assert out.dtype == np.float64 and ints.dtype.kind == "i"
    half = np.ones((2, 2), dtype=np.float16)
    assert check_matrix(half).dtype == np.float32
    f32 = np.ones((2, 2), dtype=np.float32)
    assert check_matrix(f32) is f32


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (np.array([["a", "b"]]), "expected numbers"),
        (np.ones((2, 2), dtype=bool), "booleans"),
        (np.ones((2, 2, 2)), "2-D"),
        (np.ones((2, 0)), "empty"),
        (np.array([[1.0, np.nan]]), "NaN first at row 0, column 1"),
    ],
)
def test_check_matrix_errors(value, fragment):
    with pytest.raises(InputError, match=fragment):
        check_matrix(value, "features")


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    x = torch.arange(6, dtype=torch.float32).reshape(3, 2)
    np.testing.assert_array_equal(check_matrix(x), x.numpy())
    assert encode_labels(torch.tensor([3, 1, 3])).codes.tolist() == [1, 0, 1]
