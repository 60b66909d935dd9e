"""Vectorised bracketed scalar root finding over whole parameter grids.

:func:`bracketed_root` solves ``f(x, *args) = 0`` independently at every grid point,
keeping a sign-change bracket per point. Each iteration takes a Newton step where
it stays inside the bracket and shrinks it fast enough, and a bisection step
(geometric, in log space, when ``log_space``) elsewhere -- the classic safeguarded
Newton ("rtsafe"), done with masks so it is branch-free and runs on CuPy.
Converged points are frozen; every point reports its own iterations, residual and
status.
"""
from __future__ import annotations

from typing import Any, Callable

from .backend import Backend, get_backend
from .results import PointwiseResult, Status

__all__ = ["bracketed_root", "expand_bracket"]

Func = Callable[..., Any]


def expand_bracket(f: Func, lo: Any, hi: Any, args: tuple = (), *, factor: float = 4.0,
                   max_steps: int = 60, backend: str | Backend = "numpy") -> tuple[Any, Any, Any]:
    """Grow ``hi`` geometrically where ``f(hi) <= 0`` (f assumed increasing, ``f(lo) < 0``).

    Returns ``(lo, hi, ok)`` with ``ok`` True where a sign change was found.
    """
    be = get_backend(backend)
    xp = be.xp
    lo = be.asarray(lo)
    hi = be.asarray(hi)
    hi = xp.broadcast_to(hi, xp.broadcast_shapes(lo.shape, hi.shape)).copy()
    f_hi = f(hi, *args)
    for _ in range(max_steps):
        need = ~(f_hi > 0)
        if not bool(xp.any(need)):
            break
        lo = xp.where(need & (f_hi < 0), hi, lo)  # hi is a better lower end
        hi = xp.where(need, hi * factor, hi)
        f_hi = xp.where(need, f(hi, *args), f_hi)
    return lo, hi, f_hi > 0


def bracketed_root(f: Func, lo: Any, hi: Any, args: tuple = (), *, fprime: Func | None = None,
                   fdf: Func | None = None, xtol: float = 0.0, rtol: float = 4e-16,
                   ftol: float = 0.0, maxiter: int = 200, log_space: bool = False,
                   compact: bool | None = None,
                   backend: str | Backend = "numpy") -> PointwiseResult:
    """Root of ``f(x, *args)`` in ``[lo, hi]`` at every point of a grid.

    Parameters
    ----------
    f: vectorised callable ``(x, *args) -> array``.
    fprime: its derivative (optional); or ``fdf`` returning ``(f, f')`` in one call, which
        lets a kernel share the work (pure bisection when neither is given).
    lo, hi: brackets, broadcastable with ``args``; ``f(lo)`` and ``f(hi)`` must differ
        in sign (points where they do not get ``Status.NO_BRACKET``).
    xtol, rtol: a point converges when its Newton step, its bracket, or ``|f/f'|`` is
        below ``xtol + rtol*|x|``, or when ``|f(x)| <= ftol``.
    log_space: bisect geometrically (needs ``0 < lo``), for roots spanning decades.
    compact: iterate only on unconverged points (gathered by index) once fewer than
        half remain. Default: on for NumPy, off for CuPy (where gathers cost more than
        the arithmetic they save).

    Newton steps are taken when they land strictly inside the bracket and shrink the
    step at least geometrically (the "rtsafe" safeguard, comparing with the step
    before last); otherwise the bracket is bisected.

    Returns a :class:`PointwiseResult` (``x`` is NaN where not converged).
    """
    be = get_backend(backend)
    xp = be.xp
    if compact is None:
        compact = be.name == "numpy"
    if fdf is None and fprime is not None:
        def fdf(x: Any, *a: Any) -> tuple[Any, Any]:
            return f(x, *a), fprime(x, *a)
    arrays = [be.asarray(lo), be.asarray(hi)] + [be.asarray(a) for a in args]
    shape = xp.broadcast_shapes(*[a.shape for a in arrays])
    lo, hi, *args_full = [xp.broadcast_to(a, shape).reshape(-1) for a in arrays]
    size = lo.size
    with _quiet(xp):
        flo = f(lo, *args_full)
        fhi = f(hi, *args_full)
    finite = xp.isfinite(flo) & xp.isfinite(fhi)
    bracketed = finite & (xp.sign(flo) * xp.sign(fhi) <= 0)
    swap = flo > 0  # orient so that f(lo) <= 0 <= f(hi)
    lo, hi = xp.where(swap, hi, lo), xp.where(swap, lo, hi)
    exact_lo, exact_hi = flo == 0, fhi == 0

    def mid(a: Any, b: Any) -> Any:
        return xp.sqrt(a * b) if log_space else 0.5 * (a + b)

    x_all = xp.where(exact_lo, lo, xp.where(exact_hi, hi, mid(lo, hi)))
    done = bracketed & (exact_lo | exact_hi)
    nonfinite = ~finite
    iterations = xp.zeros(size, dtype=xp.int64)
    maxed = xp.zeros(size, dtype=bool)

    # working set: indices of points still iterating
    idx = xp.nonzero(bracketed & ~done)[0]
    w_lo, w_hi, w_x = lo[idx], hi[idx], x_all[idx]
    w_args = tuple(a[idx] for a in args_full)
    w_dx = xp.abs(w_hi - w_lo)
    w_dxold = w_dx.copy()
    w_active = xp.ones(idx.shape, dtype=bool)
    for it in range(maxiter):
        n_active = int(w_active.sum()) if compact else (1 if bool(xp.any(w_active)) else 0)
        if n_active == 0:
            break
        if compact and n_active < 0.5 * w_active.size:
            keep = xp.nonzero(w_active)[0]
            idx, w_lo, w_hi, w_x = idx[keep], w_lo[keep], w_hi[keep], w_x[keep]
            w_dx, w_dxold = w_dx[keep], w_dxold[keep]
            w_args = tuple(a[keep] for a in w_args)
            w_active = w_active[keep]
        with _quiet(xp):
            if fdf is not None:
                fx, dfx = fdf(w_x, *w_args)
            else:
                fx, dfx = f(w_x, *w_args), None
            ok = xp.isfinite(fx)
            bad = w_active & ~ok
            if bool(xp.any(bad)):
                nonfinite[idx[bad]] = True
            act = w_active & ok
            hit = act & (xp.abs(fx) <= ftol)
            neg = fx < 0
            w_lo = xp.where(act & neg, w_x, w_lo)
            w_hi = xp.where(act & ~neg, w_x, w_hi)
            bis = mid(w_lo, w_hi)
            if dfx is not None:
                step = fx / dfx
                newton = w_x - step
                inside = (newton > xp.minimum(w_lo, w_hi)) & (newton < xp.maximum(w_lo, w_hi))
                fast = xp.abs(step) <= 0.5 * w_dxold
                use_newton = inside & fast & xp.isfinite(newton)
                x_new = xp.where(use_newton, newton, bis)
                tiny_newton = xp.isfinite(step) & (xp.abs(step) <= xtol + rtol * xp.abs(w_x))
            else:
                x_new = bis
                tiny_newton = xp.zeros(w_x.shape, dtype=bool)
        dx = xp.abs(x_new - w_x)
        tol = xtol + rtol * xp.abs(x_new)
        conv = act & (hit | tiny_newton | (dx <= tol) | (xp.abs(w_hi - w_lo) <= tol))
        if dfx is not None:  # a last, tiny Newton correction is always taken
            x_new = xp.where(tiny_newton, newton, x_new)
        w_x = xp.where(act & ~hit, x_new, w_x)
        w_dxold = xp.where(act, w_dx, w_dxold)
        w_dx = xp.where(act, dx, w_dx)
        iterations[idx] = iterations[idx] + act
        x_all[idx] = w_x
        if bool(xp.any(conv)):
            done[idx[conv]] = True
        w_active = act & ~conv
    if bool(xp.any(w_active)):
        maxed[idx[w_active]] = True
    with _quiet(xp):
        fx_all = f(x_all, *args_full)
    status = xp.full(size, int(Status.OK), dtype=xp.int8)
    status = xp.where(maxed, int(Status.MAXITER), status)
    status = xp.where(~bracketed, int(Status.NO_BRACKET), status)
    status = xp.where(nonfinite, int(Status.NONFINITE), status)
    converged = done & ~nonfinite
    x_all = xp.where(converged, x_all, xp.nan)
    return PointwiseResult(x=x_all.reshape(shape), converged=converged.reshape(shape),
                           residual=xp.abs(fx_all).reshape(shape),
                           iterations=iterations.reshape(shape), status=status.reshape(shape))


class _quiet:
    """Silence floating-point warnings from masked-out lanes (NumPy only)."""

    def __init__(self, xp: Any) -> None:
        self._np = xp.__name__ == "numpy"

    def __enter__(self) -> None:
        if self._np:
            import numpy as np

            self._old = np.seterr(all="ignore")

    def __exit__(self, *exc: Any) -> None:
        if self._np:
            import numpy as np

            np.seterr(**self._old)
