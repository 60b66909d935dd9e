r"""Special functions that SciPy lacks in the form the generated kernels need.

:func:`bvn_cdf` — the bivariate normal CDF $\Phi_2(h,k;r)=P(X\le h,Y\le k)$, vectorised and
accurate *relative to its value* in the lower tails, where Owen's $T$-function formula (exact
in absolute terms) cancels: wherever that formula gives less than ``switch`` the value is
recomputed as $\Phi(h)\int_0^1\Phi\big((k-r\,\Phi^{-1}(u\Phi(h)))/\sqrt{1-r^2}\big)\,du$
($h\le k$), a positive integrand (Gauss–Legendre in $u$, relative error ~1e-4 there, where the
value itself is below ``switch``). NumPy / SciPy only.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from scipy import special as _sp

__all__ = ["bvn_cdf"]


@lru_cache(maxsize=4)
def _gl01(n: int) -> tuple[np.ndarray, np.ndarray]:
    u, w = np.polynomial.legendre.leggauss(n)
    return (u + 1) / 2, w / 2


def _owen(h: np.ndarray, k: np.ndarray, r: np.ndarray) -> np.ndarray:
    s = np.sqrt(1 - r * r)
    with np.errstate(divide="ignore", invalid="ignore"):
        ah = (k - r * h) / (h * s)
        ak = (h - r * k) / (k * s)
    return (0.5 * _sp.ndtr(h) + 0.5 * _sp.ndtr(k) - _sp.owens_t(h, ah) - _sp.owens_t(k, ak)
            - 0.5 * ((h * k) < 0))


def bvn_cdf(h: Any, k: Any, r: Any, switch: float = 1e-6, n: int = 40) -> np.ndarray:
    """``Φ2(h, k; r)`` for ``|r| < 1`` (broadcast arrays); ``h = 0`` or ``k = 0`` use the
    conditional-integral form too (Owen's formula divides by them)."""
    h, k, r = np.broadcast_arrays(np.asarray(h, float), np.asarray(k, float), np.asarray(r, float))
    out = _owen(h, k, r)
    bad = ~(out > switch) | (h == 0) | (k == 0)
    if np.any(bad):
        hb, kb, rb = np.minimum(h[bad], k[bad]), np.maximum(h[bad], k[bad]), r[bad]
        u, w = _gl01(n)
        P = _sp.ndtr(hb)
        with np.errstate(all="ignore"):
            x = _sp.ndtri(P[:, None] * u)
            val = P * np.sum(w * _sp.ndtr((kb[:, None] - rb[:, None] * x) / np.sqrt(1 - rb * rb)[:, None]), -1)
        out = np.array(out, copy=True)
        out[bad] = np.where(P > 0, val, 0.0)
    return out
