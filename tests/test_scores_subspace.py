"""The mixed-precision principal subspace against an exact float64 PCA written here.

The reference is numpy's ``eigh`` of the covariance of a float64 copy (or of the sample
Gram when N < d), nothing from nctk. Cases: rank-deficient features (dead units and
linearly dependent columns), a spectrum with a cluster straddling the k-th value,
N < d, a large common offset, features scaled by 1e30 and 1e-30, and a spectrum whose
k-th and (k+1)-th values coincide (the subspace is then undetermined: the exact path
must run).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nctk.transfer._subspace as sub
from nctk.transfer._subspace import SUBSPACE_TOLERANCE, principal, refined_principal


def exact_pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(top-k variances, (d, k) orthonormal basis of the top-k principal subspace)."""
    f = np.asarray(x, dtype=np.float64)
    xc = f - f.mean(0)
    n, d = f.shape
    if n >= d:
        vals, vecs = np.linalg.eigh(xc.T @ xc)
        vals, vecs = vals[::-1][:k], vecs[:, ::-1][:, :k]
    else:
        vals, u = np.linalg.eigh(xc @ xc.T)
        vals, u = vals[::-1][:k], u[:, ::-1][:, :k]
        vecs = xc.T @ u / np.sqrt(vals)
    return vals / (n - 1), vecs


def spectrum_data(n: int, d: int, sd: np.ndarray, seed: int, offset: float = 0.0
                  ) -> np.ndarray:
    """(n, d) float32 features with column standard deviations ``sd`` in a random basis."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    z = rng.standard_normal((n, d)) * sd
    return ((z @ basis.T) + offset).astype(np.float32)


def _case(name: str) -> np.ndarray:
    rng = np.random.default_rng(1)
    if name == "decaying":
        return spectrum_data(3000, 200, 1.0 / np.sqrt(1 + np.arange(200) / 8), 0)
    if name == "dead_units":
        x = np.maximum(spectrum_data(3000, 200, 1.0 / np.sqrt(1 + np.arange(200) / 8), 2), 0)
        x[:, 120:] = 0.0
        return x
    if name == "dependent":
        base = spectrum_data(3000, 90, np.linspace(2, 0.5, 90), 3)
        return np.hstack([base, base[:, :60] @ rng.standard_normal((60, 110)).astype(
            np.float32) / 8]).astype(np.float32)
    if name == "clustered":
        sd = np.linspace(3, 1, 200)
        sd[28:36] = 1.7 + 1e-3 * np.arange(8)  # a tight cluster around the 32nd value
        return spectrum_data(3000, 200, sd, 4)
    if name == "wide":
        return spectrum_data(150, 600, np.linspace(3, 0.2, 600), 5)
    if name == "offset":
        return spectrum_data(3000, 200, np.linspace(2, 0.5, 200), 6, offset=50.0)
    raise ValueError(name)


CASES = ["decaying", "dead_units", "dependent", "clustered", "wide", "offset"]


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """Sine of the largest principal angle between the column spans of a and b."""
    qa, qb = np.linalg.qr(a)[0], np.linalg.qr(b)[0]
    return float(np.linalg.norm(qb - qa @ (qa.T @ qb), 2))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("scale", [1.0, 1e30, 1e-30])
def test_refined_subspace_matches_exact_float64(case, scale):
    x = (_case(case).astype(np.float64) * scale).astype(np.float32)
    k = 32
    want_var, want_basis = exact_pca(x.astype(np.float64) / scale, k)
    t = torch.from_numpy(x)
    mean = t.double().mean(0)
    got = refined_principal(t, mean, k)
    assert got is not None, "the mixed-precision path should pass its check here"
    # the check itself: the path is accepted only with its bound at most the tolerance
    assert got.refined and got.angle_bound <= SUBSPACE_TOLERANCE
    np.testing.assert_allclose(got.variances.numpy() / scale**2, want_var, rtol=1e-7,
                               atol=1e-7 * want_var[0])
    # the angle the bound promises (1e-8; measured 1e-13..2e-11), far above the ~1e-14
    # error of the LAPACK reference
    assert _angle(got.components.numpy(), want_basis) < SUBSPACE_TOLERANCE
    # the scores are the centred data in the returned basis
    xc = x.astype(np.float64) - x.astype(np.float64).mean(0)
    np.testing.assert_allclose(got.scores.numpy(), xc @ got.components.numpy(),
                               rtol=0, atol=1e-7 * np.abs(xc).max() * math.sqrt(x.shape[1]))


def test_float64_input_and_components_are_orthonormal():
    x = _case("decaying").astype(np.float64)
    got = refined_principal(torch.from_numpy(x), torch.from_numpy(x.mean(0)), 40)
    v = got.components.numpy()
    np.testing.assert_allclose(v.T @ v, np.eye(40), atol=1e-7)
    assert _angle(v, exact_pca(x, 40)[1]) < SUBSPACE_TOLERANCE


def test_coinciding_kth_values_fall_back_to_the_exact_path():
    sd = np.linspace(3, 1, 120)
    sd[19] = sd[20]  # lambda_20 == lambda_21: the top-20 subspace is not determined
    rng = np.random.default_rng(7)
    basis = np.linalg.qr(rng.standard_normal((120, 120)))[0]
    # a sample with exactly this spectrum: z has centred orthonormal columns, so
    # X_c^T X_c = basis diag(sd^2) basis^T (up to rounding)
    noise = rng.standard_normal((2000, 120))
    z = np.linalg.qr(noise - noise.mean(0))[0]
    x = (z * sd) @ basis.T
    t = torch.from_numpy(x)
    mean = t.mean(0)
    assert refined_principal(t, mean, 20) is None
    got = principal(t, mean, 20)
    assert not got.refined and math.isnan(got.angle_bound)
    np.testing.assert_allclose(got.variances.numpy(), exact_pca(x, 20)[0], rtol=1e-7)
    np.testing.assert_allclose(got.variances.numpy() * 1999, sd[:20] ** 2, rtol=1e-7)


def test_input_is_not_modified():
    x = _case("offset")
    keep = x.copy()
    t = torch.from_numpy(x)
    refined_principal(t, t.double().mean(0), 16)
    np.testing.assert_array_equal(x, keep)


# ------------------------------------------------ the certificate of the complement


def _model_and_pass(x: np.ndarray, basis: np.ndarray):
    """The float32 Gram's model of A and the probe bounds, and the Ritz pairs of ``basis``."""
    t = torch.from_numpy(x)
    mean = t.double().mean(0)
    scale = sub._power_of_two_scale(t, mean)
    model = sub.GramModel.of(sub.gram32(t, mean, scale, False), scale)
    probes = torch.randn(x.shape[1], sub.PROBES, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(0))
    v = torch.from_numpy(basis)
    (w, av), (_, a_probes) = sub._float64_pass(t, mean, False, v, probes)
    return model, model.error_bounds(probes, a_probes), sub._rayleigh_ritz(v, w, av)


def _exact_eigenvectors(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = x.astype(np.float64)
    xc = f - f.mean(0)
    vals, vecs = np.linalg.eigh(xc.T @ xc)
    return vals[::-1], vecs[:, ::-1]


def test_a_basis_that_misses_the_top_eigenvector_is_refused():
    # the review's case: the exact eigenvectors 2..29 as the basis for k = 20 (p = 28):
    # every residual is at round-off, so the residual bound alone passes it
    x = _case("decaying")
    vals, vecs = _exact_eigenvectors(x)
    k, p = 20, 20 + sub.OVERSAMPLE
    model, errors, ritz = _model_and_pass(x, np.ascontiguousarray(vecs[:, 1:p + 1]))
    # fooled: the residual bound alone would accept it
    assert sub.angle_bound(ritz.theta, ritz.residual_norms, k) <= SUBSPACE_TOLERANCE
    bound = sub.complement_bound(model, ritz.theta, *errors)
    assert bound >= vals[0] * (1 - 1e-7)  # the missed lambda_1 is seen
    assert sub.checked_angle(ritz, k, model, errors) == math.inf
    # the exact top-p basis passes, with the certificate just above lambda_{p+1}
    model, errors, ritz = _model_and_pass(x, np.ascontiguousarray(vecs[:, :p]))
    assert vals[p] <= sub.complement_bound(model, ritz.theta, *errors) < ritz.theta[-1]
    assert sub.checked_angle(ritz, k, model, errors) <= SUBSPACE_TOLERANCE


@pytest.mark.parametrize("seed", range(4))
def test_the_certificate_bounds_the_complement_for_any_basis(seed):
    # against the exact largest eigenvalue of A compressed to the complement of the basis
    x = _case("dependent")
    _, vecs = _exact_eigenvectors(x)
    rng = np.random.default_rng(seed)
    p = 40
    good = vecs[:, :p] + [1e-3, 1e-1, 1.0, 10.0][seed] * rng.standard_normal((x.shape[1], p))
    basis = np.linalg.qr(good)[0]
    model, errors, ritz = _model_and_pass(x, basis)
    f = x.astype(np.float64)
    a = (f - f.mean(0)).T @ (f - f.mean(0))
    rest = np.eye(x.shape[1]) - basis @ basis.T
    exact = np.linalg.eigvalsh(rest @ a @ rest)[-1]
    assert sub.complement_bound(model, ritz.theta, *errors) >= exact * (1 - 1e-7)


def test_a_float32_gram_that_lost_its_top_direction_falls_back_to_exact(monkeypatch):
    # a corrupt float32 Gram (its top eigenpair deflated away): its eigenvectors miss the
    # top direction of A; the probes see the error and the exact path runs
    x = _case("decaying")
    gram32 = sub.gram32

    def deflated(*args):
        gram = gram32(*args).double()
        vals, vecs = torch.linalg.eigh(gram)
        return (gram - vals[-1] * torch.outer(vecs[:, -1], vecs[:, -1])).float()

    monkeypatch.setattr(sub, "gram32", deflated)
    t = torch.from_numpy(x)
    mean = t.double().mean(0)
    assert refined_principal(t, mean, 32) is None
    got = principal(t, mean, 32)
    assert not got.refined
    np.testing.assert_allclose(got.variances.numpy(), exact_pca(x, 32)[0], rtol=1e-7)


@pytest.mark.parametrize("scale", [1.0, 1e30, 1e-30, 3.0])
def test_the_scale_is_a_power_of_two_that_fits_the_centred_data_in_unit_range(scale):
    x = torch.from_numpy(_case("offset").astype(np.float64) * scale)
    mean = x.mean(0)
    factor = sub._power_of_two_scale(x, mean)
    assert math.frexp(factor)[0] == 0.5  # a power of two: scaling changes no digit
    assert float(((x - mean) * factor).abs().max()) <= 1.0
    assert float(((x - mean) * factor * 2).abs().max()) > 0.5  # and not a needless one


def test_a_float32_eigen_solver_that_does_not_converge_falls_back_to_the_exact_path(
        monkeypatch):
    # torch.linalg.eigh raised "failed to converge" on the float32 Gram of features with
    # 183 dead units of 256 (an MLP of the zoo): the refined path gives up, not the score
    rng = np.random.default_rng(3)
    x = np.zeros((300, 64), dtype=np.float32)
    x[:, :20] = rng.standard_normal((300, 20))  # 44 dead units
    t = torch.from_numpy(x)
    mean = t.double().mean(0)
    real = torch.linalg.eigh

    def failing(a, *args, **kwargs):
        if a.dtype == torch.float32:
            raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")
        return real(a, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigh", failing)
    assert refined_principal(t, mean, 10) is None
    got = principal(t, mean, 10)
    assert not got.refined
    np.testing.assert_allclose(got.variances.numpy(), exact_pca(x.astype(np.float64), 10)[0],
                               rtol=1e-7)
