"""Batched fixed points ``x = F(x)`` over a whole parameter grid: damped and Anderson-accelerated.

Every point of the batch iterates on its own; the map is evaluated only on the points
still active (compaction), so converged points cost nothing. Convergence is judged,
point by point, on the residual of the **undamped** map over **all** components,

    r(x) = max_k |F_k(x) − x_k| / max(1, |x_k|),

evaluated at the iterate that is returned (never on the size of a damped step, which
shrinks with the damping and can stall far from a fixed point).

Anderson acceleration (type II, depth ``m``): with ``g = F(x) − x`` and the last ``m``
differences ``ΔX``, ``ΔG``, the step is ``x + β g − (ΔX + β ΔG) γ`` where
``γ = argmin ‖g − ΔG γ‖`` (batched, Tikhonov-regularised normal equations). A point
whose Anderson step is non-finite, leaves the domain (``project`` rejects it) or whose
residual grows tenfold over its best falls back to the plain damped step and restarts
its history.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .results import BatchOutcome, Status

__all__ = ["FixedPointResult", "solve_fixed_point", "undamped_residual"]


def undamped_residual(x: Any, fx: Any, xp: Any = np) -> Any:
    """``max_k |F_k(x) − x_k| / max(1, |x_k|)`` per point (rows of ``x``)."""
    return xp.max(xp.abs(fx - x) / xp.maximum(1.0, xp.abs(x)), axis=1)


@dataclass
class FixedPointResult(BatchOutcome):
    """Outcome of :func:`solve_fixed_point`, one entry per point.

    ``x`` is the last iterate (the one whose residual is reported; NaN rows only where
    the map itself became non-finite), ``converged`` is ``residual <= tol``,
    ``status`` holds :class:`~numerics.results.Status` codes.
    """

    x: Any
    converged: Any
    residual: Any
    iterations: Any
    status: Any
    names: tuple[str, ...] | None = None
    tol: float = 0.0

    @property
    def _converged_words(self) -> str:  # type: ignore[override]
        return f"converged to tol {self.tol:g} (undamped residual)"

    def as_dict(self) -> dict[str, Any]:
        """Order parameters by name plus ``converged``/``residual``/``iterations``/``status``."""
        out = {}
        if self.names:
            for i, n in enumerate(self.names):
                out[n] = self.x[:, i]
        out.update(converged=self.converged, residual=self.residual,
                   iterations=self.iterations, status=self.status)
        return out


def solve_fixed_point(F: Callable[[Any, Any], Any], x0: Any, *, damping: float = 0.5,
                      anderson: int = 5, tol: float = 1e-10, maxiter: int = 2000,
                      xp: Any = np, project: Callable[[Any, Any], Any] | None = None,
                      names: Sequence[str] | None = None, regularization: float = 1e-12,
                      callback: Callable[[int, Any, Any], None] | None = None) -> FixedPointResult:
    """Iterate ``x ← x + β (F(x) − x)`` (``β = damping``; ``β = 1`` is undamped), with
    Anderson acceleration of depth ``anderson`` (0 turns it off), until the undamped
    residual is ``≤ tol`` at every point or ``maxiter`` maps were evaluated.

    Parameters
    ----------
    F: ``F(x, idx)`` → undamped map at the active points; ``x`` has shape
        ``(len(idx), k)`` and ``idx`` indexes the batch (to select per-point parameters).
    x0: initial iterates, shape ``(n_points, k)``.
    project: optional ``project(x, idx)`` returning a boolean mask of rows that are
        inside the domain; an accelerated step outside it is replaced by the damped step,
        and a damped step outside it is shortened (halved) until it is inside.
    callback: ``callback(iteration, idx, residual)`` after each sweep (progress bars).
    """
    if not 0.0 < damping <= 1.0:
        raise ValueError(f"damping must be in (0, 1], got {damping}")
    if anderson < 0:
        raise ValueError(f"anderson (history depth) must be >= 0, got {anderson}")
    x = xp.array(x0, dtype=float, copy=True)
    if x.ndim != 2:
        raise ValueError(f"x0 must have shape (n_points, k), got {x.shape}")
    n, k = x.shape
    m = int(anderson)
    residual = xp.full(n, np.inf)
    best = xp.full(n, np.inf)
    iterations = xp.zeros(n, dtype=np.int64)
    status = xp.full(n, int(Status.MAXITER), dtype=np.int8)
    converged = xp.zeros(n, dtype=bool)
    if m:
        dX = xp.zeros((n, m, k))
        dG = xp.zeros((n, m, k))
        hist = xp.zeros(n, dtype=np.int64)  # number of valid columns
        prev_x = xp.zeros((n, k))
        prev_g = xp.zeros((n, k))
    active = xp.arange(n)

    for it in range(1, maxiter + 1):
        if active.size == 0:
            break
        xa = x[active]
        fa = xp.asarray(F(xa, active), dtype=float)
        iterations[active] = it
        finite = xp.all(xp.isfinite(fa), axis=1)
        if not bool(xp.all(finite)):
            bad = active[~finite]
            status[bad] = int(Status.NONFINITE)
            active, xa, fa = active[finite], xa[finite], fa[finite]
        ra = undamped_residual(xa, fa, xp)
        residual[active] = ra
        done = ra <= tol
        if bool(xp.any(done)):
            d = active[done]
            converged[d] = True
            status[d] = int(Status.OK)
            keep = ~done
            active, xa, fa, ra = active[keep], xa[keep], fa[keep], ra[keep]
        if callback is not None:
            callback(it, active, ra)
        if active.size == 0:
            break
        g = fa - xa
        step = xa + damping * g
        if m:
            h = hist[active]
            has = h > 0
            # push the newest differences (from the previous iterate) into the history
            if bool(xp.any(has)):
                ia = active[has]
                dX[ia] = xp.roll(dX[ia], 1, axis=1)
                dG[ia] = xp.roll(dG[ia], 1, axis=1)
                dX[ia, 0] = xa[has] - prev_x[ia]
                dG[ia, 0] = g[has] - prev_g[ia]
            hist[active] = xp.minimum(h + 1, m + 1)
            ncols = xp.minimum(hist[active] - 1, m)  # valid difference columns
            acc = ncols > 0
            if bool(xp.any(acc)):
                ia = active[acc]
                DX, DG = dX[ia], dG[ia]
                mask = (xp.arange(m)[None, :] < ncols[acc][:, None]).astype(float)
                DX = DX * mask[:, :, None]
                DG = DG * mask[:, :, None]
                A = xp.einsum("pik,pjk->pij", DG, DG)
                scale = xp.maximum(xp.einsum("pii->p", A), 1e-300)
                A = A + (regularization * scale)[:, None, None] * xp.eye(m)[None] \
                    + (1.0 - mask)[:, :, None] * xp.eye(m)[None]
                b = xp.einsum("pik,pk->pi", DG, g[acc])
                gamma = xp.linalg.solve(A, b[..., None])[..., 0] * mask
                cand = step[acc] - xp.einsum("pi,pik->pk", gamma, DX + damping * DG)
                ok = xp.all(xp.isfinite(cand), axis=1)
                if project is not None:
                    ok = ok & xp.asarray(project(cand, ia), dtype=bool)
                ok = ok & ~(ra[acc] > 10.0 * best[ia])
                sub = step[acc]
                sub[ok] = cand[ok]
                step[acc] = sub
                restart = ia[~ok]
                hist[restart] = 1
            prev_x[active] = xa
            prev_g[active] = g
        if project is not None:
            # a damped step may leave the domain too (the map's image can lie outside it):
            # shorten it toward the current iterate, which is inside
            out_ = ~xp.asarray(project(step, active), dtype=bool)
            shrink = damping
            for _ in range(40):
                if not bool(xp.any(out_)):
                    break
                shrink *= 0.5
                step[out_] = xa[out_] + shrink * g[out_]
                out_ = out_ & ~xp.asarray(project(step, active), dtype=bool)
        best[active] = xp.minimum(best[active], ra)
        x[active] = step

    return FixedPointResult(x=x, converged=converged, residual=residual, iterations=iterations,
                            status=status, names=tuple(names) if names else None, tol=tol)
