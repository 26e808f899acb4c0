"""Streaming class statistics: the state every neural-collapse measure is computed from.

:class:`ClassStats` is the **accumulator**, a torchmetrics-style state (``update`` per
batch, ``merge`` across shards or GPUs, ``compute`` once); :class:`ClassSummary` is the
**summary** its ``compute`` returns (means and covariances, plain float64 arrays), which the
measures of :mod:`nctk.collapse` read. The accumulator keeps, per class k of K and in
float64 whatever the input dtype,

- the count n_k and the mean mu_k (d,),
- the pooled within-class scatter W = sum_i (x_i - mu_{y_i})(x_i - mu_{y_i})^T (d, d),
- the scatter traces s_k = sum_{i in k} ||x_i - mu_k||^2,
- optionally the per-class centred scatter C_k (d, d) of every class
  (``per_class_cov=True``) or of a chunk of classes (``per_class_cov=[codes]``),

so memory is O(Kd + d^2) (plus d^2 per class whose scatter is kept) and never grows
with N. Keeping the scatter of one chunk of classes per pass bounds the memory of the
streaming numerical rank when K d^2 does not fit.

Batches and shards are combined with the exact pairwise formula of Chan, Golub & LeVeque
(1979): for two parts a, b of class k with delta = mu_b - mu_a and n = n_a + n_b,
``mu = mu_a + delta n_b/n`` and ``C = C_a + C_b + (n_a n_b / n) delta delta^T``. Each batch
is centred on its own class means before its scatter is formed, so no sum of raw squares
(which cancels catastrophically when ||mu|| >> spread) is ever subtracted.

numpy input is accumulated with numpy; torch tensors (CPU or CUDA), or any input when a
``device`` is given, with torch on that device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse

from nctk.arrays import is_torch_tensor, to_numpy
from nctk.errors import InputError
from nctk.validation import check_matrix, encode_labels


@dataclass(frozen=True)
class ClassSummary:
    """The summary of class statistics (float64 numpy arrays), what ``ClassStats.compute``
    returns.

    Normalisations (those of Li et al. 2023 and rhubarbwu/neural-collapse):

    Attributes:
        counts: (K,) int64 samples per class n_k; N = sum n_k.
        means: (K, d) class means mu_k.
        global_mean: (d,) m_G = (1/K) sum_k mu_k, the mean of the class means.
        sample_mean: (d,) (1/N) sum_k n_k mu_k, the mean of all samples.
        within_covariance: (d, d) Sigma_W = W / N, pooled over samples, biased.
        between_covariance: (d, d) Sigma_B = (1/K) sum_k (mu_k - m_G)(mu_k - m_G)^T.
        class_variances: (K,) Var_k = (1/n_k) sum_{i in k} ||x_i - mu_k||^2 = tr Cov_k (biased).
    """

    counts: np.ndarray
    means: np.ndarray
    global_mean: np.ndarray
    sample_mean: np.ndarray
    within_covariance: np.ndarray
    between_covariance: np.ndarray
    class_variances: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.counts.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.counts.sum())

    @property
    def centred_means(self) -> np.ndarray:
        """(K, d) mu_k - m_G."""
        return self.means - self.global_mean


class ClassStats:
    """The accumulator: per-class counts, means and centred scatter, batch by batch.

    Args:
        num_classes: K; labels passed to :meth:`update` are integer codes 0..K-1 (map
            arbitrary labels with :func:`encode_labels` or :meth:`LabelCodes.transform`).
        dim: feature dimension d.
        device: None keeps numpy input on numpy and torch input on its own device; a torch
            device (``"cpu"``, ``"cuda"``, ...) accumulates with torch there.
        per_class_cov: keep the per-class centred scatter (needed for the streaming
            numerical rank): ``True`` for every class (K d^2 float64 values), or a
            sequence of class codes to keep only those (one chunk per pass).

    Example::

        stats = ClassStats(10, 512)
        for x, y in batches:
            stats.update(x, y)
        result = stats.compute()
    """

    def __init__(self, num_classes: int, dim: int, *, device: Any = None,
                 per_class_cov: bool | Sequence[int] = False):
        if int(num_classes) < 1 or int(dim) < 1:
            raise InputError(f"num_classes and dim must be >= 1 (got {num_classes}, {dim})")
        self.num_classes = int(num_classes)
        self.dim = int(dim)
        self.scatter_classes = _scatter_classes(per_class_cov, self.num_classes)
        self.per_class_cov = self.scatter_classes.size > 0
        # slot of each class in the per-class scatter array, -1 where it is not kept
        self._slot = np.full(self.num_classes, -1, dtype=np.int64)
        self._slot[self.scatter_classes] = np.arange(self.scatter_classes.size)
        self._ops: _Ops | None = None if device is None else _TorchOps(device)
        self._state: _State | None = None

    # ------------------------------------------------------------------ accumulation
    def update(self, features: Any, labels: Any) -> ClassStats:
        """Add a batch: ``features`` (B, d) float, ``labels`` (B,) ints in 0..K-1."""
        ops = self._ops_for(features)
        x = ops.features(features, self.dim)
        codes = ops.labels(labels, x.shape[0], self.num_classes)
        batch, blocks = _batch_state(ops, x, codes, self.num_classes,
                                     self._slot >= 0 if self.per_class_cov else None)
        self._combine(batch, blocks)
        return self

    def merge(self, other: ClassStats) -> ClassStats:
        """Fold another state (another shard or GPU) into this one, exactly (Chan et al.)."""
        if not isinstance(other, ClassStats):
            raise TypeError(f"cannot merge {type(other).__name__} into ClassStats")
        if (other.num_classes, other.dim) != (self.num_classes, self.dim):
            raise InputError(f"cannot merge statistics of shape (K={other.num_classes}, "
                             f"d={other.dim}) into (K={self.num_classes}, d={self.dim})")
        if not np.array_equal(other.scatter_classes, self.scatter_classes):
            raise InputError("cannot merge statistics that keep the per-class scatter of "
                             "different classes")
        if other._state is None:
            return self
        ops = self._ops_for(other._state.means)
        self._combine(ops.take(other._state))
        return self

    def _ops_for(self, example: Any) -> _Ops:
        if self._ops is None:
            self._ops = _TorchOps(example.device) if is_torch_tensor(example) else _NumpyOps()
        return self._ops

    def _combine(self, batch: _State, blocks: Iterator[Any] | None = None) -> None:
        """Chan et al.'s pairwise update of the state with ``batch``.

        ``blocks`` yields the batch's per-class scatter C_k for its kept classes in
        increasing order (so the per-class update runs one class at a time); by default
        it is read from ``batch.class_scatter``.
        """
        ops = self._ops
        if self._state is None:
            self._state = _empty_state(ops, self.num_classes, self.dim,
                                       self.scatter_classes.size)
        a, b = self._state, batch
        n = a.counts + b.counts
        seen = ops.nonzero(b.counts)
        na, nb, nn = (ops.as_float(c[seen]) for c in (a.counts, b.counts, n))
        delta = b.means[seen] - a.means[seen]
        weight = na * nb / nn
        a.scatter += b.scatter + (delta * weight[:, None]).T @ delta
        a.traces[seen] += b.traces[seen] + weight * (delta * delta).sum(1)
        a.means[seen] += delta * (nb / nn)[:, None]
        a.counts = n
        if a.class_scatter is None:
            return
        slots = self._slot[to_numpy(seen)]
        for j in np.flatnonzero(slots >= 0):
            block = b.class_scatter[slots[j]] if blocks is None else next(blocks)
            a.class_scatter[slots[j]] += block + weight[j] * delta[j][:, None] * delta[j][None, :]

    # ------------------------------------------------------------------ results
    @property
    def counts(self) -> np.ndarray:
        """(K,) int64 samples seen per class so far."""
        if self._state is None:
            return np.zeros(self.num_classes, dtype=np.int64)
        return to_numpy(self._state.counts).astype(np.int64)

    def compute(self) -> ClassSummary:
        """The finalised statistics; every class must have at least one sample."""
        counts = self.counts
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise InputError(f"class(es) {empty[:10].tolist()} have no samples; every one of "
                             f"the {self.num_classes} classes needs at least one",
                             array="labels")
        state = self._state
        means = to_numpy(state.means).astype(np.float64)
        global_mean = means.mean(0)
        centred = means - global_mean
        n = counts.sum()
        return ClassSummary(
            counts=counts,
            means=means,
            global_mean=global_mean,
            sample_mean=counts @ means / n,
            within_covariance=to_numpy(state.scatter).astype(np.float64) / n,
            between_covariance=centred.T @ centred / self.num_classes,
            class_variances=to_numpy(state.traces).astype(np.float64) / counts,
        )

    def class_second_moments(self, chunk: int = 16) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(classes, G)`` tiles: ``classes`` (c,) class codes and G (c, d, d) with
        G[j] = H_k H_k^T = C_k + n_k mu_k mu_k^T, the uncentred scatter of class
        ``classes[j]``, for every class whose scatter is kept.

        At most ``chunk`` d x d matrices are copied to host at once.
        """
        if not self.per_class_cov:
            raise InputError("per-class scatter was not kept; create ClassStats with "
                             "per_class_cov=True (or a list of classes)")
        self.compute()  # raises on empty classes
        state = self._state
        for start in range(0, self.scatter_classes.size, chunk):
            classes = self.scatter_classes[start:start + chunk]
            scatter = to_numpy(state.class_scatter[start:start + chunk]).astype(np.float64)
            means = to_numpy(state.means[classes]).astype(np.float64)
            counts = to_numpy(state.counts[classes]).astype(np.float64)
            yield classes, scatter + counts[:, None, None] * means[:, :, None] * means[:, None, :]

    @classmethod
    def from_arrays(cls, features: Any, labels: Any, *, device: Any = None,
                    per_class_cov: bool | Sequence[int] = False, min_per_class: int = 1,
                    ) -> tuple[ClassStats, LabelCodes]:
        """One pass over in-memory arrays with arbitrary labels (mapped by ``encode_labels``).

        Returns the state and the :class:`LabelCodes` used (row k = ``classes[k]``).
        """
        x = features
        if not is_torch_tensor(x):
            x = check_matrix(x, "features")
        encoded = encode_labels(labels, x.shape[0], "labels", min_per_class=min_per_class)
        stats = cls(encoded.num_classes, x.shape[1], device=device, per_class_cov=per_class_cov)
        stats.update(x, encoded.codes)
        return stats, LabelCodes(encoded.classes)


@dataclass(frozen=True)
class LabelCodes:
    """A fixed mapping from arbitrary label values to the codes 0..K-1 (sorted order).

    Use it to stream batches whose labels are strings or gapped integers::

        codes = LabelCodes.fit(all_labels)       # or LabelCodes(np.array(["cat", "dog"]))
        stats = ClassStats(codes.num_classes, d)
        stats.update(x, codes.transform(y))
    """

    classes: np.ndarray

    @classmethod
    def fit(cls, labels: Any) -> LabelCodes:
        return cls(encode_labels(labels, None, "labels", min_classes=1).classes)

    @property
    def num_classes(self) -> int:
        return int(self.classes.shape[0])

    def transform(self, labels: Any) -> np.ndarray:
        """(B,) int64 codes; a label not among ``classes`` raises InputError."""
        raw = encode_labels(labels, None, "labels", min_classes=1)
        pos = np.searchsorted(self.classes, raw.classes)
        pos_ok = np.minimum(pos, self.num_classes - 1)
        unknown = (pos >= self.num_classes) | (self.classes[pos_ok] != raw.classes)
        if unknown.any():
            raise InputError(f"label {raw.classes[unknown][0].item()!r} is not one of the "
                             f"{self.num_classes} known classes", array="labels")
        return pos[raw.codes].astype(np.int64)


# ---------------------------------------------------------------------- internals
@dataclass
class _State:
    counts: Any          # (K,) int64
    means: Any           # (K, d) float64
    scatter: Any         # (d, d) float64, pooled centred scatter W
    traces: Any          # (K,) float64, per-class tr C_k
    class_scatter: Any   # (K, d, d) float64 or None


def _scatter_classes(per_class_cov: bool | Sequence[int], k: int) -> np.ndarray:
    """The sorted class codes whose per-class scatter is kept."""
    if isinstance(per_class_cov, bool | np.bool_):
        return np.arange(k) if per_class_cov else np.zeros(0, dtype=np.int64)
    codes = np.unique(np.asarray(per_class_cov))
    if codes.size == 0 or codes.dtype.kind not in "iu" or codes[0] < 0 or codes[-1] >= k:
        raise InputError(f"per_class_cov must be True/False or class codes in 0..{k - 1}")
    return codes.astype(np.int64)


def _empty_state(ops: _Ops, k: int, dim: int, kept: int) -> _State:
    return _State(counts=ops.int_zeros(k), means=ops.zeros((k, dim)),
                  scatter=ops.zeros((dim, dim)), traces=ops.zeros((k,)),
                  class_scatter=ops.zeros((kept, dim, dim)) if kept else None)


def _batch_state(ops: _Ops, x: Any, codes: Any, k: int, keep: np.ndarray | None
                 ) -> tuple[_State, Iterator[Any] | None]:
    """Exact statistics of one batch, each class centred on its own batch mean, and
    (with a ``keep`` mask over classes) a generator of the per-class scatter of the kept
    classes present."""
    counts = ops.bincount(codes, k)
    means = ops.class_sums(x, codes, k)
    seen = ops.nonzero(counts)
    means[seen] /= ops.as_float(counts[seen])[:, None]
    centred = x - means[codes]
    traces = ops.class_sums((centred * centred).sum(1)[:, None], codes, k)[:, 0]
    state = _State(counts=counts, means=means, scatter=centred.T @ centred, traces=traces,
                   class_scatter=None)
    return state, None if keep is None else _class_blocks(ops, centred, codes, counts, keep)


def _class_blocks(ops: _Ops, centred: Any, codes: Any, counts: Any, keep: np.ndarray
                  ) -> Iterator[Any]:
    """(n_k, d)^T (n_k, d) for each kept class present, in increasing class order."""
    order = ops.argsort(codes)
    sizes = to_numpy(counts)
    ends = np.cumsum(sizes)
    for cls in np.flatnonzero((sizes > 0) & keep):
        rows = centred[order[ends[cls] - sizes[cls]:ends[cls]]]
        yield rows.T @ rows


class _Ops:
    """The handful of array operations that differ between numpy and torch."""

    def features(self, x: Any, dim: int) -> Any: ...
    def labels(self, y: Any, n: int, k: int) -> Any: ...
    def bincount(self, codes: Any, k: int) -> Any: ...
    def class_sums(self, x: Any, codes: Any, k: int) -> Any: ...
    def nonzero(self, counts: Any) -> Any: ...
    def as_float(self, x: Any) -> Any: ...
    def zeros(self, shape: tuple[int, ...]) -> Any: ...
    def int_zeros(self, k: int) -> Any: ...
    def argsort(self, codes: Any) -> Any: ...
    def take(self, state: _State) -> _State: ...


def _check_shape(shape: tuple[int, ...], dim: int) -> None:
    if len(shape) != 2:
        raise InputError(f"expected a 2-D array (samples, dims), got shape {tuple(shape)}",
                         array="features")
    if shape[1] != dim:
        raise InputError(f"has {shape[1]} columns but the statistics were created for d={dim}",
                         array="features")


def _check_codes(codes: np.ndarray, n: int, k: int) -> np.ndarray:
    if codes.ndim != 1:
        raise InputError(f"expected a 1-D array, got shape {codes.shape}", array="labels")
    if codes.shape[0] != n:
        raise InputError(f"has {codes.shape[0]} entries but the features have {n} rows",
                         array="labels")
    if codes.dtype.kind == "f" and np.all(np.isfinite(codes)) and np.all(codes == np.round(codes)):
        codes = codes.astype(np.int64)
    if codes.dtype.kind not in "iu":
        raise InputError(f"must be integer class codes 0..{k - 1} (got dtype {codes.dtype}); "
                         "map other labels with nctk.stats.LabelCodes", array="labels")
    if codes.size:
        _check_code_range(int(codes.min()), int(codes.max()), k)
    return codes.astype(np.int64, copy=False)


def _check_code_range(low: int, high: int, k: int) -> None:
    if low < 0 or high >= k:
        raise InputError(f"codes must lie in 0..{k - 1}, found {low}..{high}", array="labels")


def _check_finite(ok: bool) -> None:
    if not ok:
        raise InputError("contains NaN or inf", array="features")


class _NumpyOps(_Ops):
    def features(self, x: Any, dim: int) -> np.ndarray:
        arr = to_numpy(x)
        _check_shape(arr.shape, dim)
        arr = arr.astype(np.float64)  # a copy: the caller's array is never touched
        _check_finite(bool(np.isfinite(arr).all()))
        return arr

    def labels(self, y: Any, n: int, k: int) -> np.ndarray:
        return _check_codes(to_numpy(y), n, k)

    def bincount(self, codes: np.ndarray, k: int) -> np.ndarray:
        return np.bincount(codes, minlength=k).astype(np.int64)

    def class_sums(self, x: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
        # a sparse (K, B) indicator product is O(B d), where a dense one-hot GEMM is O(K B d)
        indicator = scipy.sparse.csr_matrix(
            (np.ones(codes.shape[0]), (codes, np.arange(codes.shape[0]))),
            shape=(k, codes.shape[0]))
        return np.asarray(indicator @ x)

    def nonzero(self, counts: np.ndarray) -> np.ndarray:
        return np.flatnonzero(counts)

    def as_float(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float64)

    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape)

    def int_zeros(self, k: int) -> np.ndarray:
        return np.zeros(k, dtype=np.int64)

    def argsort(self, codes: np.ndarray) -> np.ndarray:
        return np.argsort(codes, kind="stable")

    def take(self, state: _State) -> _State:
        return _State(*(None if v is None else to_numpy(v).astype(
            np.int64 if i == 0 else np.float64) for i, v in enumerate(_fields(state))))


class _TorchOps(_Ops):
    def __init__(self, device: Any):
        import torch

        self.torch = torch
        self.device = torch.device(device)

    def features(self, x: Any, dim: int) -> Any:
        torch = self.torch
        t = x if is_torch_tensor(x) else torch.as_tensor(to_numpy(x))
        _check_shape(tuple(t.shape), dim)
        if t.dtype.is_complex or t.dtype == torch.bool:
            raise InputError(f"expected real numbers, got dtype {t.dtype}", array="features")
        t = t.detach().to(device=self.device, dtype=torch.float64)
        _check_finite(bool(torch.isfinite(t).all()))
        return t

    def labels(self, y: Any, n: int, k: int) -> Any:
        torch = self.torch
        integer = is_torch_tensor(y) and not (y.dtype.is_floating_point or y.dtype.is_complex
                                              or y.dtype == torch.bool)
        if not (integer and y.ndim == 1 and y.shape[0] == n > 0):
            return torch.as_tensor(_check_codes(to_numpy(y), n, k), device=self.device)
        # integer tensors are checked where they are, without a copy to the host
        codes = y.detach().to(device=self.device, dtype=torch.int64)
        low, high = (int(v) for v in torch.aminmax(codes))
        _check_code_range(low, high, k)
        return codes

    def bincount(self, codes: Any, k: int) -> Any:
        return self.torch.bincount(codes, minlength=k).to(self.torch.int64)

    def class_sums(self, x: Any, codes: Any, k: int) -> Any:
        out = self.torch.zeros((k, x.shape[1]), dtype=x.dtype, device=x.device)
        return out.index_add_(0, codes, x)

    def nonzero(self, counts: Any) -> Any:
        return self.torch.nonzero(counts).reshape(-1)

    def as_float(self, x: Any) -> Any:
        return x.to(self.torch.float64)

    def zeros(self, shape: tuple[int, ...]) -> Any:
        return self.torch.zeros(shape, dtype=self.torch.float64, device=self.device)

    def int_zeros(self, k: int) -> Any:
        return self.torch.zeros(k, dtype=self.torch.int64, device=self.device)

    def argsort(self, codes: Any) -> Any:
        return self.torch.argsort(codes, stable=True)

    def take(self, state: _State) -> _State:
        torch = self.torch
        values = []
        for i, v in enumerate(_fields(state)):
            if v is not None:
                v = torch.as_tensor(v).to(device=self.device,
                                          dtype=torch.int64 if i == 0 else torch.float64)
                v = v.clone()
            values.append(v)
        return _State(*values)


def _fields(state: _State) -> tuple[Any, ...]:
    return (state.counts, state.means, state.scatter, state.traces, state.class_scatter)
