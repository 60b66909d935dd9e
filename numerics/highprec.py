"""High-precision re-evaluation with mpmath, and how many digits agree.

The float64 kernels are checked against the same expressions printed for mpmath
and evaluated at tens of digits; :func:`agreeing_digits` turns the comparison into
a number of correct significant digits (capped at 17 for float64 inputs).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import mpmath
import numpy as np

__all__ = ["agreeing_digits", "mp_bracketed_newton", "workdps"]

workdps = mpmath.workdps


def agreeing_digits(approx: Any, exact: Any, *, floor: float = 1e-300) -> np.ndarray:
    """``-log10(|approx - exact| / max(|exact|, floor))``, capped at 17; inf-vs-inf agree.

    ``exact`` may hold mpmath numbers; the difference is taken in mpmath so the
    reference is not rounded before the comparison.
    """
    a = np.asarray(approx, dtype=float)
    e = np.asarray(exact, dtype=object)
    a, e = np.broadcast_arrays(a, e)
    out = np.empty(a.shape)
    for idx in np.ndindex(a.shape):
        av, ev = a[idx], mpmath.mpf(e[idx])
        if mpmath.isnan(ev) or math.isnan(av):
            out[idx] = 17.0 if (mpmath.isnan(ev) and math.isnan(av)) else 0.0
            continue
        if mpmath.isinf(ev) or math.isinf(av):
            out[idx] = 17.0 if (mpmath.isinf(ev) and math.isinf(av) and (ev > 0) == (av > 0)) else 0.0
            continue
        err = abs(mpmath.mpf(av) - ev)
        scale = max(abs(ev), mpmath.mpf(floor))
        out[idx] = 17.0 if err == 0 else min(17.0, float(-mpmath.log10(err / scale)))
    return out


def mp_bracketed_newton(f: Callable[[Any], Any], df: Callable[[Any], Any], lo: Any, hi: Any,
                        x0: Any = None, *, tol_digits: int | None = None,
                        maxiter: int = 400) -> tuple[Any, int]:
    """Root of ``f`` in ``[lo, hi]`` at the current mpmath precision.

    Safeguarded Newton: a Newton step when it stays inside the bracket, bisection
    otherwise; stops when the step is below ``10**-(tol_digits)`` relative (default:
    the working precision minus 5 digits). Returns ``(root, iterations)``; raises
    ``ArithmeticError`` if ``f(lo)`` and ``f(hi)`` do not differ in sign or the
    iteration budget runs out.
    """
    lo, hi = mpmath.mpf(lo), mpmath.mpf(hi)
    flo, fhi = f(lo), f(hi)
    if flo * fhi > 0:
        raise ArithmeticError(f"no sign change in [{lo}, {hi}]: f = {flo}, {fhi}")
    if flo > 0:
        lo, hi = hi, lo
    digits = tol_digits if tol_digits is not None else mpmath.mp.dps - 5
    tol = mpmath.mpf(10) ** (-digits)
    x = mpmath.mpf(x0) if x0 is not None else (lo + hi) / 2
    if not (min(lo, hi) < x < max(lo, hi)):
        x = (lo + hi) / 2
    for it in range(1, maxiter + 1):
        fx = f(x)
        if fx == 0:
            return x, it
        if fx < 0:
            lo = x
        else:
            hi = x
        step = fx / df(x)
        xn = x - step
        if not (min(lo, hi) < xn < max(lo, hi)):
            xn = (lo + hi) / 2
        if abs(xn - x) <= tol * abs(xn):
            return xn, it
        x = xn
    raise ArithmeticError(f"mp_bracketed_newton: no convergence in {maxiter} iterations")
