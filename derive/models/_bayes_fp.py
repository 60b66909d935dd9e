"""Fixed-point protocol helpers shared by the scalar RIE state evolutions (BSR, quadratic net).

See the "fixed-point models" block in :mod:`derive.model`: ``init`` (None, a length-k sequence,
or an ``(n, k)`` array whose NaN rows use the default), ``stability`` (leading eigenvalue of the
Jacobian of the undamped map at the fixed point), ``random_states``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from numerics.phases import jacobian_fd, stability

__all__ = ["parse_init", "leading_eigenvalue", "check_stability_option"]


def parse_init(init: Any, default: np.ndarray, name: str = "init",
               domain: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Starting states ``(n, k)`` from the option ``init``; ``default`` is ``(n, k)``.

    Raises ValueError naming the option for a wrong shape, or for finite values outside
    ``domain`` (a predicate on rows)."""
    x0 = np.array(default, dtype=float, copy=True)
    if init is None:
        return x0
    n, k = x0.shape
    a = np.asarray(init, dtype=float)
    if a.ndim == 1 and a.shape[0] == k:
        a = np.broadcast_to(a, (n, k))
    elif a.ndim == 0 and k == 1:
        a = np.full((n, 1), float(a))
    elif a.shape != (n, k):
        raise ValueError(f"option {name!r} must be None, a length-{k} sequence or an ({n}, {k}) "
                         f"array (one row per grid point), got shape {a.shape}")
    rows = np.all(np.isfinite(a), axis=1)
    if domain is not None and rows.any():
        bad = rows & ~domain(np.where(rows[:, None], a, 1.0))
        if bad.any():
            raise ValueError(f"option {name!r}: rows {np.flatnonzero(bad)[:5].tolist()} lie outside the "
                             f"domain of the map (got {a[bad][0].tolist()})")
    x0[rows] = a[rows]
    return x0


def check_stability_option(value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"option 'stability' must be True or False, got {value!r}")
    return bool(value)


def leading_eigenvalue(F: Callable[[np.ndarray, np.ndarray], np.ndarray], x: np.ndarray,
                       converged: np.ndarray, rel_step: float = 1e-5) -> np.ndarray:
    """Real part of the leading eigenvalue of ``∂F/∂x`` (undamped map, central differences) at
    the converged rows of ``x``; NaN elsewhere."""
    out = np.full(x.shape[0], np.nan)
    idx = np.flatnonzero(converged)
    if idx.size:
        with np.errstate(all="ignore"):
            J = jacobian_fd(F, x[idx], idx, rel_step=rel_step, xp=np)
        lead, _ = stability(J, np)
        out[idx] = lead
    return out
