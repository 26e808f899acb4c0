"""Principal subspace of a feature matrix: mixed precision, refined and checked in float64.

The top-k principal components of X (N, d) are the top-k eigenvectors of the centred
scatter A = X_c^T X_c (d, d), or, when N < d, follow from those of the sample Gram
A = X_c X_c^T (N, N). Forming A exactly costs 2 N d min(N, d) flops at the float64 rate
(plus, on the CPU, a float32 -> float64 conversion of every block of X). Here:

1. A is formed in **float32** (row blocks centred and scaled by a power of two so that
   nothing overflows or underflows: features scaled by 1e30 or 1e-30 work) and its top
   p = k + ``OVERSAMPLE`` eigenvectors V are taken. This is the only O(N d min(N, d)) work
   and it runs at the float32 rate. The float32 Gram is accurate to ~1e-7 of its norm,
   so V is off the exact eigenvectors by an angle of ~1e-6 (more for small gaps);
2. **one float64 pass** over X (row blocks promoted into one reused buffer, never a
   float64 copy of X) forms W = X_c V and A V exactly; **Rayleigh-Ritz** on
   B = W^T W = V^T A V gives Ritz values theta and vectors y_j = V q_j with exact
   residuals r_j = A y_j - theta_j y_j;
3. one **Jacobi-Davidson correction**, y_j + t_j with (theta_j I - P A P) t_j = r_j
   (P projects out the basis), solved by conjugate gradients with the float32 Gram in
   place of A: the residual is exact, so the angle is squared (~1e-6 -> ~1e-11);
4. a second float64 pass and Rayleigh-Ritz on the corrected basis, then a **residual
   check**: the estimated sine of the angle between the top-k Ritz subspace and the exact
   one (:func:`angle_bound`) must be at most ``SUBSPACE_TOLERANCE``; otherwise (a
   spectrum clustered at the k-th value, where even the exact subspace is ill-determined,
   or a float32 Gram useless for the data) the exact float64 path runs instead. Step 3-4
   are skipped when the first Rayleigh-Ritz already passes the check.

The residuals alone cannot see a direction the basis missed altogether (a basis of the
exact eigenvectors 2..p+1 has zero residuals), so the check also needs a **certificate**
that no eigenvalue of A outside the basis comes near theta_k (:func:`complement_bound`).
By Cauchy interlacing the compression of A to the complement of the basis has trace
tr A - sum_j theta_j and its eigenvalues below the top one are at least
lambda_{p+2}, lambda_{p+3}, ..., so its largest eigenvalue is at most
sum_{j<=p+1} lambda_j(A) - sum_{j<=p} theta_j: the exact trace minus the captured Ritz
values, less the mass that must lie outside anyway. The sum of A's top p+1 eigenvalues is
bounded through the float32 Gram's eigen-decomposition M = V diag(g) V^T (Ky Fan, with
r = p + 1): sum_{j<=r} lambda_j(A) <= sum_{j<=r} g_j + sqrt(r) (||G^(1/2) (V^T V - I)
G^(1/2)||_F + ||A - M||_F), G = diag(g), both norms bounded from ``PROBES`` seeded
Gaussian probes (a Chernoff bound: each fails with probability below 1.6e-12). A missed
top eigenvector leaves about lambda_1 in the bound, above theta_k, and the exact path
runs.

Measured on the test and benchmark data (rank-deficient, clustered, N < d, large mean,
1e30 scale): angles 1e-13..2e-11 to the exact subspace, variances within 2e-15, NCTI terms
within 3e-13 of the exact float64 computation; ``benchmarks/bench_scores.py`` prints the
deviation of every run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from nctk.transfer._gaussian import (
    F64,
    block_rows,
    centred_gram,
    row_blocks,
    sample_gram,
    top_eigh,
)

#: Extra eigenvectors taken from the float32 Gram: they absorb the directions just below
#: the k-th and give the Ritz gap theta_k - theta_{k+1} that the residual check needs.
OVERSAMPLE = 8
#: Accept the refined subspace when the estimated sine of its angle to the exact one is
#: at most this (the estimate runs 3-10 times above the measured angle); otherwise
#: compute exactly.
SUBSPACE_TOLERANCE = 1e-8
#: Entries per block of the float64 passes and of the float32 Gram (``block_rows``).
BLOCK = 1 << 20
GRAM_BLOCK = 1 << 21
#: The float32 Gram is formed from up to PANELS column panels of at least PANEL_MIN.
PANELS = 4
PANEL_MIN = 256
#: Conjugate-gradient rounds and relative tolerance of the correction step.
CG_ROUNDS = 40
CG_TOLERANCE = 1e-5
#: Gaussian probes of the Frobenius norms in the certificate, and the share t of a norm's
#: square that their mean square must reach: for any matrix B and m probes w_i,
#: P(mean_i ||B w_i||^2 < t ||B||_F^2) <= ((t / 2) e^(1 - t / 2))^m (a Chernoff bound on
#: a weighted sum of chi-squares, worst for rank one): 1.6e-12 for m = 10, t = 0.05. The
#: probes come from their own seeded generator (no global RNG).
PROBES = 10
PROBE_SHARE = 0.05
PROBE_SEED = 20_231_001


@dataclass(frozen=True)
class Principal:
    """Top-k principal components of X.

    Attributes:
        scores: (N, k) float64 centred scores X_c V_k (column signs arbitrary).
        variances: (k,) float64 explained variances, descending (denominator N - 1).
        components: (d, k) float64 orthonormal V_k, or None when not formed.
        refined: True when the mixed-precision path was accepted, False when exact.
        angle_bound: the sin-theta bound of the refined subspace (NaN when exact).
    """

    scores: torch.Tensor
    variances: torch.Tensor
    components: torch.Tensor | None
    refined: bool
    angle_bound: float


def _power_of_two_scale(x: torch.Tensor, mean: torch.Tensor) -> float:
    """2^-e with 2^e >= max |x - mean|: the scaled centred data lie in [-1, 1] exactly."""
    lo, hi = torch.aminmax(x)
    spread = max(float(hi) - float(mean.min()), float(mean.max()) - float(lo), 0.0)
    if spread == 0.0 or not math.isfinite(spread):
        return 1.0
    return math.ldexp(1.0, -math.frexp(spread)[1])


def gram32(x: torch.Tensor, mean: torch.Tensor, scale: float, samples: bool) -> torch.Tensor:
    """float32 (d, d) scale^2 X_c^T X_c, or (N, N) scale^2 X_c X_c^T when ``samples``.

    Row blocks (column blocks for the sample Gram) are centred and scaled in float32 and
    multiplied in float32 (:func:`_symmetric_product`); the block products are summed in
    float64.
    """
    n, d = x.shape
    mean32 = mean.to(torch.float32)
    size = n if samples else d
    gram = torch.zeros(size, size, dtype=F64, device=x.device)
    rows = block_rows(n if samples else d, GRAM_BLOCK)
    buffer = torch.empty((n, rows) if samples else (rows, d), dtype=torch.float32,
                         device=x.device)
    for b in row_blocks(d if samples else n, rows):
        width = b.stop - b.start
        if samples:
            block = torch.sub(x[:, b], mean32[b], out=buffer[:, :width]).mul_(scale)
            _symmetric_product(block.T, gram)
        else:
            block = torch.sub(x[b], mean32, out=buffer[:width]).mul_(scale)
            _symmetric_product(block, gram)
    return gram.to(torch.float32)


def _symmetric_product(block: torch.Tensor, gram: torch.Tensor) -> None:
    """gram += block^T block from column panels: the diagonal and lower products only, the
    upper ones mirrored (with 4 panels 10/16 of a GEMM's flops; torch has no SYRK)."""
    size = block.shape[1]
    panels = max(1, min(PANELS, size // PANEL_MIN))
    edges = [size * i // panels for i in range(panels + 1)]
    for i in range(panels):
        rows = slice(edges[i], edges[i + 1])
        for j in range(i + 1):
            cols = slice(edges[j], edges[j + 1])
            product = (block[:, rows].T @ block[:, cols]).to(F64)
            gram[rows, cols] += product
            if i != j:
                gram[cols, rows] += product.T


def _blocks(x: torch.Tensor, mean: torch.Tensor, samples: bool
            ) -> Iterator[tuple[slice, torch.Tensor]]:
    """(slice, float64 centred block) over row blocks of X (column blocks when ``samples``).

    One float64 buffer is reused, so the pass allocates nothing per block.
    """
    n, d = x.shape
    count = d if samples else n
    rows = block_rows(n if samples else d, BLOCK)
    buffer = torch.empty((n, rows) if samples else (rows, d), dtype=F64, device=x.device)
    for b in row_blocks(count, rows):
        size = b.stop - b.start
        if samples:
            out = buffer[:, :size]
            torch.sub(x[:, b], mean[b], out=out)
        else:
            out = buffer[:size]
            torch.sub(x[b], mean, out=out)
        yield b, out


@dataclass(frozen=True)
class _Ritz:
    """Rayleigh-Ritz of A on an orthonormal basis V (size, p), from one float64 pass.

    theta: (p,) Ritz values, descending. q: (p, p) their eigenvectors in the basis.
    w: X_c V (N, p) on the feature side, X_c^T V (d, p) on the sample side.
    av: A V. residual_norms: (p,) ||A y_j - theta_j y_j|| of the Ritz vectors y = V q.
    residual: (size, p) those residuals.
    """

    basis: torch.Tensor
    theta: torch.Tensor
    q: torch.Tensor
    w: torch.Tensor
    av: torch.Tensor
    residual: torch.Tensor

    @property
    def residual_norms(self) -> torch.Tensor:
        return torch.linalg.vector_norm(self.residual, dim=0)


def _float64_pass(x: torch.Tensor, mean: torch.Tensor, samples: bool, *groups: torch.Tensor
                  ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(W, A V)] for each (size, q) group of vectors V, from one float64 pass over X.

    Feature side: W = X_c V (N, q) and A V = X_c^T W (d, q) with A = X_c^T X_c.
    Sample side: W = X_c^T V (d, q) and A V = X_c W (N, q) with A = X_c X_c^T.
    Each group is multiplied on its own while the block is in cache: the GEMM of the
    basis keeps its width (72 columns ran 1.5-2x faster than 82 with MKL on one thread).
    """
    n, d = x.shape
    out = [(torch.empty(d if samples else n, v.shape[1], dtype=F64, device=x.device),
            torch.zeros(n if samples else d, v.shape[1], dtype=F64, device=x.device))
           for v in groups]
    for b, block in _blocks(x, mean, samples):
        for vectors, (w, av) in zip(groups, out, strict=True):
            if samples:
                torch.mm(block.T, vectors, out=w[b])
                av.addmm_(block, w[b])
            else:
                torch.mm(block, vectors, out=w[b])
                av.addmm_(block.T, w[b])
    return out


def _rayleigh_ritz(basis: torch.Tensor, w: torch.Tensor, av: torch.Tensor) -> _Ritz:
    """Rayleigh-Ritz on the orthonormal ``basis`` from its float64 pass (W, A V):
    B = W^T W = V^T A V exactly (p, p)."""
    theta, q = torch.linalg.eigh(w.T @ w)
    theta, q = theta.flip(0), q.flip(1)
    residual = av @ q - (basis @ q) * theta
    return _Ritz(basis, theta, q, w, av, residual)


@dataclass(frozen=True)
class GramModel:
    """The float32 Gram's eigen-decomposition as a model M = V diag(g) V^T of A.

    Attributes:
        values: (size,) float64 g, descending, clamped at 0, in A's units (scale removed).
        vectors: (size, size) float32 V, the matching eigenvectors (orthonormal to ~1e-7).
    """

    values: torch.Tensor
    vectors: torch.Tensor

    @classmethod
    def of(cls, gram: torch.Tensor, scale: float) -> GramModel:
        values, vectors = torch.linalg.eigh(gram)
        return cls((values.flip(0).to(F64) / scale**2).clamp_min(0), vectors.flip(1))

    def error_bounds(self, probes: torch.Tensor, a_probes: torch.Tensor) -> tuple[float, float]:
        """Upper bounds (failing with probability <= 1.6e-12 each) of the Frobenius norms
        of G^(1/2) (V^T V - I) G^(1/2) (G = diag(g)) and of A - M, from the Gaussian
        ``probes`` (size, PROBES) and A times them."""
        v = self.vectors.to(F64)
        root = self.values.sqrt()[:, None]
        rooted = root * probes
        overlap = root * (v.T @ (v @ rooted)) - root * rooted
        model = v @ (self.values[:, None] * (v.T @ probes))
        return _frobenius_bound(overlap), _frobenius_bound(a_probes - model)


def _frobenius_bound(products: torch.Tensor) -> float:
    """sqrt(mean_i ||B w_i||^2 / PROBE_SHARE) >= ||B||_F (``products`` holds the B w_i)."""
    return math.sqrt(float(products.square().sum(0).mean()) / PROBE_SHARE)


def complement_bound(model: GramModel, theta: torch.Tensor, overlap: float, error: float
                     ) -> float:
    """Upper bound of the largest eigenvalue of A on the complement of a p-dim basis.

    ``theta`` are the basis's p Ritz values. By interlacing the bound is
    sum_{j<=r} lambda_j(A) - sum_{j<=p} theta_j with r = p + 1, and by Ky Fan
    sum_{j<=r} lambda_j(A) <= sum_{j<=r} lambda_j(M) + sqrt(r) ||A - M||_F, where
    M's eigenvalues are those of G^(1/2) V^T V G^(1/2), so
    sum_{j<=r} lambda_j(M) <= sum_{j<=r} g_j + sqrt(r) ||G^(1/2) (V^T V - I) G^(1/2)||_F
    (``overlap`` and ``error`` bound the two norms). A float64 allowance of
    p^2 eps theta_1 covers the rounding of the Ritz values.
    """
    p = theta.shape[0]
    top = float(model.values[:p + 1].sum()) + math.sqrt(p + 1) * (overlap + error)
    return top - float(theta.sum()) + p * p * torch.finfo(F64).eps * float(theta[0].abs())


def _correction(gram: torch.Tensor, scale: float, ritz: _Ritz, k: int) -> torch.Tensor:
    """Basis corrected towards the exact eigenvectors (one Jacobi-Davidson step).

    For each of the top k Ritz pairs (theta_j, y_j) with residual r_j (orthogonal to the
    basis V), the exact eigenvector is y_j + t_j with (theta_j I - P A P) t_j = r_j to
    first order, P = I - V V^T. The float32 Gram (``gram`` = scale^2 A, rounded) stands
    in for A here while the residual itself is exact, so one step turns an angle e into
    about e (||A - gram / scale^2|| / gap + tolerance): the error of the float32 start,
    squared. The shifted systems are positive definite on the complement (its eigenvalues
    lie below theta_k) and are solved together in float32 by conjugate gradients, one
    column per pair, to a relative residual of ``CG_TOLERANCE``.
    """
    f32 = torch.float32
    basis = ritz.basis.to(f32)
    shifts = (ritz.theta[:k] * scale**2).to(f32)
    ritz_vectors = ritz.basis @ ritz.q

    def project(v: torch.Tensor) -> torch.Tensor:
        return v - basis @ (basis.T @ v)

    rhs = (ritz.residual[:, :k] * scale**2).to(f32)
    t = torch.zeros_like(rhs)
    r = project(rhs)
    direction = r.clone()
    rr = (r * r).sum(0)
    goal = (CG_TOLERANCE * torch.linalg.vector_norm(rhs, dim=0)).square()
    tiny = torch.finfo(f32).tiny
    for _ in range(CG_ROUNDS):
        if bool((rr <= goal).all()):
            break
        ad = direction * shifts - project(gram @ direction)
        step = rr / (direction * ad).sum(0).clamp_min(tiny)
        t += step * direction
        r -= step * ad
        rr_new = (r * r).sum(0)
        direction = r + (rr_new / rr.clamp_min(tiny)) * direction
        rr = rr_new
    corrected = torch.cat([ritz_vectors[:, :k] + t.to(F64), ritz_vectors[:, k:]], dim=1)
    return torch.linalg.qr(corrected).Q


def refined_principal(x: torch.Tensor, mean: torch.Tensor, k: int) -> Principal | None:
    """Mixed-precision top-k principal components, or None when the check fails.

    Args:
        x: (N, d) float32 or float64 features (read only).
        mean: (d,) float64 column mean.
        k: components wanted, k <= min(N, d) - 1.
    """
    n, d = x.shape
    samples = n < d
    size = min(n, d)
    p = min(k + OVERSAMPLE, size)
    if p <= k:  # no Ritz gap to check against
        return None
    scale = _power_of_two_scale(x, mean)
    gram = gram32(x, mean, scale, samples)
    try:
        model = GramModel.of(gram, scale)
    except torch.linalg.LinAlgError:
        # float32 eigh may not converge on many equal eigenvalues (e.g. 183 dead units of
        # 256 features): the exact float64 path then decides
        return None
    # float32 eigenvectors are orthonormal to ~1e-7 only: re-orthonormalise in float64.
    basis = torch.linalg.qr(model.vectors[:, :p].to(F64)).Q
    generator = torch.Generator(device=x.device).manual_seed(PROBE_SEED)
    probes = torch.randn(size, PROBES, dtype=F64, device=x.device, generator=generator)
    (w, av), (_, a_probes) = _float64_pass(x, mean, samples, basis, probes)
    errors = model.error_bounds(probes, a_probes)
    ritz = _rayleigh_ritz(basis, w, av)
    bound = checked_angle(ritz, k, model, errors)
    if not bound <= SUBSPACE_TOLERANCE:
        basis = _correction(gram, scale, ritz, k)
        ritz = _rayleigh_ritz(basis, *_float64_pass(x, mean, samples, basis)[0])
        bound = checked_angle(ritz, k, model, errors)
        if not bound <= SUBSPACE_TOLERANCE:
            return None
    return _principal_from_ritz(ritz, k, n, samples, bound)


def _principal_from_ritz(ritz: _Ritz, k: int, n: int, samples: bool, bound: float
                         ) -> Principal:
    """The top-k Ritz pairs as principal components."""
    theta_k = ritz.theta[:k].clamp_min(0)
    q = ritz.q[:, :k]
    if samples:
        # V_k = X_c^T U q / sqrt(theta) is orthonormal (V_k^T V_k = q^T B q / theta = I)
        # and the scores X_c V_k = (A U) q / sqrt(theta).
        root = theta_k.sqrt()
        safe = torch.where(root > 0, root, torch.ones_like(root))
        components = (ritz.w @ q) / safe
        scores = (ritz.av @ q) / safe
    else:
        components = ritz.basis @ q
        scores = ritz.w @ q
    return Principal(scores, theta_k / (n - 1), components, True, bound)


def checked_angle(ritz: _Ritz, k: int, model: GramModel, errors: tuple[float, float]
                  ) -> float:
    """:func:`angle_bound` with the complement's eigenvalues certified below
    ``max(theta_p, complement_bound)`` (infinite when that reaches theta_k)."""
    ceiling = max(float(ritz.theta[-1]), complement_bound(model, ritz.theta, *errors))
    return angle_bound(ritz.theta, ritz.residual_norms, k, ceiling)


def angle_bound(theta: torch.Tensor, residual_norms: torch.Tensor, k: int,
                ceiling: float | None = None) -> float:
    """Estimated sine of the angle between the top-k Ritz subspace and the exact one.

    The residual of each Ritz vector points out of the p-dim basis, towards the
    eigenvalues of A outside it, all at most ``ceiling`` (default theta_p: an assumption
    that only :func:`complement_bound` makes safe), so the first-order leakage is
    ||R_k|| / (theta_k - ceiling); the Ritz vectors k+1..p couple to the top k only
    through that complement, at second order: ||R_k|| ||R_{k+1..p}|| / ((theta_k -
    theta_{k+1}) (theta_k - ceiling)). Infinite when the gaps vanish (clustered spectrum
    at k: the subspace is ill-determined) or the ceiling reaches theta_k.
    """
    ceiling = float(theta[-1]) if ceiling is None else ceiling
    near, far = float(theta[k - 1] - theta[k]), float(theta[k - 1]) - ceiling
    if not (near > 0 and far > 0):
        return math.inf
    top = float(torch.linalg.vector_norm(residual_norms[:k]))
    rest = float(torch.linalg.vector_norm(residual_norms[k:]))
    return top / far + top * rest / (near * far)


def from_eigenpairs(x: torch.Tensor, mean: torch.Tensor, values: torch.Tensor,
                    vectors: torch.Tensor, samples: bool) -> Principal:
    """Exact principal components from the top-k eigenpairs of the centred Gram.

    Args:
        x: (N, d) features. mean: (d,) float64 column mean.
        values: (k,) eigenvalues, descending. vectors: (d, k) eigenvectors of
            X_c^T X_c, or (N, k) of X_c X_c^T when ``samples``: then the scores are
            U sqrt(lambda) and the components are not formed.
    """
    n = x.shape[0]
    values = values.clamp_min(0)
    if samples:
        return Principal(vectors * values.sqrt(), values / (n - 1), None, False, math.nan)
    scores = torch.cat([(x[b].to(F64) - mean) @ vectors for b in row_blocks(n)])
    return Principal(scores, values / (n - 1), vectors, False, math.nan)


def exact_principal(x: torch.Tensor, mean: torch.Tensor, k: int) -> Principal:
    """Top-k principal components from the exact float64 Gram (the reference path)."""
    n, d = x.shape
    samples = n < d
    gram = sample_gram(x, mean) if samples else centred_gram(x, mean)
    return from_eigenpairs(x, mean, *top_eigh(gram, k), samples)


def principal(x: torch.Tensor, mean: torch.Tensor, k: int) -> Principal:
    """Top-k principal components: the refined mixed-precision path, else the exact one."""
    return refined_principal(x, mean, k) or exact_principal(x, mean, k)
