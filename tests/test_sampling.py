"""One sampling module (nctk.sampling): one function per meaning, seeded draws identical to
those of the four samplers it replaced (their code at f8a4394 is reproduced below as the
reference)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from nctk.errors import InputError
from nctk.sampling import (
    at_most_per_class,
    exactly_per_class,
    proportional,
    train_validation_split,
)

IMBALANCED = np.repeat([0, 1, 2, 3], [10, 3, 7, 12])
SHUFFLED = np.random.default_rng(9).permutation(np.repeat([0, 1, 2], [40, 25, 35]))


# ------------------------------------------------------------------ the replaced samplers


def old_extract_subsample(codes, k, seed):
    """extract/datasets.subsample_per_class (without the dataset wrapper)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for code in range(int(codes.max()) + 1):
        members = np.flatnonzero(codes == code)
        if members.size > k:
            members = rng.choice(members, size=int(k), replace=False)
        chosen.append(members)
    return np.sort(np.concatenate(chosen))


def old_analyses_subsample(codes, k, rng):
    """analyses.stratified_subsample: also drew (a permutation) from classes kept whole."""
    picked = [rng.choice(np.flatnonzero(codes == c), size=min(k, int((codes == c).sum())),
                         replace=False) for c in range(int(codes.max()) + 1)]
    return np.sort(np.concatenate(picked))


def old_transfer_subsample(codes, size, seed):
    """transfer/_sampling.stratified_subsample."""
    counts = np.bincount(codes)
    quota = size * counts / codes.shape[0]
    take = np.floor(quota).astype(np.int64)
    short = size - int(take.sum())
    take[np.argsort(take - quota, kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(codes == c), size=take[c], replace=False)
              for c in range(counts.shape[0])]
    return np.sort(np.concatenate(chosen))


def old_finetune_subset(labels, per_class, seed):
    """finetune/data.per_class_subset (the indices of its Subset)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def old_finetune_split(codes, val_fraction, seed):
    """finetune/data.split_train_val (its sklearn call)."""
    n_val = round(val_fraction * len(codes))
    train, val = train_test_split(np.arange(len(codes)), test_size=n_val, random_state=seed,
                                  stratify=codes)
    return np.sort(train), np.sort(val)


# ------------------------------------------------------------------ the same draws


@pytest.mark.parametrize("codes", [IMBALANCED, SHUFFLED])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_every_seeded_draw_is_the_one_before(codes, seed):
    for k in (1, 2, 3, 5, 20):
        assert np.array_equal(at_most_per_class(codes, k, seed),
                              old_extract_subsample(codes, k, seed))
    for size in (1, 4, 9, 30):
        assert np.array_equal(proportional(codes, size, seed),
                              old_transfer_subsample(codes, size, seed))
    labels = np.array(["cat", "dog", "eel", "fox"])[codes]
    assert np.array_equal(exactly_per_class(codes, 3, seed),
                          old_finetune_subset(labels, 3, seed))
    for fraction in (0.2, 0.5):
        got, want = train_validation_split(codes, fraction, seed), old_finetune_split(
            codes, fraction, seed)
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_few_shot_draws_are_the_ones_before_when_no_class_is_kept_whole():
    """The few-shot analysis drew a permutation of a class kept whole; the one sampler does
    not draw for it, so only a draw where some class has at most k samples and a later one
    more can differ (k above the smallest class, with unequal classes)."""
    for r in range(5):
        for codes, k in ((SHUFFLED, 20), (IMBALANCED, 2), (np.repeat([0, 1, 2], 60), 60)):
            assert np.array_equal(at_most_per_class(codes, k, np.random.default_rng([3, k, r])),
                                  old_analyses_subsample(codes, k, np.random.default_rng(
                                      [3, k, r])))


# ------------------------------------------------------------------ each meaning


def test_at_most_per_class_keeps_small_classes_whole_and_order():
    idx = at_most_per_class(IMBALANCED, 5, np.random.default_rng(0))
    assert np.bincount(IMBALANCED[idx]).tolist() == [5, 3, 5, 5]
    assert np.all(np.diff(idx) > 0) and idx.dtype == np.int64
    assert np.array_equal(idx, at_most_per_class(IMBALANCED, 5, 0))
    assert any(not np.array_equal(idx, at_most_per_class(IMBALANCED, 5, s)) for s in (1, 2))
    for k in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="positive integer"):
            at_most_per_class(IMBALANCED, k, 0)


def test_exactly_per_class_refuses_a_small_class_by_name():
    idx = exactly_per_class(IMBALANCED, 3, 4)
    assert np.bincount(IMBALANCED[idx]).tolist() == [3, 3, 3, 3]
    with pytest.raises(InputError, match=r"train data.*class 'b' has 3 samples, fewer than 4"):
        exactly_per_class(IMBALANCED, 4, 0, classes=["a", "b", "c", "d"], what="train data")


def test_proportional_is_exact_in_size_and_proportion():
    codes = np.repeat([0, 1, 2], [50, 30, 20])
    keep = proportional(codes, 10, 4)
    assert keep.shape == (10,) and np.all(np.diff(keep) > 0)
    assert np.bincount(codes[keep]).tolist() == [5, 3, 2]
    assert np.array_equal(proportional(codes, 10, 4), keep)
    assert np.bincount(codes[proportional(codes, 7, 0)]).sum() == 7  # largest remainders
    assert proportional(codes, 500, 0).shape == (100,)  # never more than there are


def test_train_validation_split_is_stratified_and_checked():
    train, val = train_validation_split(SHUFFLED, 0.2, 0)
    assert len(val) == 20 and np.intersect1d(train, val).size == 0
    assert np.bincount(SHUFFLED[val]).tolist() == [8, 5, 7]
    empty = train_validation_split(SHUFFLED, 0.0, 0)
    assert empty[1].size == 0 and empty[0].size == 100
    with pytest.raises(InputError, match="must be in"):
        train_validation_split(SHUFFLED, 1.0, 0)
    with pytest.raises(InputError, match="dataset too small for the split"):
        train_validation_split(np.array([0, 0, 1, 1]), 0.25, 0)
