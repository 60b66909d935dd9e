"""numerics.saddle: the shared replica saddle-point driver on a problem with a known answer.

Toy problem (one order parameter, a double-well prox whose global minimiser jumps):
    y*(h) = argmin_y (y − h)² + λ (y² − 1)²,   h = z + x,   z ~ N(0, 1),
    F(x) = a E[y*(z + x)] + b.
Reference: the global minimiser from the roots of the cubic (numpy.roots, independent of
numerics.prox) integrated by scipy's adaptive quadrature split at the jump h = 0, and the
fixed point by brentq.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import integrate, optimize

from numerics.saddle import SaddleResult, SaddleDriver, SaddleProblem, continuation, replica_rule

LAM, A, B = 1.5, 0.5, 0.3


def _global_min(h: float) -> float:
    # d/dy: 2(y − h) + 4λ y (y² − 1) = 4λ y³ + (2 − 4λ) y − 2h
    r = np.roots([4 * LAM, 0.0, 2 - 4 * LAM, -2 * h])
    r = r[np.abs(r.imag) < 1e-9].real
    f = (r - h) ** 2 + LAM * (r**2 - 1) ** 2
    return float(r[np.argmin(f)])


@functools.lru_cache(maxsize=1)
def _reference() -> float:
    def F(x: float) -> float:
        g = lambda z: _global_min(z + x) * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)  # noqa: E731
        lo = integrate.quad(g, -12, -x, epsabs=1e-11, limit=100)[0]
        hi = integrate.quad(g, -x, 12, epsabs=1e-11, limit=100)[0]
        return A * (lo + hi) + B - x
    return optimize.brentq(F, 0.0, 2.0, xtol=1e-11)


def _problem() -> SaddleProblem:
    def channel(xr, pt, z):
        return {"h": (z[:, 0] + xr[:, 0])[:, None]}

    def fgh(y, c, rows):
        h = c["h"][rows, 0]
        u = y[:, 0]
        f = (u - h) ** 2 + LAM * (u * u - 1) ** 2
        g = 2 * (u - h) + 4 * LAM * u * (u * u - 1)
        H = 2 + 4 * LAM * (3 * u * u - 1)
        return f, g[:, None], H[:, None, None]

    def integrands(y, c, z, xr, pt):
        return {"y": y[:, 0]}

    def update(E, x, idx):
        return {"map": (A * E["y"] + B)[:, None], "ey": E["y"]}

    return SaddleProblem(1, channel, fgh, integrands, update,
                         starts=lambda c: [c["h"], -c["h"]], names=("x",))


def test_fixed_point_error_bar_covers_reference_and_is_deterministic():
    ref = _reference()
    rule = replica_rule(1024, 1, replicas=8, seed=3)
    d = SaddleDriver(_problem(), rule, 2)
    res = d.solve(np.array([[0.0], [1.5]]), tol=1e-12, jacobian=True)
    assert bool(np.all(res.converged)) and float(np.max(res.residual)) <= 1e-12
    err = float(res.x_error[0, 0])
    # the same fixed point from both starts up to the discreteness of the rule: the map is a
    # function of x alone, but a node crossing the jump moves it by O(1/n), so the discrete
    # map can have neighbouring fixed points up to about one error bar apart (measured: 0.66)
    assert abs(res.x[0, 0] - res.x[1, 0]) < err
    assert 0 < err < 5e-3
    assert abs(res.x[0, 0] - ref) < 4 * err, (res.x[0, 0], ref, err)
    # Jacobian of F = a dE[y*]/dx: the central difference of the exact map (reference)
    assert np.isfinite(res.lead[0]) and abs(res.lead[0]) < 1


def test_error_bar_shrinks_with_nodes_and_fails_on_a_wrong_map():
    """The replica error decreases with n; a perturbed map (b + 1e-2) is detected as off by many
    error bars (the comparison can fail)."""
    ref = _reference()
    errs = []
    for n in (128, 2048):
        res = SaddleDriver(_problem(), replica_rule(n, 1, replicas=8, seed=0), 1).solve(np.array([[0.5]]))
        errs.append(float(res.x_error[0, 0]))
    assert errs[1] < errs[0] / 3
    pb = _problem()
    upd = pb.update
    pb.update = lambda E, x, idx: {**upd(E, x, idx), "map": upd(E, x, idx)["map"] + 1e-2}
    res = SaddleDriver(pb, replica_rule(2048, 1, replicas=8, seed=0), 1).solve(np.array([[0.5]]))
    assert abs(res.x[0, 0] - ref) > 10 * float(res.x_error[0, 0])


def test_continuation_follows_parameter():
    def solve(v, x0):
        global B
        old = B
        try:
            B = v
            return SaddleDriver(_problem(), replica_rule(256, 1, replicas=2, seed=0), 1).solve(x0)
        finally:
            B = old
    out = continuation(solve, [0.3, 0.35, 0.4], np.array([[0.5]]))
    xs = [float(r.x[0, 0]) for r in out]
    assert all(bool(r.converged[0]) for r in out) and xs[0] < xs[1] < xs[2]


def test_continuation_stops_solving_a_column_after_its_branch_ends():
    """A column off its branch for ``patience`` consecutive steps is not solved again; the others are."""
    calls = []

    def solve(v, x0, live):
        calls.append(live.copy())
        x = np.where(live[:, None], v, np.nan) * np.ones((2, 1))
        conv = live & np.array([v < 0.35, True])  # column 0 leaves its branch at v = 0.35
        return SaddleResult(x=x, converged=conv, residual=None, iterations=None, status=None, x_error=None,
                            obs={}, obs_error={}, lead=None, radius=None)

    vals = [0.3, 0.35, 0.4, 0.45, 0.5]
    out = continuation(solve, vals, np.zeros((2, 1)), on_branch=lambda r: r.converged, patience=2)
    assert len(out) == len(vals)
    assert [bool(c[0]) for c in calls] == [True, True, True, False, False]
    assert all(bool(c[1]) for c in calls)
    with pytest.raises(ValueError, match="patience"):
        continuation(solve, vals, np.zeros((2, 1)), on_branch=lambda r: r.converged, patience=0)


@pytest.mark.parametrize("bad", [0])
def test_replica_rule_rejects_zero_replicas(bad):
    with pytest.raises(ValueError, match="replicas"):
        replica_rule(64, 1, replicas=bad)
