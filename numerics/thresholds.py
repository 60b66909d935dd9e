"""Thresholds from noisy-but-deterministic evaluations: the crossing of a branch quantity.

A threshold is often "the parameter ``x`` where ``g(x) = 0``" (e.g. ``g = log(α Λ)`` for a
stability eigenvalue ``α Λ`` crossing 1 along a branch of fixed points), and what is reported is
another quantity ``y`` at that crossing (e.g. the sample ratio ``α``). When ``g`` and ``y`` are
expectations computed by randomised quadrature with ``R`` independent replicas (the same
replicas at every ``x``: common random numbers, so each replica is a smooth function of ``x``),
:func:`crossing_with_error` locates the crossing of the replica mean and propagates the replica
spread to ``y`` at the crossing, plus the change under a refined deterministic rule.

No model knowledge: ``f(x) -> (g_replicas, y_replicas)`` is any callable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

__all__ = ["Crossing", "crossing_with_error", "Trajectory", "iterate_map", "log_growth_rate"]

Evaluate = Callable[[float], tuple[np.ndarray, np.ndarray]]


@dataclass
class Crossing:
    """``root`` (the ``x`` of ``mean g = 0``), ``value`` (``y`` there) with ``error`` =
    √(``replica_error``² + ``refine_error``²); NaN and ``converged = False`` without a bracket."""

    root: float
    value: float
    error: float
    replica_error: float
    refine_error: float
    converged: bool
    evaluations: int
    trail: list[tuple[float, float, float]] = field(default_factory=list)


def _mean(a: np.ndarray) -> float:
    return float(np.mean(np.asarray(a, dtype=float)))


def crossing_with_error(f: Evaluate, scan: Sequence[float], *, tol: float = 1e-3,
                        maxiter: int = 12, refine: Evaluate | None = None) -> Crossing:
    """Crossing of ``mean g`` through 0 and ``y`` there.

    1. ``f`` at the ``scan`` points in order until the mean of ``g`` changes sign;
    2. Illinois regula falsi inside that bracket until the bracket or the last step is ``≤ tol``;
    3. linearisation at the last point ``x*``: with secant slopes ``g'`` and ``y'``, each replica
       ``r`` gives a root ``x_r = x* − g_r/g'`` and ``y_r + y'(x_r − x*)``; the value is their
       mean, ``replica_error`` their standard error;
    4. ``refine`` (optional): the same evaluation with a finer deterministic rule at ``x*``;
       ``refine_error`` is the change of the linearised value.
    """
    trail: list[tuple[float, float, float]] = []
    evals = 0
    cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def ev(x: float) -> tuple[np.ndarray, np.ndarray]:
        nonlocal evals
        if x not in cache:
            g, y = f(float(x))
            cache[x] = (np.atleast_1d(np.asarray(g, float)), np.atleast_1d(np.asarray(y, float)))
            evals += 1
            trail.append((float(x), _mean(cache[x][0]), _mean(cache[x][1])))
        return cache[x]

    nan = float("nan")
    a = b = None
    prev = None
    for x in scan:
        gx = _mean(ev(x)[0])
        if not np.isfinite(gx):
            return Crossing(nan, nan, nan, nan, nan, False, evals, trail)
        if prev is not None and np.sign(gx) != np.sign(prev[1]):
            a, b = prev, (x, gx)
            break
        prev = (x, gx)
    if a is None:
        return Crossing(nan, nan, nan, nan, nan, False, evals, trail)
    (xa, ga), (xb, gb) = a, b
    side = 0
    last = xb
    for _ in range(maxiter):
        xm = xb - gb * (xb - xa) / (gb - ga)
        step = abs(xm - last)
        gm = _mean(ev(xm)[0])
        last = xm
        if not np.isfinite(gm):
            return Crossing(nan, nan, nan, nan, nan, False, evals, trail)
        if np.sign(gm) == np.sign(gb):
            xb, gb = xm, gm
            if side == -1:
                ga /= 2
            side = -1
        else:
            xa, ga = xm, gm
            if side == 1:
                gb /= 2
            side = 1
        if abs(xb - xa) <= tol or step <= tol or gm == 0:
            break
    # linearise at the evaluated point closest to the crossing, slopes from its nearest neighbour
    pts = sorted(cache, key=lambda x: abs(_mean(cache[x][0])))
    xs = pts[0]
    xo = min((x for x in cache if x != xs), key=lambda x: abs(x - xs))
    gs, ys = cache[xs]
    go, yo = cache[xo]
    dg = (_mean(gs) - _mean(go)) / (xs - xo)
    dy = (_mean(ys) - _mean(yo)) / (xs - xo)
    xr = xs - gs / dg
    yr = ys + dy * (xr - xs)
    root = float(np.mean(xr))
    value = float(np.mean(yr))
    rep_err = float(np.std(yr, ddof=1) / np.sqrt(yr.size)) if yr.size > 1 else nan
    ref_err = 0.0
    if refine is not None:
        g2, y2 = refine(float(xs))
        evals += 1
        v2 = _mean(y2) + dy * (-_mean(g2) / dg)
        ref_err = abs(v2 - value)
    err = float(np.hypot(rep_err, ref_err))
    ok = bool(np.isfinite(value) and np.isfinite(err) and abs(xs - root) <= 10 * max(tol, abs(xs - xo)))
    return Crossing(root, value, err, rep_err, ref_err, ok, evals, trail)


@dataclass
class Trajectory:
    """``x[t]`` for ``t = 0 … iterations`` (rows after an early stop repeat the fixed point),
    the undamped residual ``r[t]`` of each step, and ``stopped`` (the step count actually run)."""

    x: np.ndarray
    residual: np.ndarray
    stopped: int


def iterate_map(step: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], x0: Sequence[float],
                iterations: int, *, stop_residual: float = 0.0) -> Trajectory:
    """Record ``x_{t+1} = step(x_t)[0]`` for ``iterations`` steps (``step`` returns the next
    iterate and the **undamped** residual ``F(x) − x``). Stops early, repeating the last
    iterate, once ``max|residual| ≤ stop_residual`` (a fixed point: further steps change
    nothing beyond that)."""
    x = np.asarray(x0, dtype=float)
    xs = np.empty((iterations + 1, x.size))
    rs = np.full((iterations + 1, x.size), np.nan)
    xs[0] = x
    t_stop = iterations
    for t in range(iterations):
        nxt, res = step(x)
        rs[t] = np.abs(res)
        x = np.asarray(nxt, dtype=float)
        xs[t + 1] = x
        if not np.all(np.isfinite(x)):
            xs[t + 2:] = np.nan
            t_stop = t + 1
            break
        if stop_residual > 0 and np.max(np.abs(res)) <= stop_residual:
            xs[t + 2:] = x
            rs[t + 1:] = rs[t]
            t_stop = t + 1
            break
    return Trajectory(xs, rs, t_stop)


def log_growth_rate(series: np.ndarray, start: int, stop: int) -> float:
    """Least-squares slope of ``log|series[t]|`` for ``start ≤ t < stop``: the per-step growth
    rate of a perturbation along an unstable (> 0) or stable (< 0) direction; its inverse is
    the relaxation time, which diverges at a threshold (critical slowing down)."""
    t = np.arange(start, stop)
    y = np.log(np.abs(np.asarray(series, dtype=float)[start:stop]))
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(t[ok], y[ok], 1)[0])
