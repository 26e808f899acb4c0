"""LEEP against explicit loops over the textbook definition (Nguyen et al., ICML 2020)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nctk
from nctk.errors import InputError
from nctk.transfer import get_method
from nctk.transfer.leep import leep


def leep_by_loops(logits: np.ndarray, labels: list, log: bool = True) -> float:
    """LEEP written out element by element: softmax, joint, conditional, expected likelihood."""
    n, cs = logits.shape
    classes = sorted(set(labels))
    theta = [[math.exp(v - max(row)) for v in row] for row in logits.tolist()]
    theta = [[v / sum(row) for v in row] for row in theta]
    joint = {(y, z): 0.0 for y in classes for z in range(cs)}
    for i in range(n):
        for z in range(cs):
            joint[labels[i], z] += theta[i][z] / n
    total = 0.0
    for i in range(n):
        likelihood = 0.0
        for z in range(cs):
            marginal = sum(joint[y, z] for y in classes)
            likelihood += theta[i][z] * joint[labels[i], z] / marginal
        total += math.log(likelihood) if log else likelihood
    return total / n


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(15, 4))
    labels = rng.integers(0, 3, size=15)
    labels[:3] = [0, 1, 2]
    return logits, labels


@pytest.mark.parametrize("log", [True, False])
def test_matches_explicit_loops(data, log):
    logits, labels = data
    expected = leep_by_loops(logits, labels.tolist(), log=log)
    assert leep(logits, labels, log=log) == pytest.approx(expected, rel=1e-7)


def test_log_form_is_at_most_zero_and_mean_form_in_unit_interval(data):
    logits, labels = data
    assert leep(logits, labels) < 0
    assert 0 < leep(logits, labels, log=False) <= 1


def test_registered_for_source_logits(data):
    logits, labels = data
    method = get_method("leep")
    assert method.input == "source_logits"
    assert nctk.score("leep", logits, labels) == leep(logits, labels)


def test_sample_permutation_invariance(data):
    logits, labels = data
    perm = np.random.default_rng(1).permutation(len(labels))
    assert leep(logits[perm], labels[perm]) == pytest.approx(leep(logits, labels), rel=1e-7)


def test_label_renaming_invariance(data):
    logits, labels = data
    renamed_gaps = np.array([10, -4, 99])[labels]
    renamed_str = np.array(["cat", "ant", "bee"])[labels]
    base = leep(logits, labels)
    assert leep(logits, renamed_gaps) == pytest.approx(base, rel=1e-7)
    assert leep(logits, renamed_str) == pytest.approx(base, rel=1e-7)


def test_source_class_permutation_invariance(data):
    logits, labels = data
    assert leep(logits[:, [2, 0, 3, 1]], labels) == pytest.approx(leep(logits, labels),
                                                                   rel=1e-7)


def test_deterministic_source_to_target_mapping_gives_zero():
    # Saturated logits: each sample is certainly of source class z, and z determines y.
    z = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    logits = 1000.0 * np.eye(4)[z]
    labels = z // 2
    assert leep(logits, labels) == 0.0
    assert leep(logits, labels, log=False) == 1.0


def test_source_class_without_mass_is_ignored(data):
    # exp(-1e4) underflows to 0: the extra source class has no mass; the reference gives NaN.
    logits, labels = data
    padded = np.hstack([logits, np.full((len(labels), 1), -1e4)])
    assert leep(padded, labels) == pytest.approx(leep(logits, labels), rel=1e-7)


def test_float32_and_float64_agree(data):
    logits, labels = data
    single = logits.astype(np.float32)
    assert leep(single, labels) == pytest.approx(leep(single.astype(np.float64), labels),
                                                 rel=1e-5)
    assert leep(single, labels) == pytest.approx(leep(logits, labels), rel=1e-5)


def test_torch_input():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    logits, labels = rng.normal(size=(10, 3)), np.array([0, 1] * 5)
    assert leep(torch.from_numpy(logits), torch.from_numpy(labels)) == pytest.approx(
        leep(logits, labels), rel=1e-7)


def test_inputs_not_modified(data):
    logits, labels = data
    logits_copy, labels_copy = logits.copy(), labels.copy()
    leep(logits, labels)
    leep(logits, labels, log=False)
    np.testing.assert_array_equal(logits, logits_copy)
    np.testing.assert_array_equal(labels, labels_copy)


@pytest.mark.parametrize("case", ["nan", "inf", "one_class", "length", "one_column", "1d"])
def test_bad_input_is_input_error(data, case):
    logits, labels = data
    logits = logits.copy()
    if case == "nan":
        logits[2, 1] = np.nan
    elif case == "inf":
        logits[0, 0] = np.inf
    elif case == "one_class":
        labels = np.zeros_like(labels)
    elif case == "length":
        labels = labels[:-1]
    elif case == "one_column":
        logits = logits[:, :1]
    elif case == "1d":
        logits = logits[:, 0]
    with pytest.raises(InputError):
        leep(logits, labels)
