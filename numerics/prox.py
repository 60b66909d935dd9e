"""Batched proximal steps: minimise many small smooth objectives at once by safeguarded Newton.

Each row ``i`` of the batch is its own problem ``min_x f_i(x)``, ``x ∈ R^k`` with ``k``
small (a token-indexed prox, ``k = L·r``). The caller supplies value, gradient and
Hessian (generated from SymPy). Steps are Newton steps on the Hessian shifted to be
positive definite (``H + μ I`` with ``μ = max(0, δ − λ_min(H))``), followed by a
backtracking Armijo line search, so every accepted step decreases ``f``. A row has
converged when ``‖∇f‖_∞ ≤ gtol``. Several starts per row can be run and the lowest
local minimum kept (:func:`minimize_multistart`), since Moreau envelopes of non-convex
losses can have several local minima.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .results import Status

__all__ = ["NewtonResult", "newton_minimize", "minimize_multistart"]

#: value, gradient, Hessian of the objectives at rows ``idx``: (n,), (n, k), (n, k, k)
FGH = Callable[[Any, Any], tuple[Any, Any, Any]]


@dataclass
class NewtonResult:
    """Per row: minimiser ``x`` (n, k), value ``fun``, ``grad_norm`` (∞-norm),
    ``converged``, ``iterations``, ``status`` (:class:`~numerics.results.Status`)."""

    x: Any
    fun: Any
    grad_norm: Any
    converged: Any
    iterations: Any
    status: Any


def _shifted_newton_step(g: Any, H: Any, xp: Any, delta: float) -> Any:
    """Solve ``(H + μI) p = −g``; ``μ = |λ_min| + δ`` where ``λ_min < δ`` (modified Newton:
    negative curvature is reflected rather than clipped to ``δ``, which keeps steps finite)."""
    k = g.shape[1]
    if k == 2:  # closed forms: batched LAPACK calls on 2x2 blocks are slow
        a, c = H[:, 0, 0], H[:, 1, 1]
        b = 0.5 * (H[:, 0, 1] + H[:, 1, 0])
        scale = xp.maximum(1.0, xp.maximum(xp.maximum(xp.abs(a), xp.abs(c)), xp.abs(b)))
        lam_min = 0.5 * (a + c) - xp.sqrt(0.25 * (a - c) ** 2 + b * b)
        mu = xp.where(lam_min < delta * scale, xp.abs(lam_min) + delta * scale, 0.0)
        a, c = a + mu, c + mu
        det = a * c - b * b
        return -xp.stack([(c * g[:, 0] - b * g[:, 1]) / det, (a * g[:, 1] - b * g[:, 0]) / det], axis=1)
    H = 0.5 * (H + xp.swapaxes(H, 1, 2))
    scale = xp.maximum(1.0, xp.max(xp.abs(H), axis=(1, 2)))
    lam_min = xp.linalg.eigvalsh(H)[:, 0]
    mu = xp.where(lam_min < delta * scale, xp.abs(lam_min) + delta * scale, 0.0)
    A = H + mu[:, None, None] * xp.eye(k)[None]
    return -xp.linalg.solve(A, g[..., None])[..., 0]


def newton_minimize(fgh: FGH, x0: Any, *, gtol: float = 1e-10, maxiter: int = 50,
                    max_halvings: int = 40, xp: Any = np, delta: float = 1e-8,
                    idx: Any | None = None, max_step: float = 10.0) -> NewtonResult:
    """Minimise ``f_i`` from ``x0[i]`` for every row ``i`` (see the module docstring).

    ``fgh(x, rows)`` evaluates the rows ``rows`` (indices into the batch, or into
    ``idx`` when given: then row ``j`` of ``x0`` is problem ``idx[j]``).

    The rows still iterating are kept as compact arrays (value, gradient, Hessian, iterate) and
    written back once they leave: each iteration touches only them, with no scatter of the
    whole batch.
    """
    x = xp.array(x0, dtype=float, copy=True)
    n, k = x.shape
    base = xp.arange(n) if idx is None else xp.asarray(idx)
    f, g, H = fgh(x, base)
    f = xp.array(f, dtype=float, copy=True)
    gn = xp.max(xp.abs(g), axis=1)
    iterations = xp.zeros(n, dtype=np.int64)
    status = xp.full(n, int(Status.MAXITER), dtype=np.int8)
    conv = gn <= gtol
    status[conv] = int(Status.OK)
    bad = ~(xp.isfinite(f) & xp.all(xp.isfinite(g), axis=1))
    status[bad] = int(Status.NONFINITE)
    act = xp.nonzero(~conv & ~bad)[0]
    xa, fa, ga, Ha = x[act], f[act], g[act], H[act]
    eps8 = 8 * np.finfo(float).eps
    for it in range(1, maxiter + 1):
        if act.size == 0:
            break
        p = _shifted_newton_step(ga, Ha, xp, delta)
        # cap the step length (a crude trust region): no candidate far outside the basin
        cap = max_step * xp.maximum(1.0, xp.max(xp.abs(xa), axis=1))
        size = xp.max(xp.abs(p), axis=1)
        p = p * xp.minimum(1.0, cap / xp.maximum(size, 1e-300))[:, None]
        slope = xp.sum(ga * p, axis=1)
        # Armijo, with room for round-off in f near the minimum (else the last quadratic steps
        # are rejected and Newton degrades to halvings)
        slack = eps8 * xp.maximum(1.0, xp.abs(fa))
        accepted = xp.zeros(act.size, dtype=bool)
        t = xp.ones(act.size)
        todo = None  # None: every compact row (the full step, tried first)
        for _ in range(max_halvings):
            if todo is None:
                cand = xa + p
                with np.errstate(over="ignore", invalid="ignore"):
                    fc, gc, Hc = fgh(cand, base[act])
                ok = xp.isfinite(fc) & (fc <= fa + 1e-4 * slope + slack)
                sel = xp.nonzero(ok)[0]
                rest = xp.nonzero(~ok)[0]
                okc = ok
            else:
                cand = xa[todo] + t[todo, None] * p[todo]
                with np.errstate(over="ignore", invalid="ignore"):
                    fc, gc, Hc = fgh(cand, base[act[todo]])
                okc = xp.isfinite(fc) & (fc <= fa[todo] + 1e-4 * t[todo] * slope[todo] + slack[todo])
                sel = todo[okc]
                rest = todo[~okc]
            # the accepted trial's value, gradient and Hessian: no second evaluation
            xa[sel], fa[sel], ga[sel], Ha[sel] = cand[okc], fc[okc], gc[okc], Hc[okc]
            accepted[sel] = True
            todo = rest
            if todo.size == 0:
                break
            t[todo] *= 0.5
        gna = xp.max(xp.abs(ga), axis=1)
        iterations[act] = it
        done = gna <= gtol
        status[act[done]] = int(Status.OK)
        # rows where no decrease was possible sit at a minimum to round-off: stop them; accept if
        # the gradient is small relative to the objective's scale, else report MAXITER
        stalled = ~accepted
        if bool(xp.any(stalled)):
            small = stalled & (gna <= 1e3 * gtol * xp.maximum(1.0, xp.abs(fa)))
            status[act[small]] = int(Status.OK)
        leave = done | stalled
        if bool(xp.any(leave)):
            li = act[leave]
            x[li], f[li], gn[li] = xa[leave], fa[leave], gna[leave]
            keep = ~leave
            act, xa, fa, ga, Ha = act[keep], xa[keep], fa[keep], ga[keep], Ha[keep]
    if act.size:  # out of iterations: the last iterates
        x[act], f[act], gn[act] = xa, fa, xp.max(xp.abs(ga), axis=1)
    converged = status == int(Status.OK)
    return NewtonResult(x, f, gn, converged, iterations, status)


def minimize_multistart(fgh: FGH, starts: Sequence[Any], **kw: Any) -> tuple[NewtonResult, Any]:
    """Run :func:`newton_minimize` from each array in ``starts`` (each ``(n, k)``) and keep,
    per row, the converged result with the lowest value.

    Returns the combined result and ``n_distinct``: per row, the number of converged
    starts whose minimiser differs from the kept one by more than ``1e-6`` (a flag for
    several local minima).
    """
    results = [newton_minimize(fgh, s, **kw) for s in starts]
    xp = kw.get("xp", np)
    fun = xp.stack([xp.where(r.converged, r.fun, xp.inf) for r in results])
    best = xp.argmin(fun, axis=0)
    n = results[0].x.shape[0]
    rows = xp.arange(n)
    pick = lambda name: xp.stack([getattr(r, name) for r in results])[best, rows]  # noqa: E731
    X = xp.stack([r.x for r in results])[best, rows]
    out = NewtonResult(X, pick("fun"), pick("grad_norm"), pick("converged"),
                       xp.stack([r.iterations for r in results]).sum(axis=0), pick("status"))
    distinct = xp.zeros(n, dtype=np.int64)
    for r in results:
        far = xp.max(xp.abs(r.x - X), axis=1) > 1e-6
        distinct += (r.converged & far).astype(np.int64)
    return out, distinct
