"""nctk.stats.ClassStats: streaming, merging, backends and bad input, checked against
direct two-pass formulas written out here."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from nctk.errors import InputError
from nctk.stats import ClassStats, LabelCodes


def _data(n=300, d=6, k=4, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)  # every class present
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 2, d) + rng.normal(size=(k, d))[y] + offset
    return x, y


def _direct(x, y, k):
    """Two-pass textbook statistics (float64), independent of the library."""
    means = np.stack([x[y == c].mean(0) for c in range(k)])
    within = sum((x[y == c] - means[c]).T @ (x[y == c] - means[c]) for c in range(k)) / len(x)
    centred = means - means.mean(0)
    between = centred.T @ centred / k
    variances = np.array([((x[y == c] - means[c]) ** 2).sum(1).mean() for c in range(k)])
    return means, within, between, variances


def _assert_matches(result, x, y, k, rtol=1e-7):
    means, within, between, variances = _direct(x, y, k)
    np.testing.assert_array_equal(result.counts, np.bincount(y, minlength=k))
    np.testing.assert_allclose(result.means, means, rtol=rtol, atol=rtol * np.abs(means).max())
    np.testing.assert_allclose(result.within_covariance, within, rtol=rtol,
                               atol=rtol * np.abs(within).max())
    np.testing.assert_allclose(result.between_covariance, between, rtol=rtol,
                               atol=rtol * np.abs(between).max())
    np.testing.assert_allclose(result.class_variances, variances, rtol=rtol)
    np.testing.assert_allclose(result.global_mean, means.mean(0), rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(result.sample_mean, x.mean(0), rtol=rtol, atol=1e-7)


def test_one_pass_matches_direct_formulas():
    x, y = _data()
    _assert_matches(ClassStats(4, 6).update(x, y).compute(), x, y, 4)


@pytest.mark.parametrize("batch", [1, 7, 64, 1000])
def test_streaming_any_batch_size_equals_one_pass(batch):
    x, y = _data()
    stats = ClassStats(4, 6)
    for start in range(0, len(x), batch):
        stats.update(x[start:start + batch], y[start:start + batch])
    _assert_matches(stats.compute(), x, y, 4)


def test_merging_shards_equals_one_pass():
    x, y = _data(n=500)
    cuts = [0, 3, 90, 91, 260, 500]
    shards = [ClassStats(4, 6).update(x[a:b], y[a:b]) for a, b in itertools.pairwise(cuts)]
    left = shards[0].merge(shards[1]).merge(shards[2])
    right = shards[3].merge(shards[4])
    _assert_matches(left.merge(right).compute(), x, y, 4)


def test_merging_an_empty_state_changes_nothing_and_merge_into_empty_copies():
    x, y = _data()
    full = ClassStats(4, 6).update(x, y)
    full.merge(ClassStats(4, 6))
    empty = ClassStats(4, 6).merge(full)
    full.update(x[:10], y[:10])  # must not leak into `empty`
    _assert_matches(empty.compute(), x, y, 4)


def test_large_offset_is_numerically_stable():
    # mean 1e6 with unit spread: a raw sum of squares would lose every digit of W
    x, y = _data(offset=1e6)
    stats = ClassStats(4, 6)
    for start in range(0, len(x), 10):
        stats.update(x[start:start + 10], y[start:start + 10])
    _, within, _, _ = _direct(x, y, 4)
    np.testing.assert_allclose(stats.compute().within_covariance, within, rtol=1e-7,
                               atol=1e-7 * np.abs(within).max())


def test_numpy_and_torch_cpu_agree():
    x, y = _data()
    ref = ClassStats(4, 6).update(x, y).compute()
    tensors = ClassStats(4, 6).update(torch.tensor(x), torch.tensor(y)).compute()
    on_device = ClassStats(4, 6, device="cpu").update(x, y).compute()
    for got in (tensors, on_device):
        np.testing.assert_allclose(got.within_covariance, ref.within_covariance, rtol=1e-7,
                                   atol=1e-7)
        np.testing.assert_allclose(got.means, ref.means, rtol=1e-7)
    mixed = ClassStats(4, 6).update(torch.tensor(x[:100]), y[:100])
    mixed.merge(ClassStats(4, 6).update(x[100:], y[100:]))
    _assert_matches(mixed.compute(), x, y, 4)


def test_float32_input_accumulates_in_float64():
    x, y = _data()
    x32 = x.astype(np.float32)
    got = ClassStats(4, 6).update(x32, y).compute()
    assert got.within_covariance.dtype == np.float64
    _assert_matches(got, x32.astype(np.float64), y, 4, rtol=1e-7)


def test_per_class_second_moments_are_uncentred_class_scatter():
    x, y = _data(n=200)
    stats = ClassStats(4, 6, per_class_cov=True)
    for start in range(0, 200, 17):
        stats.update(x[start:start + 17], y[start:start + 17])
    other = ClassStats(4, 6, per_class_cov=True).update(x, y)
    seen = []
    for classes, second in stats.class_second_moments(chunk=3):
        for j, c in enumerate(classes):
            h = x[y == c]
            np.testing.assert_allclose(second[j], h.T @ h, rtol=1e-7)
            seen.append(c)
    assert seen == [0, 1, 2, 3]
    merged = ClassStats(4, 6, per_class_cov=True).update(x[:50], y[:50])
    merged.merge(ClassStats(4, 6, per_class_cov=True).update(x[50:], y[50:]))
    for (_, a), (_, b) in zip(merged.class_second_moments(),
                                  other.class_second_moments(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-7)


def test_per_class_scatter_of_a_chunk_of_classes():
    x, y = _data(n=200)
    chunk = ClassStats(4, 6, per_class_cov=[3, 1])
    for start in range(0, 200, 23):
        chunk.update(x[start:start + 23], y[start:start + 23])
    _assert_matches(chunk.compute(), x, y, 4)
    on_torch = ClassStats(4, 6, per_class_cov=[3, 1], device="cpu")
    for start in range(0, 200, 31):
        on_torch.update(torch.tensor(x[start:start + 31]), y[start:start + 31])
    for state in (chunk, on_torch):
        tiles = list(state.class_second_moments())
        assert len(tiles) == 1 and list(tiles[0][0]) == [1, 3]
        for j, c in enumerate([1, 3]):
            np.testing.assert_allclose(tiles[0][1][j], x[y == c].T @ x[y == c], rtol=1e-7)


def test_caller_arrays_are_not_modified():
    x, y = _data()
    x_copy, y_copy = x.copy(), y.copy()
    t = torch.tensor(x)
    ClassStats(4, 6).update(x, y).update(t, y).compute()
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(y, y_copy)
    assert torch.equal(t, torch.tensor(x_copy))


def test_from_arrays_and_label_codes_map_arbitrary_labels():
    x, y = _data()
    names = np.array(["cat", "dog", "emu", "yak"])[y]
    stats, codes = ClassStats.from_arrays(x, names)
    assert list(codes.classes) == ["cat", "dog", "emu", "yak"]
    _assert_matches(stats.compute(), x, y, 4)
    fitted = LabelCodes.fit(names)
    np.testing.assert_array_equal(fitted.transform(names[::-1]), y[::-1])
    with pytest.raises(InputError, match="'owl' is not one of the 4 known classes"):
        fitted.transform(np.array(["cat", "owl"]))
    gapped = LabelCodes.fit(np.array([10, 30, 20]))
    np.testing.assert_array_equal(gapped.transform([30, 10]), [2, 0])


@pytest.mark.parametrize("features, labels, message", [
    (np.ones((3, 5)), [0, 1, 2], "has 5 columns but the statistics were created for d=6"),
    (np.ones(6), [0], "expected a 2-D array"),
    (np.full((2, 6), np.nan), [0, 1], "NaN or inf"),
    (np.ones((2, 6)), [0, 4], r"codes must lie in 0..3"),
    (np.ones((2, 6)), [0, -1], r"codes must lie in 0..3"),
    (np.ones((2, 6)), [0], "has 1 entries but the features have 2 rows"),
    (np.ones((2, 6)), ["a", "b"], "must be integer class codes"),
    (np.ones((2, 6)), [0.5, 1], "must be integer class codes"),
])
def test_bad_batches_raise_input_error(features, labels, message):
    stats = ClassStats(4, 6)
    with pytest.raises(InputError, match=message):
        stats.update(features, labels)
    with pytest.raises(InputError, match=message):
        ClassStats(4, 6, device="cpu").update(features, labels)
    if np.asarray(labels).dtype.kind == "i":
        with pytest.raises(InputError, match=message):
            ClassStats(4, 6, device="cpu").update(torch.tensor(features), torch.tensor(labels))


def test_empty_class_and_mismatched_merge_raise():
    x, y = _data()
    stats = ClassStats(5, 6).update(x, y)
    with pytest.raises(InputError, match=r"class\(es\) \[4\] have no samples"):
        stats.compute()
    with pytest.raises(InputError, match="cannot merge statistics of shape"):
        ClassStats(4, 6).merge(ClassStats(4, 7))
    with pytest.raises(InputError, match="per-class scatter of different classes"):
        ClassStats(4, 6).merge(ClassStats(4, 6, per_class_cov=True))
    with pytest.raises(InputError, match="per_class_cov must be"):
        ClassStats(4, 6, per_class_cov=[1, 4])
    with pytest.raises(InputError, match="per_class_cov=True"):
        next(ClassStats(4, 6).update(x, y).class_second_moments())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x, y = _data()
    ref = ClassStats(4, 6).update(x, y).compute()
    got = ClassStats(4, 6, device="cuda").update(torch.tensor(x, device="cuda"), y).compute()
    np.testing.assert_allclose(got.within_covariance, ref.within_covariance, rtol=1e-7)


def test_the_state_does_not_grow_with_the_number_of_samples():
    # "memory is O(Kd + d^2) ... and never grows with N": one batch or forty, same state
    x, y = _data(n=4000)
    one, many = ClassStats(4, 6), ClassStats(4, 6)
    one.update(x[:100], y[:100])
    for start in range(0, 4000, 100):
        many.update(x[start:start + 100], y[start:start + 100])

    def held(stats):
        return sum(v.nbytes for v in vars(stats._state).values() if v is not None)

    assert held(many) == held(one) == (4 + 4 * 6 + 6 * 6 + 4) * 8
