"""Vectorised bracketed scalar root finding over whole parameter grids.

:func:`bracketed_root` solves ``f(x, *args) = 0`` independently at every grid point,
keeping a sign-change bracket per point. Each iteration takes a Newton step where
it stays inside the bracket and shrinks it fast enough, and a bisection step
(geometric, in log space, when ``log_space``) elsewhere -- the classic safeguarded
Newton ("rtsafe"), done with masks so it is branch-free and runs on CuPy.
Every point stops on its own (converged, non-finite, or out of iterations) and reports
its own iterations, residual and status.
"""
from __future__ import annotations

from typing import Any, Callable

from .backend import Backend, get_backend
from .results import PointwiseResult, Status

__all__ = ["bracketed_root", "expand_bracket"]

Func = Callable[..., Any]

#: With compaction on, the working set is re-gathered once the points still iterating
#: fall below this fraction of it; until then stopped points ride along (their results
#: are already recorded; what is computed for them afterwards is discarded).
_COMPACT_BELOW = 0.5


def _default_compact(be: Backend, compact: bool | None) -> bool:
    return be.name == "numpy" if compact is None else bool(compact)


def expand_bracket(f: Func, lo: Any, hi: Any, args: tuple = (), *, factor: float = 4.0,
                   max_steps: int = 60, compact: bool | None = None, return_f_hi: bool = False,
                   backend: str | Backend = "numpy") -> tuple[Any, ...]:
    """Grow ``hi`` geometrically where ``f(hi) <= 0`` (f assumed increasing, ``f(lo) < 0``).

    Each step sets ``lo = hi`` where ``f(hi) < 0`` and ``hi = factor * hi``, at the points
    whose ``f(hi)`` is not yet positive, at most ``max_steps`` times. With ``compact``
    (default: on for NumPy, off for CuPy) ``f`` is evaluated only at those points
    (gathered by index); otherwise on the whole arrays, with ``where``.

    Returns ``(lo, hi, ok)`` with ``ok`` True where a sign change was found, and
    ``f(hi)`` as a fourth element with ``return_f_hi`` (pass it on to
    :func:`bracketed_root` as ``f_hi`` to save it one evaluation of ``f``).
    """
    be = get_backend(backend)
    xp = be.xp
    lo = be.asarray(lo)
    hi = be.asarray(hi)
    if not _default_compact(be, compact):
        hi = xp.broadcast_to(hi, xp.broadcast_shapes(lo.shape, hi.shape)).copy()
        f_hi = f(hi, *args)
        for _ in range(max_steps):
            need = ~(f_hi > 0)
            if not bool(xp.any(need)):
                break
            lo = xp.where(need & (f_hi < 0), hi, lo)  # hi is a better lower end
            hi = xp.where(need, hi * factor, hi)
            f_hi = xp.where(need, f(hi, *args), f_hi)
        return (lo, hi, f_hi > 0, f_hi) if return_f_hi else (lo, hi, f_hi > 0)
    args = tuple(be.asarray(a) for a in args)
    hi = xp.broadcast_to(hi, xp.broadcast_shapes(lo.shape, hi.shape)).copy()
    f_hi = be.asarray(f(hi, *args))
    shape = xp.broadcast_shapes(hi.shape, f_hi.shape)
    if bool(xp.all(f_hi > 0)):
        ok = xp.broadcast_to(f_hi > 0, shape).copy()
        return (lo, hi, ok, f_hi) if return_f_hi else (lo, hi, ok)
    # own flat copies: lo may be an input, f_hi an input or a broadcast view
    lo, hi, f_hi = (xp.broadcast_to(a, shape).reshape(-1).copy() for a in (lo, hi, f_hi))
    need = xp.nonzero(~(f_hi > 0))[0]
    args = tuple(xp.broadcast_to(a, shape).reshape(-1) for a in args)
    for _ in range(max_steps):
        if need.size == 0:
            break
        h = hi[need]
        lo[need] = xp.where(f_hi[need] < 0, h, lo[need])  # hi is a better lower end
        h = h * factor
        hi[need] = h
        fh = f(h, *(a[need] for a in args))
        f_hi[need] = fh
        need = need[~(fh > 0)]
    lo, hi, f_hi = lo.reshape(shape), hi.reshape(shape), f_hi.reshape(shape)
    return (lo, hi, f_hi > 0, f_hi) if return_f_hi else (lo, hi, f_hi > 0)


def bracketed_root(f: Func, lo: Any, hi: Any, args: tuple = (), *, fprime: Func | None = None,
                   fdf: Func | None = None, xtol: float = 0.0, rtol: float = 4e-16,
                   ftol: float = 0.0, maxiter: int = 200, log_space: bool = False,
                   compact: bool | None = None, f_hi: Any = None,
                   backend: str | Backend = "numpy") -> PointwiseResult:
    """Root of ``f(x, *args)`` in ``[lo, hi]`` at every point of a grid.

    Parameters
    ----------
    f: vectorised, elementwise callable ``(x, *args) -> array``.
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
    f_hi: ``f(hi, *args)`` when the caller has it already (``expand_bracket(...,
        return_f_hi=True)``); it is trusted, and saves one evaluation of ``f``.

    Newton steps are taken when they land strictly inside the bracket and shrink the
    step at least geometrically (the "rtsafe" safeguard, comparing with the step
    before last); otherwise the bracket is bisected.

    Returns a :class:`PointwiseResult` (``x`` is NaN where not converged; ``residual`` is
    ``|f(x)|`` at the returned iterate).
    """
    be = get_backend(backend)
    xp = be.xp
    compact = _default_compact(be, compact)
    if fdf is None and fprime is not None:
        def fdf(x: Any, *a: Any) -> tuple[Any, Any]:
            return f(x, *a), fprime(x, *a)
    arrays = [be.asarray(lo), be.asarray(hi)] + [be.asarray(a) for a in args]
    shape = xp.broadcast_shapes(*[a.shape for a in arrays])
    lo, hi, *args_full = [xp.broadcast_to(a, shape).reshape(-1) for a in arrays]
    size = lo.size
    with _quiet(xp):
        flo = f(lo, *args_full)
        if f_hi is None:
            fhi = f(hi, *args_full)
        else:
            fhi = xp.broadcast_to(be.asarray(f_hi), shape).reshape(-1)
    # On NumPy a reduction costs no device sync: skip the updates that change nothing.
    host = be.name == "numpy"

    def maybe(mask: Any) -> bool:
        return bool(xp.any(mask)) if host else True

    finite = xp.isfinite(flo) & xp.isfinite(fhi)
    bracketed = finite & (xp.sign(flo) * xp.sign(fhi) <= 0)
    swap = flo > 0  # orient so that f(lo) <= 0 <= f(hi)
    if maybe(swap):
        lo, hi = xp.where(swap, hi, lo), xp.where(swap, lo, hi)
    else:  # the iteration moves the ends in place: never the caller's arrays
        lo, hi = lo.copy(), hi.copy()

    def mid(a: Any, b: Any) -> Any:
        return xp.sqrt(a * b) if log_space else 0.5 * (a + b)

    exact = (flo == 0) | (fhi == 0)
    if maybe(exact):
        x_all = xp.where(flo == 0, lo, xp.where(fhi == 0, hi, mid(lo, hi)))
        done = bracketed & exact
        todo = bracketed & ~exact
    else:
        x_all = mid(lo, hi)
        done = xp.zeros(size, dtype=bool)
        todo = bracketed
    nonfinite = ~finite
    iterations = xp.zeros(size, dtype=xp.int64)
    maxed = xp.zeros(size, dtype=bool)
    with _quiet(xp):
        if compact:
            _iterate_compact(xp, f, fdf, args_full, lo, hi, x_all, todo, done, nonfinite,
                             iterations, maxed, mid, log_space, xtol, rtol, ftol, maxiter)
        else:
            x_all = _iterate_masked(xp, f, fdf, args_full, lo, hi, x_all, todo, done, nonfinite,
                                    iterations, maxed, mid, log_space, xtol, rtol, ftol, maxiter)
        fx_all = f(x_all, *args_full)
    status = xp.full(size, int(Status.OK), dtype=xp.int8)
    if maybe(maxed):
        status = xp.where(maxed, int(Status.MAXITER), status)
    if maybe(~bracketed):
        status = xp.where(~bracketed, int(Status.NO_BRACKET), status)
    if maybe(nonfinite):
        status = xp.where(nonfinite, int(Status.NONFINITE), status)
        converged = done & ~nonfinite
    else:
        converged = done
    if maybe(~converged):
        x_all = xp.where(converged, x_all, xp.nan)
    return PointwiseResult(x=x_all.reshape(shape), converged=converged.reshape(shape),
                           residual=xp.abs(fx_all).reshape(shape),
                           iterations=iterations.reshape(shape), status=status.reshape(shape))


def _step(xp: Any, f: Func, fdf: Func | None, x: Any, lo: Any, hi: Any, dxold: Any,
          args: tuple, ordered: bool, positive: bool, mid: Callable, xtol: float, rtol: float,
          ftol: float) -> tuple[Any, ...]:
    """One safeguarded-Newton iteration on the working arrays.

    ``ordered``: ``lo <= hi`` everywhere (f increasing), so the bracket needs no min/max;
    ``positive``: every iterate is > 0 (log-space bisection), so no ``abs``.

    Moves the bracket ends ``lo``/``hi`` to ``x`` in place (by the sign of ``f(x)``) and
    returns ``(x_next, dx, conv, hit, fin)``: the next iterate, the step taken (before a
    final tiny Newton correction), converged, ``|f(x)| <= ftol``, ``f(x)`` finite.
    """
    if fdf is not None:
        fx, dfx = fdf(x, *args)
    else:
        fx, dfx = f(x, *args), None
    neg = fx < 0
    xp.copyto(lo, x, where=neg)
    xp.copyto(hi, x, where=~neg)
    bis = mid(lo, hi)
    if dfx is not None:
        step = fx / dfx
        newton = x - step
        a_step = xp.abs(step)
        if ordered:  # lo <= hi at every point
            inside = (newton > lo) & (newton < hi)
        else:
            inside = (newton > xp.minimum(lo, hi)) & (newton < xp.maximum(lo, hi))
        # a NaN or infinite Newton point is never strictly inside a finite bracket
        x_new = xp.where(inside & (a_step <= 0.5 * dxold), newton, bis)
        tol_x = rtol * (x if positive else xp.abs(x))
        if xtol:
            tol_x += xtol
        tiny = a_step <= tol_x  # False for a NaN step
    else:
        x_new = bis
        tiny = None
    dx = xp.abs(x_new - x)
    tol = rtol * (x_new if positive else xp.abs(x_new))
    if xtol:
        tol += xtol
    hit = (fx == 0) if ftol == 0 else (xp.abs(fx) <= ftol)
    conv = hit | (dx <= tol) | (((hi - lo) if ordered else xp.abs(hi - lo)) <= tol)
    if tiny is not None:
        conv |= tiny
        x_new = xp.where(tiny, newton, x_new)  # a last, tiny Newton correction is always taken
    fin = xp.isfinite(fx)
    return x_new, dx, conv, hit, fin


def _iterate_compact(xp: Any, f: Func, fdf: Func | None, args_full: list, lo: Any, hi: Any,
                     x_all: Any, todo: Any, done: Any, nonfinite: Any, iterations: Any,
                     maxed: Any, mid: Callable, positive: bool, xtol: float, rtol: float,
                     ftol: float, maxiter: int) -> None:
    """Iterate on a working set gathered by index; record each point when it stops."""
    n_todo = int(xp.count_nonzero(todo))
    if n_todo == 0:
        return
    if n_todo == todo.size:
        idx = None  # the working set is everything, in order
        w_lo, w_hi, w_x, w_args = lo, hi, x_all, tuple(args_full)  # lo, hi: ours
    else:
        idx = xp.nonzero(todo)[0]
        w_lo, w_hi, w_x = lo[idx], hi[idx], x_all[idx]
        w_args = tuple(a[idx] for a in args_full)
    ordered = bool(xp.all(w_lo <= w_hi))
    w_dx = (w_hi - w_lo) if ordered else xp.abs(w_hi - w_lo)
    w_dxold = w_dx
    live = None  # None: every working point is still iterating
    n_live = n_todo
    for it in range(maxiter):
        x_new, dx, conv, hit, fin = _step(xp, f, fdf, w_x, w_lo, w_hi, w_dxold, w_args, ordered,
                                          positive, mid, xtol, rtol, ftol)
        stop = conv | ~fin
        if live is not None:
            stop &= live
        n_stop = int(xp.count_nonzero(stop))
        if n_stop:
            e = xp.nonzero(stop)[0]
            g = e if idx is None else idx[e]
            fin_e = fin[e]
            keep_x = hit[e] | ~fin_e  # f = 0 there (or not finite): x stays
            x_all[g] = xp.where(keep_x, w_x[e], x_new[e])
            done[g] = conv[e] & fin_e
            nonfinite[g] = ~fin_e
            iterations[g] = it + fin_e
            n_live -= n_stop
        w_dxold, w_dx, w_x = w_dx, dx, x_new
        if n_live == 0:
            return
        if n_stop:
            keep = ~stop if live is None else live & ~stop
            if n_live < _COMPACT_BELOW * keep.size:
                k = xp.nonzero(keep)[0]
                idx = k if idx is None else idx[k]
                w_lo, w_hi, w_x, w_dx, w_dxold = w_lo[k], w_hi[k], w_x[k], w_dx[k], w_dxold[k]
                w_args = tuple(a[k] for a in w_args)
                live = None
            else:
                live = keep
    k = xp.nonzero(live)[0] if live is not None else slice(None)
    g = (xp.arange(todo.size) if idx is None else idx)[k]
    x_all[g] = w_x[k]
    maxed[g] = True
    iterations[g] = maxiter


def _iterate_masked(xp: Any, f: Func, fdf: Func | None, args_full: list, lo: Any, hi: Any,
                    x_all: Any, todo: Any, done: Any, nonfinite: Any, iterations: Any,
                    maxed: Any, mid: Callable, positive: bool, xtol: float, rtol: float,
                    ftol: float, maxiter: int) -> Any:
    """Iterate on the whole arrays, stopped points frozen with ``where`` (no gathers, one
    host sync per iteration); returns the final iterates."""
    x = x_all
    ordered = bool(xp.all((lo <= hi) | ~todo))
    dx = (hi - lo) if ordered else xp.abs(hi - lo)
    dxold = dx
    live = todo
    for it in range(maxiter):
        if not bool(xp.any(live)):
            break
        x_new, dx_new, conv, hit, fin = _step(xp, f, fdf, x, lo, hi, dxold, args_full, ordered,
                                              positive, mid, xtol, rtol, ftol)
        act = live & fin
        x = xp.where(act & ~hit, x_new, x)
        dxold, dx = dx, dx_new
        iterations += act
        nonfinite |= live & ~fin
        conv &= act
        done |= conv
        live = act & ~conv
    maxed |= live
    return x


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
