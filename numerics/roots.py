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
                   xtol: float = 0.0, rtol: float = 4e-16, ftol: float = 0.0,
                   maxiter: int = 200, log_space: bool = False,
                   backend: str | Backend = "numpy") -> PointwiseResult:
    """Root of ``f(x, *args)`` in ``[lo, hi]`` at every point of a grid.

    Parameters
    ----------
    f, fprime: vectorised callables ``(x, *args) -> array``; ``fprime`` is optional
        (pure bisection without it).
    lo, hi: brackets, broadcastable with ``args``; ``f(lo)`` and ``f(hi)`` must differ
        in sign (points where they do not get ``Status.NO_BRACKET``).
    xtol, rtol: a point converges when its bracket or its last step is below
        ``xtol + rtol*|x|``, or when ``|f(x)| <= ftol``.
    log_space: bisect geometrically (needs ``0 < lo``), for roots spanning decades.

    Returns a :class:`PointwiseResult` (``x`` is NaN where not converged).
    """
    be = get_backend(backend)
    xp = be.xp
    arrays = [be.asarray(lo), be.asarray(hi)] + [be.asarray(a) for a in args]
    shape = xp.broadcast_shapes(*[a.shape for a in arrays])
    lo, hi, *args_b = [xp.broadcast_to(a, shape) for a in arrays]
    args_b = tuple(args_b)
    lo = lo.copy()
    hi = hi.copy()
    with _quiet(xp):
        flo = f(lo, *args_b)
        fhi = f(hi, *args_b)
    finite = xp.isfinite(flo) & xp.isfinite(fhi)
    bracketed = finite & (xp.sign(flo) * xp.sign(fhi) <= 0)
    # orient so that f(lo) <= 0 <= f(hi)
    swap = flo > 0
    lo, hi = xp.where(swap, hi, lo), xp.where(swap, lo, hi)
    exact_lo = flo == 0
    exact_hi = fhi == 0

    def mid(a: Any, b: Any) -> Any:
        if log_space:
            return xp.sqrt(a * b)
        return 0.5 * (a + b)

    x = mid(lo, hi)
    x = xp.where(exact_lo, lo, xp.where(exact_hi, hi, x))
    active = bracketed & ~exact_lo & ~exact_hi
    done = bracketed & (exact_lo | exact_hi)
    iterations = xp.zeros(shape, dtype=xp.int64)
    nonfinite = ~finite
    dx_old = xp.abs(hi - lo)
    for _ in range(maxiter):
        if not bool(xp.any(active)):
            break
        with _quiet(xp):
            fx = f(x, *args_b)
            ok = xp.isfinite(fx)
            nonfinite |= active & ~ok
            active &= ok
            root_hit = active & (xp.abs(fx) <= ftol)
            neg = fx < 0
            lo = xp.where(active & neg, x, lo)
            hi = xp.where(active & ~neg, x, hi)
            bis = mid(lo, hi)
            if fprime is not None:
                dfx = fprime(x, *args_b)
                newton = x - fx / dfx
                inside = (newton > xp.minimum(lo, hi)) & (newton < xp.maximum(lo, hi))
                fast = xp.abs(newton - x) < 0.5 * dx_old
                use_newton = inside & fast & xp.isfinite(newton)
                x_new = xp.where(use_newton, newton, bis)
            else:
                x_new = bis
        step = xp.abs(x_new - x)
        width = xp.abs(hi - lo)
        tol = xtol + rtol * xp.abs(x_new)
        conv = active & (root_hit | (step <= tol) | (width <= tol))
        x = xp.where(active & ~root_hit, x_new, x)
        dx_old = xp.where(active, step, dx_old)
        iterations = iterations + active
        done |= conv
        active &= ~conv
    with _quiet(xp):
        fx = f(x, *args_b)
    status = xp.full(shape, int(Status.OK), dtype=xp.int8)
    status = xp.where(active, int(Status.MAXITER), status)
    status = xp.where(~bracketed, int(Status.NO_BRACKET), status)
    status = xp.where(nonfinite, int(Status.NONFINITE), status)
    converged = done & ~nonfinite
    x = xp.where(converged, x, xp.nan)
    return PointwiseResult(x=x, converged=converged, residual=xp.abs(fx),
                           iterations=iterations, status=status)


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
