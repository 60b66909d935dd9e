"""Generic replica machinery: quadrature, batched fixed points, batched prox, phases.

Reference values are independent: closed-form Gaussian moments, mpmath quadrature,
linear algebra solutions, scipy.optimize on single problems.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from scipy import optimize

from numerics.fixed_point import solve_fixed_point
from numerics.phases import bisect_sign_change, dedupe, jacobian_fd, locate_spinodal, stability
from numerics.prox import minimize_multistart, newton_minimize
from numerics.quadrature import expectation, expectation_with_error, gauss_hermite, sobol_normal


# -- quadrature ----------------------------------------------------------------------------
def test_gauss_hermite_moments_exact():
    r = gauss_hermite(6, 2)
    assert r.size == 36 and abs(r.weights.sum() - 1) < 1e-15
    z = r.nodes
    assert abs(expectation(lambda z: z[:, 0] ** 4, r) - 3.0) < 1e-13
    assert abs(expectation(lambda z: z[:, 0] ** 2 * z[:, 1] ** 2, r) - 1.0) < 1e-13
    assert abs(expectation(lambda z: z[:, 0] ** 10, r) - 945.0) < 1e-9  # degree 10 <= 11
    assert np.all(z.shape == (36, 2))


def test_gauss_hermite_vs_mpmath_smooth_integrand():
    f = lambda z: np.cos(z[:, 0]) * np.exp(0.3 * z[:, 1]) * z[:, 1] ** 2  # noqa: E731 (entire)
    with mpmath.workdps(30):
        g = lambda x: mpmath.npdf(x)  # noqa: E731
        ex = (mpmath.quad(lambda x: mpmath.cos(x) * g(x), [-mpmath.inf, mpmath.inf])
              * mpmath.quad(lambda y: mpmath.exp(0.3 * y) * y * y * g(y),
                            [-mpmath.inf, mpmath.inf]))
    res = expectation_with_error(f, 2, n=20, step=6)
    assert abs(res.value - float(ex)) < 1e-9
    assert res.error < 1e-6  # the estimate is honest: comparable to the true error scale
    assert abs(res.value - float(ex)) <= 10 * res.error + 1e-12


def test_qmc_error_estimate_covers_truth():
    f = lambda z: np.abs(z[:, 0] + z[:, 1]) * (z[:, 2] > 0)  # noqa: E731  non-smooth, 3-D
    truth = math.sqrt(2) * math.sqrt(2 / math.pi) / 2  # E|N(0,2)| * P(z3 > 0)
    res = expectation_with_error(f, 3, method="qmc", n=4096, n_replicas=8, seed=1)
    assert abs(res.value - truth) < 5 * res.error
    assert res.error < 2e-3
    r = sobol_normal(1000, 3)
    assert r.size == 1024


def test_quadrature_bad_input():
    with pytest.raises(ValueError, match="n"):
        gauss_hermite(0, 2)
    with pytest.raises(ValueError, match="method"):
        expectation_with_error(lambda z: z[:, 0], 1, method="simpson")


# -- fixed points ------------------------------------------------------------------------------
def test_fixed_point_linear_map_anderson_and_damped():
    rng = np.random.default_rng(0)
    Q = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    A = Q @ np.diag([0.99, 0.9, -0.95, 0.5]) @ Q.T
    b = np.arange(1.0, 5.0)
    exact = np.linalg.solve(np.eye(4) - A, b)
    F = lambda x, idx: x @ A.T + b  # noqa: E731
    for m, damping in ((0, 1.0), (5, 1.0), (5, 0.5)):
        r = solve_fixed_point(F, np.zeros((3, 4)), damping=damping, anderson=m, tol=1e-12,
                              maxiter=20000)
        assert r.all_converged
        assert np.max(np.abs(r.x - exact)) < 1e-8 * np.max(np.abs(exact)) * 100
        # the reported residual is that of the undamped map at the returned x
        res = np.max(np.abs(F(r.x, None) - r.x) / np.maximum(1, np.abs(r.x)), axis=1)
        assert np.allclose(res, r.residual) and np.all(res <= 1e-12)


def test_fixed_point_per_point_parameters_and_flags():
    a = np.array([0.5, 1.0, 2.0, np.nan])
    F = lambda x, idx: np.stack([np.cos(a[idx] * x[:, 0])], 1)  # noqa: E731
    r = solve_fixed_point(F, np.zeros((4, 1)), damping=0.7, anderson=3, tol=1e-13, maxiter=500)
    for i in range(3):
        ref = optimize.brentq(lambda x: math.cos(a[i] * x) - x, 0, 1.5, xtol=1e-15)
        assert r.converged[i] and abs(r.x[i, 0] - ref) < 1e-12
    assert not r.converged[3] and r.status[3] == 3  # NONFINITE, flagged not hidden
    slow = solve_fixed_point(lambda x, idx: -x + 1.0, np.zeros((1, 1)), damping=1.0,
                             anderson=0, maxiter=50)  # period-2 oscillation: never converges
    assert not slow.converged[0] and slow.status[0] == 1  # MAXITER
    with pytest.raises(ValueError, match="damping"):
        solve_fixed_point(F, np.zeros((1, 1)), damping=0.0)


# -- prox ---------------------------------------------------------------------------------------
def _double_well(c):
    """f(x) = (x1^2 - 1)^2 + c x1 + (x2 - x1)^2 / 2, several minima for small c."""
    def fgh(x, idx):
        cc = c[idx]
        x1, x2 = x[:, 0], x[:, 1]
        f = (x1 ** 2 - 1) ** 2 + cc * x1 + 0.5 * (x2 - x1) ** 2
        g = np.stack([4 * x1 * (x1 ** 2 - 1) + cc - (x2 - x1), x2 - x1], 1)
        H = np.empty((len(x1), 2, 2))
        H[:, 0, 0] = 12 * x1 ** 2 - 4 + 1
        H[:, 0, 1] = H[:, 1, 0] = -1
        H[:, 1, 1] = 1
        return f, g, H
    return fgh


def test_newton_minimize_matches_scipy_and_multistart_keeps_global():
    c = np.array([0.3, -0.3, 0.05, 2.0])
    fgh = _double_well(c)
    r = newton_minimize(fgh, np.zeros((4, 2)), gtol=1e-12)
    assert r.converged.all()
    for i in range(4):
        ref = optimize.minimize(lambda x: fgh(x[None], np.array([i]))[0][0], np.zeros(2),
                                method="BFGS", options={"gtol": 1e-10})
        # from 0 both reach a local minimum; values must be stationary points of scipy's kind
        assert np.max(np.abs(fgh(r.x[i:i + 1], np.array([i]))[1])) <= 1e-12
        assert r.fun[i] <= ref.fun + 1e-9 or abs(r.x[i, 0] - ref.x[0]) > 0.5
    starts = [np.full((4, 2), -1.2), np.full((4, 2), 1.2), np.zeros((4, 2))]
    best, distinct = minimize_multistart(fgh, starts, gtol=1e-12)
    # global minimum: x1 < 0 for c > 0, x1 > 0 for c < 0
    assert np.all(np.sign(best.x[:, 0]) == -np.sign(c))
    assert distinct[0] >= 1 and distinct[3] == 0  # c = 2 has a single minimum (4x³−4x+2 has one real root)


# -- phases -------------------------------------------------------------------------------------
def test_jacobian_stability_and_bisection():
    A = np.array([[0.5, 0.2], [0.1, 0.3]])
    F = lambda x, idx: x @ A.T  # noqa: E731
    J = jacobian_fd(F, np.ones((2, 2)), None)
    assert np.allclose(J, A[None], atol=1e-9)
    lead, rad = stability(J)
    assert np.allclose(lead, max(np.linalg.eigvals(A).real))
    # saddle-node of x = x^2 + mu: fixed points exist iff mu <= 1/4
    b = bisect_sign_change(lambda v, i: v - np.array([0.25, 0.7])[i], [0.0, 0.0], [1.0, 1.0],
                           tol=1e-12)
    assert np.allclose(b.root, [0.25, 0.7], atol=1e-12) and b.converged.all()
    s = locate_spinodal(lambda v, i: v <= 0.25, np.zeros(1), np.ones(1), tol=1e-10)
    assert abs(s.root[0] - 0.25) < 1e-10
    u, lab = dedupe(np.array([[1.0, 2.0], [1.0 + 1e-9, 2.0], [np.nan, 0], [3.0, 2.0]]))
    assert len(u) == 2 and list(lab) == [0, 0, -1, 1]
