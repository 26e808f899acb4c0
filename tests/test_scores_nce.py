"""NCE = −H(Y | Z) against a conditional entropy counted by hand (Tran et al., ICCV 2019)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy import special

import nctk
from nctk.errors import InputError
from nctk.transfer import get_method
from nctk.transfer.leep import nce


def negative_conditional_entropy(source: list, target: list) -> float:
    """−Σ_z P(z) H(Y | Z = z) from pair counts."""
    n = len(source)
    pair_counts = Counter(zip(source, target, strict=True))
    source_counts = Counter(source)
    entropy = 0.0
    for (z, _), count in pair_counts.items():
        entropy -= count / n * math.log(count / source_counts[z])
    return -entropy


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 5))
    labels = rng.integers(0, 3, size=40)
    return logits, labels


def test_matches_counted_conditional_entropy(data):
    logits, labels = data
    expected = negative_conditional_entropy(np.argmax(logits, axis=1).tolist(), labels.tolist())
    assert nce(logits, labels) == pytest.approx(expected, rel=1e-7)


def test_registered_for_source_logits(data):
    logits, labels = data
    assert get_method("nce").input == "source_logits"
    assert nctk.score("nce", logits, labels) == nce(logits, labels)


def test_logits_or_probabilities_give_the_same_score(data):
    logits, labels = data
    assert nce(special.softmax(logits, axis=1), labels) == nce(logits, labels)


def test_source_labels_determining_target_labels_give_zero():
    z = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    assert nce(np.eye(5)[z], np.array(["a", "a", "b", "b", "c"])[z]) == 0.0


def test_independent_source_and_target_give_minus_target_entropy():
    # Every (z, y) pair equally often: H(Y | Z) = H(Y) = log 3.
    z, y = np.meshgrid(np.arange(4), np.arange(3))
    assert nce(np.eye(4)[z.ravel()], y.ravel()) == pytest.approx(-math.log(3), rel=1e-7)


def test_sample_permutation_invariance(data):
    logits, labels = data
    perm = np.random.default_rng(1).permutation(len(labels))
    assert nce(logits[perm], labels[perm]) == pytest.approx(nce(logits, labels), rel=1e-7)


def test_label_renaming_and_source_permutation_invariance(data):
    logits, labels = data
    base = nce(logits, labels)
    assert nce(logits, np.array([7, 3, 1000])[labels]) == pytest.approx(base, rel=1e-7)
    assert nce(logits, np.array(["x", "b", "m"])[labels]) == pytest.approx(base, rel=1e-7)
    assert nce(logits[:, ::-1], labels) == pytest.approx(base, rel=1e-7)


def test_float32_and_float64_agree(data):
    logits, labels = data
    assert nce(logits.astype(np.float32), labels) == pytest.approx(nce(logits, labels),
                                                                   rel=1e-5)


def test_inputs_not_modified(data):
    logits, labels = data
    logits_copy, labels_copy = logits.copy(), labels.copy()
    nce(logits, labels)
    np.testing.assert_array_equal(logits, logits_copy)
    np.testing.assert_array_equal(labels, labels_copy)


@pytest.mark.parametrize("case", ["nan", "inf", "one_class", "length", "one_column"])
def test_bad_input_is_input_error(data, case):
    logits, labels = data
    logits = logits.copy()
    if case == "nan":
        logits[5, 2] = np.nan
    elif case == "inf":
        logits[1, 1] = -np.inf
    elif case == "one_class":
        labels = np.full(len(labels), 4)
    elif case == "length":
        labels = np.append(labels, 0)
    elif case == "one_column":
        logits = logits[:, :1]
    with pytest.raises(InputError):
        nce(logits, labels)
