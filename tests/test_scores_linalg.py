"""The shared linear algebra of the Gaussian scores keeps the promises of its docstrings:
``solve_spd`` checks what its LU fallback returns, and refuses a singular system."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nctk.errors import InputError
from nctk.transfer._gaussian import BACKWARD_TOLERANCE, solve_spd


def _backward_error(a, x, b):
    return np.linalg.norm(a @ x - b) / (np.linalg.norm(a) * np.linalg.norm(x) + np.linalg.norm(b))


def test_positive_definite_systems_take_cholesky():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((30, 30))
    a, b = m @ m.T + 30 * np.eye(30), rng.standard_normal((30, 4))
    np.testing.assert_allclose(solve_spd(torch.from_numpy(a), torch.from_numpy(b)).numpy(),
                               np.linalg.solve(a, b), rtol=1e-7)


def test_an_indefinite_but_regular_system_is_solved_by_lu_and_checked():
    # symmetric, eigenvalues of both signs: Cholesky breaks down, LU solves it
    rng = np.random.default_rng(1)
    q = np.linalg.qr(rng.standard_normal((20, 20)))[0]
    a = q @ np.diag(np.linspace(-3, 5, 20) + 0.05) @ q.T
    b = rng.standard_normal((20, 3))
    assert int(torch.linalg.cholesky_ex(torch.from_numpy(a))[1]) != 0
    x = solve_spd(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert _backward_error(a, x, b) <= BACKWARD_TOLERANCE
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-7)


def test_a_singular_system_is_an_input_error():
    a = np.zeros((5, 5))
    a[0, 0] = 1.0  # rank one: Cholesky breaks down, LU meets a zero pivot
    with pytest.raises(InputError, match="singular to working precision"):
        solve_spd(torch.from_numpy(a), torch.ones(5, 2, dtype=torch.float64))


def test_an_lu_result_failing_the_backward_check_is_refused(monkeypatch):
    # LU is backward stable in practice; a broken-down factorisation is what the check is
    # for: one that returns a wrong solution is caught, not passed on to the logits
    rng = np.random.default_rng(2)
    a = torch.from_numpy(np.diag(np.linspace(-1, 1, 8) + 0.01))
    solve = torch.linalg.solve
    monkeypatch.setattr(torch.linalg, "solve", lambda m, b: solve(m, b) * (1 + 1e-6))
    with pytest.raises(InputError, match=r"backward error is \d\.\de-07"):
        solve_spd(a, torch.from_numpy(rng.standard_normal((8, 2))))
