"""Shared linear algebra of the Gaussian (LDA-style) scores: NCTI, SFDA, LogME, H-score.

Everything runs in torch float64 on the device of the input (numpy inputs are wrapped
without a copy and computed on the CPU), so the same code serves numpy, CPU tensors and
CUDA tensors. Inputs are never written to: every operation below is out of place.

Notation (``docs/methods-core.md``): X is (N, d), codes are the
labels mapped to 0..C-1, n_c the class counts, pi_c = n_c / N, mu_c the class means and
``shr_a(S) = (1 - a) S + a (tr S / d) I`` the shrinkage toward the scaled identity.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nctk.arrays import is_torch_tensor
from nctk.errors import InputError
from nctk.validation import EncodedLabels, check_matrix, encode_labels

F64 = torch.float64
#: Rows per block when a float32 (N, d) matrix is promoted to float64 on the fly, so that
#: no full float64 copy of the features is ever held.
CHUNK_ROWS = 8192
#: Largest normwise backward error accepted from the LU fallback of :func:`solve_spd`
#: (LU with partial pivoting reaches ~d eps in practice; more means it broke down).
BACKWARD_TOLERANCE = 1e-10


@dataclass(frozen=True)
class Labelled:
    """Validated inputs of a score.

    Attributes:
        x: (N, d) float32 or float64 tensor on the compute device (may share memory with
            the caller's array: read only).
        codes: (N,) int64 tensor of class codes 0..C-1 on the same device.
        labels: the label encoding (original classes and counts).
        counts: (C,) float64 class counts on the device.
    """

    x: torch.Tensor
    codes: torch.Tensor
    labels: EncodedLabels
    counts: torch.Tensor

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_classes(self) -> int:
        return self.labels.num_classes

    @property
    def priors(self) -> torch.Tensor:
        return self.counts / self.n


def prepare(x: Any, y: Any, *, device: Any = None, min_per_class: int = 1,
            name: str = "features") -> Labelled:
    """Validate features and labels and place them on the compute device.

    Args:
        x: (N, d) numpy array or torch tensor (CPU or CUDA), finite.
        y: (N,) labels of any hashable values (mapped to 0..C-1 here, once).
        device: None = the tensor's own device (CPU for numpy), else a torch device.
        min_per_class: smallest class size the method can handle.
    """
    if is_torch_tensor(x):
        t = _check_tensor(x, name)
    else:
        with warnings.catch_warnings():  # read-only arrays are fine: nothing writes to them
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(np.ascontiguousarray(check_matrix(x, name)))
    if t.dtype not in (torch.float32, F64):
        t = t.to(torch.float32 if t.dtype.is_floating_point and t.element_size() < 4 else F64)
    if device is not None:
        t = t.to(device)
    labels = encode_labels(y, t.shape[0], min_per_class=min_per_class)
    codes = torch.from_numpy(labels.codes).to(t.device)
    counts = torch.from_numpy(labels.counts).to(device=t.device, dtype=F64)
    return Labelled(t, codes, labels, counts)


def _check_tensor(x: torch.Tensor, name: str) -> torch.Tensor:
    """Validate a tensor on its own device (no host copy of the features)."""
    if x.is_complex() or not (x.is_floating_point() or x.dtype in
                               (torch.int8, torch.int16, torch.int32, torch.int64,
                                torch.uint8)):
        raise InputError(f"expected real numbers, got dtype {x.dtype}", array=name)
    if x.ndim != 2:
        raise InputError(f"expected a 2-D array (samples, dims), got shape {tuple(x.shape)}",
                         array=name)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(f"is empty (shape {tuple(x.shape)})", array=name)
    x = x.detach()
    if x.is_floating_point():
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            row, col = (int(v) for v in torch.nonzero(bad)[0])
            kind = "NaN" if bool(torch.isnan(x[row, col])) else "inf"
            raise InputError(f"contains {int(bad.sum())} non-finite value(s) ({kind} first "
                             f"at row {row}, column {col})", array=name)
    return x


def block_rows(width: int, elements: int = 1 << 20) -> int:
    """Rows per block of ``width`` columns: about ``elements`` entries (8 MB in float64),
    between 256 and 65,536 rows. Blocks that small stay in cache when promoted; blocks
    not smaller keep the count of (multi-threaded) operations low for narrow features,
    where thousands of tiny operations cost more in thread synchronisation than in work."""
    return max(256, min(65536, elements // max(width, 1)))


def row_blocks(n: int, rows: int = CHUNK_ROWS) -> list[slice]:
    """Slices covering 0..n in blocks of ``rows``."""
    return [slice(i, min(i + rows, n)) for i in range(0, n, rows)]


def column_mean(x: torch.Tensor) -> torch.Tensor:
    """(d,) float64 mean of the rows, accumulated block by block (no float64 copy of x)."""
    total = torch.zeros(x.shape[1], dtype=F64, device=x.device)
    # small blocks promoted, then summed: several times faster on the CPU than
    # ``sum(dtype=float64)`` over large blocks, and the promoted block stays in cache
    for b in row_blocks(x.shape[0], block_rows(x.shape[1])):
        total += x[b].to(F64).sum(0)
    return total / x.shape[0]


def class_sums(x: torch.Tensor, codes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, d) float64 per-class sums of the rows of ``x``, accumulated block by block."""
    sums = torch.zeros(num_classes, x.shape[1], dtype=F64, device=x.device)
    # one-hot^T X as a GEMM per block: faster than index_add_
    for b in row_blocks(x.shape[0], block_rows(x.shape[1])):
        sums.addmm_(one_hot(codes[b], num_classes).T, x[b].to(F64))
    return sums


def one_hot(codes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, C) float64 one-hot rows of the class codes."""
    return torch.nn.functional.one_hot(codes, num_classes).to(F64)


def class_means(data: Labelled, x: torch.Tensor | None = None) -> torch.Tensor:
    """(C, d) float64 class means mu_c of ``x`` (default: the features)."""
    x = data.x if x is None else x
    return class_sums(x, data.codes, data.num_classes) / data.counts[:, None]


def within_scatter(x: torch.Tensor, codes: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """(d, d) float64 W = sum_i (x_i - mu_{y_i})(x_i - mu_{y_i})^T, blockwise in float64."""
    w = torch.zeros(x.shape[1], x.shape[1], dtype=F64, device=x.device)
    for b in row_blocks(x.shape[0]):
        r = x[b].to(F64) - means[codes[b]]
        w.addmm_(r.T, r)
    return w


def centred_gram(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """(d, d) float64 total scatter T = (X - 1 mean^T)^T (X - 1 mean^T), blockwise."""
    g = torch.zeros(x.shape[1], x.shape[1], dtype=F64, device=x.device)
    for b in row_blocks(x.shape[0]):
        r = x[b].to(F64) - mean
        g.addmm_(r.T, r)
    return g


def shrink(s: torch.Tensor, alpha: float) -> torch.Tensor:
    """shr_a(S) = (1 - a) S + a (tr S / d) I (sklearn ``shrunk_covariance``)."""
    d = s.shape[0]
    eye = torch.eye(d, dtype=s.dtype, device=s.device)
    return (1.0 - alpha) * s + alpha * (torch.trace(s) / d) * eye


def top_eigh(a: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k eigenpairs of a symmetric matrix, eigenvalues descending (exact, no RNG).

    ``torch.linalg.eigh`` on every device. On one thread LAPACK's subset solver
    (``scipy.linalg.eigh(subset_by_index=...)``) is 1.5x faster at n = 1,024, but scipy's
    wrapper holds the GIL: models scored side by side in threads then wait for each
    other (16 models x 1,200 samples on 2 cores: 2.30 s with it, 1.83 s without). The
    same solver runs for every model, and a pool scored side by side gives each model the
    same single thread (``ranking._map``), so a model's score there does not depend on
    which models share the pool; with another thread count the last bits may differ.
    """
    n = a.shape[0]
    vals, vecs = torch.linalg.eigh(a)
    return vals[n - k:].flip(0), vecs[:, n - k:].flip(1)


def sample_gram(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """(N, N) float64 K = X_c X_c^T, accumulated over column blocks (no float64 copy of X)."""
    n, d = x.shape
    gram = torch.zeros(n, n, dtype=F64, device=x.device)
    for b in row_blocks(d, block_rows(n)):
        block = x[:, b].to(F64) - mean[b]
        gram.addmm_(block, block.T)
    return gram


def gaussian_logits(x: torch.Tensor, means: torch.Tensor, precision_means: torch.Tensor,
                    priors: torch.Tensor) -> torch.Tensor:
    """(N, C) LDA logits l_ic = x_i^T S^-1 mu_c - 1/2 mu_c^T S^-1 mu_c + log pi_c.

    ``precision_means`` is the (d, C) matrix S^-1 mu^T. ``x`` may be float32: it is
    promoted block by block.
    """
    bias = -0.5 * (means * precision_means.T).sum(1) + priors.log()
    return torch.cat([x[b].to(F64) @ precision_means for b in row_blocks(x.shape[0])]) + bias


def solve_spd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A^-1 B for a symmetric positive definite (d, d) A and (d, m) B.

    Cholesky; when it breaks down (A is not positive definite to working precision: its
    smallest eigenvalues are rounding noise), LU with partial pivoting, whose result is
    checked: it must be finite with a normwise backward error
    ||A X - B||_F / (||A||_F ||X||_F + ||B||_F) of at most ``BACKWARD_TOLERANCE``, i.e. X
    solves a system within that relative distance of the given one (its forward error can
    still reach cond(A) times that). A singular A, or an LU result failing the check,
    raises :class:`InputError`: no solution means anything then. (Callers pass a shrunk
    within-class covariance, positive definite in exact arithmetic.)
    """
    factor, info = torch.linalg.cholesky_ex(a)
    if int(info) == 0:
        return torch.cholesky_solve(b, factor)
    try:
        x = torch.linalg.solve(a, b)
    except RuntimeError:  # torch.linalg.LinAlgError: an exactly zero pivot
        x = torch.full_like(b, math.nan)
    residual = torch.linalg.matrix_norm(a @ x - b)
    scale = torch.linalg.matrix_norm(a) * torch.linalg.matrix_norm(x) + torch.linalg.matrix_norm(b)
    backward = to_float(residual / scale)
    if not backward <= BACKWARD_TOLERANCE:  # NaN fails too
        raise InputError("gives a within-class covariance that is singular to working "
                         f"precision (not positive definite, and LU's backward error is "
                         f"{backward:.1e}): the features are degenerate", array="features")
    return x


def true_class_probability(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """(N,) softmax posterior of each sample's own class (max-subtracted softmax)."""
    return torch.softmax(logits, dim=1).gather(1, codes[:, None])[:, 0]


def to_float(t: torch.Tensor) -> float:
    """A 0-d tensor as a Python float (one device sync)."""
    return float(t.item())
