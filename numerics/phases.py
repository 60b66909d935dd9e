"""Phases: linear stability of fixed points, deduplication of branches, first-order crossings.

- :func:`jacobian_fd` — Jacobian of a batched map ``F(x, idx)`` by central differences.
- :func:`stability` — the eigenvalue of that Jacobian with the largest real part; a
  branch of fixed points of the **undamped** map ends at a spinodal (saddle-node) where
  this eigenvalue crosses ``+1``.
- :func:`dedupe` — group fixed points found from several initialisations.
- :func:`bisect_sign_change` — batched bisection of a scalar function of one parameter
  (e.g. the free-energy difference of two branches) to a stated tolerance.
- :func:`locate_spinodal` — batched bisection of the last parameter value at which a
  branch still exists (solver converges and stays on the branch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["jacobian_fd", "stability", "dedupe", "bisect_sign_change", "BisectionResult",
           "locate_spinodal"]


def jacobian_fd(F: Callable[[Any, Any], Any], x: Any, idx: Any, *, rel_step: float = 1e-6,
                xp: Any = np) -> Any:
    """``J[p, i, j] = ∂F_i/∂x_j`` at each row ``p`` of ``x`` (central differences,
    step ``rel_step · max(1, |x_j|)``)."""
    n, k = x.shape
    J = xp.empty((n, k, k))
    for j in range(k):
        h = rel_step * xp.maximum(1.0, xp.abs(x[:, j]))
        xp_, xm = x.copy(), x.copy()
        xp_[:, j] += h
        xm[:, j] -= h
        J[:, :, j] = (F(xp_, idx) - F(xm, idx)) / (2.0 * h)[:, None]
    return J


def stability(J: Any, xp: Any = np) -> tuple[Any, Any]:
    """``(lead, radius)``: the eigenvalue with the largest real part (its real part) and the
    spectral radius of each ``J[p]``. Undamped iteration is locally stable iff
    ``radius < 1``; a branch of fixed points folds (spinodal) where ``lead`` reaches 1."""
    ev = np.linalg.eigvals(np.asarray(J))
    lead = ev.real.max(axis=1)
    radius = np.abs(ev).max(axis=1)
    return xp.asarray(lead), xp.asarray(radius)


def dedupe(points: Any, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``points`` (shape ``(s, k)``, NaN rows = failed starts ignored):
    returns ``(unique_rows, label_per_row)`` with label −1 for NaN rows; two rows are
    the same when ``max|a − b| / max(1, |a|) ≤ tol``."""
    pts = np.asarray(points, dtype=float)
    labels = np.full(len(pts), -1, dtype=int)
    uniq: list[np.ndarray] = []
    for i, p in enumerate(pts):
        if not np.all(np.isfinite(p)):
            continue
        for u_i, u in enumerate(uniq):
            if np.max(np.abs(p - u) / np.maximum(1.0, np.abs(u))) <= tol:
                labels[i] = u_i
                break
        else:
            labels[i] = len(uniq)
            uniq.append(p)
    return (np.array(uniq) if uniq else np.empty((0, pts.shape[1]))), labels


@dataclass
class BisectionResult:
    """``root`` per point, the final bracket ``[lo, hi]`` (``hi − lo ≤ tol`` where
    ``converged``), and ``converged``; points without a sign change hold NaN."""

    root: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    converged: np.ndarray
    evaluations: int


def bisect_sign_change(f: Callable[[np.ndarray, np.ndarray], np.ndarray], lo: Any, hi: Any, *,
                       tol: float = 1e-6, maxiter: int = 60) -> BisectionResult:
    """Batched bisection: ``f(values, idx)`` returns ``f`` at ``values`` for points ``idx``.

    Each point needs ``f(lo)`` and ``f(hi)`` of opposite signs (else it is reported
    unconverged with NaN root). A NaN value of ``f`` inside a bracket (e.g. one branch
    ceased to exist) is treated as a failure at that point.
    """
    lo = np.array(lo, dtype=float, copy=True)
    hi = np.array(hi, dtype=float, copy=True)
    n = lo.size
    idx = np.arange(n)
    flo, fhi = f(lo, idx), f(hi, idx)
    evals = 2
    ok = np.isfinite(flo) & np.isfinite(fhi) & (np.sign(flo) * np.sign(fhi) <= 0)
    conv = np.zeros(n, dtype=bool)
    active = idx[ok]
    for _ in range(maxiter):
        active = active[(hi[active] - lo[active]) > tol]
        if active.size == 0:
            break
        mid = 0.5 * (lo[active] + hi[active])
        fm = f(mid, active)
        evals += 1
        bad = ~np.isfinite(fm)
        ok[active[bad]] = False
        good = ~bad
        a, m, v = active[good], mid[good], fm[good]
        left = np.sign(v) == np.sign(flo[a])
        lo[a[left]], flo[a[left]] = m[left], v[left]
        hi[a[~left]], fhi[a[~left]] = m[~left], v[~left]
        active = a
    conv = ok & ((hi - lo) <= tol)
    root = np.where(conv, 0.5 * (lo + hi), np.nan)
    return BisectionResult(root, lo, hi, conv, evals)


def locate_spinodal(exists: Callable[[np.ndarray, np.ndarray], np.ndarray], inside: Any,
                    outside: Any, *, tol: float = 1e-4, maxiter: int = 60) -> BisectionResult:
    """Batched bisection for the edge of a branch: ``exists(values, idx)`` is True where the
    branch is found (solver converged on it) and False where it is gone; ``inside`` /
    ``outside`` are parameter values known to be on either side. The bracket returned
    contains the spinodal to ``tol``."""
    as_num = lambda v, i: np.where(exists(v, i), 1.0, -1.0)  # noqa: E731
    return bisect_sign_change(as_num, inside, outside, tol=tol, maxiter=maxiter)
