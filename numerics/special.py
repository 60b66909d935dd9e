r"""Special functions that SciPy lacks in the form the generated kernels need.

:func:`bvn_cdf` — the bivariate normal CDF $\Phi_2(h,k;r)=P(X\le h,Y\le k)$, vectorised and
accurate *relative to its value* in the lower tails, where Owen's $T$-function formula (exact
in absolute terms) cancels: wherever that formula gives less than ``switch`` the value is
recomputed as $\Phi(h)\int_0^1\Phi\big((k-r\,\Phi^{-1}(u\Phi(h)))/\sqrt{1-r^2}\big)\,du$
($h\le k$), a positive integrand (Gauss–Legendre in $u$, relative error ~1e-4 there, where the
value itself is below ``switch``).

One algorithm for every array backend: it takes the array module ``xp`` and its special-function
module ``special`` (``numpy`` + ``scipy.special``, or ``cupy`` + ``cupyx.scipy.special``), as the
generated kernels do (the code generator prints ``BivariateNormalCDF`` as a call of
:func:`bvn_cdf` with the kernel's ``xp`` and ``special``). Owen's $T$ comes from
``special.owens_t`` where the module has it (SciPy), otherwise from :func:`owens_t` below
(Gauss–Legendre, array operations only: CuPy has no ``owens_t``).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["bvn_cdf", "owens_t"]


@lru_cache(maxsize=8)
def _gl01(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on [0, 1]."""
    u, w = np.polynomial.legendre.leggauss(n)
    return (u + 1) / 2, w / 2


def _scipy_special() -> Any:
    import scipy.special

    return scipy.special


#: Gaussian cut-off of :func:`owens_t`'s integrand: exp(-_CUT²/2) ≈ 2e-22 of its peak
_CUT = 10.0


def owens_t(h: Any, a: Any, *, xp: Any = np, special: Any = None, n: int = 32) -> Any:
    r"""Owen's $T(h,a)=\frac1{2\pi}\int_0^a\frac{e^{-h^2(1+x^2)/2}}{1+x^2}\,dx$ with array
    operations only (for backends without ``owens_t``; SciPy's is used where it exists).

    $T$ is even in $h$ and odd in $a$. For $0\le a\le1$, with $x=au$,
    $T=\frac{a}{2\pi}e^{-h^2/2}\int_0^1 e^{-h^2a^2u^2/2}/(1+a^2u^2)\,du$, the integrand cut at
    $u=\min(1, 10/(ha))$ (below $e^{-50}$ of its peak beyond) and integrated by $n$-point
    Gauss–Legendre: the factor $1/(1+a^2u^2)$ has its poles at distance $\ge1$ and the
    Gaussian spans at most ten standard deviations, so the rule is exact to rounding. For
    $a>1$ (Owen 1956, eq. 2.3, with $\bar\Phi = 1-\Phi$, $h\ge0$):
    $T(h,a)=\tfrac12\bar\Phi(h)+\tfrac12\bar\Phi(ah)-\bar\Phi(h)\bar\Phi(ah)-T(ah,1/a)$, no
    cancellation for large $h$."""
    special = _scipy_special() if special is None else special
    h = xp.abs(xp.asarray(h, dtype=float))
    a = xp.asarray(a, dtype=float)
    sgn = xp.sign(a)
    a = xp.abs(a)
    big = a > 1
    with np.errstate(divide="ignore", invalid="ignore"):
        hh = xp.where(big, a * h, h)
        aa = xp.where(big, 1.0 / a, a)  # in [0, 1]
        s = hh * aa
        umax = xp.where(s > _CUT, _CUT / xp.where(s > _CUT, s, 1.0), 1.0)
        b = aa * umax  # x = b u, u in [0, 1]
        u, w = (xp.asarray(v) for v in _gl01(n))
        x2 = (b[..., None] * u) ** 2
        integral = xp.sum(w * xp.exp(-0.5 * (hh * hh)[..., None] * x2) / (1.0 + x2), axis=-1)
        t_small = b * xp.exp(-0.5 * hh * hh) * integral / (2 * np.pi)
        c1, c2 = special.ndtr(-h), special.ndtr(-a * h)
        t = xp.where(big, 0.5 * c1 + 0.5 * c2 - c1 * c2 - t_small, t_small)
    return sgn * t


def _owen(h: Any, k: Any, r: Any, xp: Any, special: Any) -> Any:
    r"""Owen's formula $\Phi_2=\tfrac12\Phi(h)+\tfrac12\Phi(k)-T(h,a_h)-T(k,a_k)-\tfrac12[hk<0]$,
    $a_h=(k-rh)/(h\sqrt{1-r^2})$, $a_k=(h-rk)/(k\sqrt{1-r^2})$ (exact in absolute terms).

    At $h=0$ (its limit $h\to0$, $a_h\to\pm\infty$, $T(0,\pm\infty)=\pm\tfrac14$) the $h$ terms
    $\tfrac12\Phi(h)-T(h,a_h)-\tfrac12[hk<0]$ sum to 0, likewise at $k=0$; at $h=k=0$,
    Sheppard's $\tfrac14+\arcsin(r)/(2\pi)$."""
    s = xp.sqrt(1 - r * r)
    h0, k0 = h == 0, k == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ah = xp.where(h0, 0.0, (k - r * h) / xp.where(h0, 1.0, h * s))
        ak = xp.where(k0, 0.0, (h - r * k) / xp.where(k0, 1.0, k * s))
    tfun = getattr(special, "owens_t", None)
    if tfun is None:
        th = owens_t(h, ah, xp=xp, special=special)
        tk = owens_t(k, ak, xp=xp, special=special)
    else:
        th, tk = tfun(h, ah), tfun(k, ak)
    ph, th = xp.where(h0, 0.0, 0.5 * special.ndtr(h)), xp.where(h0, 0.0, th)
    pk, tk = xp.where(k0, 0.0, 0.5 * special.ndtr(k)), xp.where(k0, 0.0, tk)
    out = ph + pk - th - tk - 0.5 * ((h * k) < 0)
    return xp.where(h0 & k0, 0.25 + xp.arcsin(r) / (2 * np.pi), out)


def bvn_cdf(h: Any, k: Any, r: Any, switch: float = 1e-6, n: int = 40, *, xp: Any = np,
            special: Any = None) -> Any:
    """``Φ2(h, k; r)`` for ``|r| < 1`` (broadcast arrays of the array module ``xp``, with its
    special-function module ``special``; NumPy/SciPy by default). ``h = 0`` or ``k = 0`` take
    Owen's formula in its limit (see :func:`_owen`)."""
    special = _scipy_special() if special is None else special
    h, k, r = xp.broadcast_arrays(xp.asarray(h, dtype=float), xp.asarray(k, dtype=float),
                                  xp.asarray(r, dtype=float))
    out = _owen(h, k, r, xp, special)
    bad = ~(out > switch)
    if bool(xp.any(bad)):
        hb, kb, rb = xp.minimum(h[bad], k[bad]), xp.maximum(h[bad], k[bad]), r[bad]
        u, w = (xp.asarray(v) for v in _gl01(n))
        P = special.ndtr(hb)
        with np.errstate(all="ignore"):
            x = special.ndtri(P[:, None] * u)
            val = P * xp.sum(w * special.ndtr((kb[:, None] - rb[:, None] * x)
                                              / xp.sqrt(1 - rb * rb)[:, None]), -1)
        out = xp.array(out, copy=True)
        out[bad] = xp.where(P > 0, val, 0.0)
    return out
