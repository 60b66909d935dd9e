"""Batched state evolution over a whole grid: a cheap pass, then the accurate map.

A scalar (or low-dimensional) state evolution ``x = F(x)`` whose map is itself a numerical
approximation with a tunable accuracy (here: the adaptive density quadrature of
:mod:`numerics.rie`) is solved in two stages with :func:`numerics.fixed_point.solve_fixed_point`:

1. ``F_coarse`` (a cheap rule, loose tolerance) from ``x0`` to the residual ``coarse_tol``;
2. ``F`` (the accurate map) from there to ``tol``.

Convergence is decided only in stage 2, on the undamped residual of the accurate map, so
the result is the accurate map's fixed point; stage 1 only moves the start close to it (the
accurate map is then evaluated a few times instead of tens). Rows that stage 1 could not
bring to a finite state restart stage 2 from ``x0``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .fixed_point import FixedPointResult, solve_fixed_point

__all__ = ["solve_two_stage"]


def solve_two_stage(F: Callable[[np.ndarray, np.ndarray], np.ndarray],
                    F_coarse: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
                    x0: np.ndarray, *, tol: float, coarse_tol: float = 1e-7,
                    maxiter: int = 3000, coarse_maxiter: int | None = None,
                    damping: float = 0.5, anderson: int = 3,
                    project: Callable[[Any, Any], Any] | None = None) -> FixedPointResult:
    """Fixed points of ``F`` (``F(x, idx)`` batched as in :func:`solve_fixed_point`) from ``x0``
    ``(n, k)``, started by iterating ``F_coarse`` (skipped when None) to ``coarse_tol``.

    ``iterations`` counts evaluations of both maps; ``status``/``converged``/``residual`` are
    those of the accurate stage (``maxiter`` bounds each stage, per point)."""
    x0 = np.asarray(x0, dtype=float)
    it0 = np.zeros(x0.shape[0], dtype=np.int64)
    start = x0
    if F_coarse is not None:
        r1 = solve_fixed_point(F_coarse, x0, damping=damping, anderson=anderson, tol=coarse_tol,
                               maxiter=coarse_maxiter or maxiter, project=project)
        good = np.all(np.isfinite(r1.x), axis=1)
        start = np.where(good[:, None], r1.x, x0)
        it0 = np.asarray(r1.iterations, dtype=np.int64)
    r2 = solve_fixed_point(F, start, damping=damping, anderson=anderson, tol=tol,
                           maxiter=maxiter, project=project)
    r2.iterations = np.asarray(r2.iterations, dtype=np.int64) + it0
    return r2
