"""Spectral densities from polynomial Stieltjes-transform equations, and their integrals.

Rotationally-invariant denoising (RIE) of a matrix ``Y = S + noise`` needs functionals of
the (symmetrised singular-value or eigenvalue) density ``μ_Y`` whose Stieltjes transform
``g(z) = ∫ μ(x) dx / (z − x)`` solves a polynomial equation ``P(g; z) = 0``. This module is
the numeric half: given the polynomial's coefficients as a function of ``z`` (generated
elsewhere from SymPy) it

* solves ``P(·; x)`` for all roots at once over a batch of real ``x`` (companion matrices),
* selects the physical branch (the root with the largest ``|Im g|``; ``μ = |Im g|/π``),
* locates the support from the real roots of the discriminant polynomial (the edges),
* integrates ``f(μ(x), x)`` over each bulk with Gauss–Legendre nodes in the angle
  ``x = a + (b − a)(1 − cos θ)/2`` (square-root edges become smooth in ``θ``).

No SymPy here; coefficient functions are plain callables over arrays.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["batched_roots", "physical_density", "support_intervals", "integrate_density",
           "angle_rule"]


def batched_roots(coeffs: Any) -> np.ndarray:
    """All complex roots of ``Σ_k c_k g^k`` for a batch: ``coeffs`` ``(..., n+1)`` lowest
    degree first, leading coefficient nonzero. Returns ``(..., n)`` complex."""
    c = np.asarray(coeffs, dtype=complex)
    n = c.shape[-1] - 1
    if n < 1:
        raise ValueError("need a polynomial of degree >= 1")
    lead = c[..., -1:]
    if np.any(lead == 0):
        raise ZeroDivisionError("leading coefficient vanishes at some points")
    mon = c[..., :-1] / lead
    comp = np.zeros(c.shape[:-1] + (n, n), dtype=complex)
    comp[..., 1:, :-1] = np.eye(n - 1)
    comp[..., :, -1] = -mon
    return np.linalg.eigvals(comp)


def physical_density(coeffs: Any) -> np.ndarray:
    """``μ(x) = max_roots |Im g| / π`` from the coefficients at real ``x`` (shape ``(..., n+1)``)."""
    r = batched_roots(coeffs)
    return np.max(np.abs(r.imag), axis=-1) / np.pi


@lru_cache(maxsize=16)
def angle_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``t ∈ (0, 1)`` and weights for ``∫_0^1 f(t) dt`` after ``t = (1 − cos θ)/2``:
    Gauss–Legendre in ``θ ∈ (0, π)``, weights include ``dt/dθ = sin θ / 2``."""
    u, w = np.polynomial.legendre.leggauss(int(n))
    theta = (u + 1) * np.pi / 2
    t = (1 - np.cos(theta)) / 2
    return t, w * (np.pi / 2) * np.sin(theta) / 2


def support_intervals(disc_coeffs: Sequence[float], density: Callable[[np.ndarray], np.ndarray],
                      *, lo: float | None = 0.0, tol_imag: float = 1e-7, min_density: float = 1e-10
                      ) -> list[tuple[float, float]]:
    """Bulks of a density on ``[lo, ∞)`` (the whole line if ``lo`` is None) whose edges are
    real roots of the discriminant.

    ``disc_coeffs``: discriminant polynomial in ``x`` (lowest degree first); ``density``:
    ``μ`` at an array of points. Consecutive candidate edges (with ``lo``) bound a bulk
    where ``μ`` at the midpoint exceeds ``min_density``.
    """
    c = np.trim_zeros(np.asarray(disc_coeffs, dtype=float), "b")
    if c.size < 2:
        raise ValueError("degenerate discriminant polynomial")
    roots = np.roots(c[::-1])
    scale = max(1.0, float(np.max(np.abs(roots)))) if roots.size else 1.0
    real = np.sort(roots.real[np.abs(roots.imag) <= tol_imag * scale])
    cand = np.unique(real if lo is None else np.concatenate([[lo], real[real > lo]]))
    if cand.size < 2:
        return []
    mids = (cand[:-1] + cand[1:]) / 2
    dens = density(mids)
    out: list[tuple[float, float]] = []
    for a, b, d in zip(cand[:-1], cand[1:], dens):
        if d > min_density:
            # touching pieces are kept apart: a discriminant root inside a bulk is a point
            # where the density is not smooth (a cusp), so it must be a node of the rule
            out.append((float(a), float(b)))
    return out


def integrate_density(coeff_fn: Callable[[np.ndarray], np.ndarray],
                      intervals: Sequence[tuple[float, float]],
                      integrands: Sequence[Callable[[np.ndarray, np.ndarray], np.ndarray]],
                      n: int = 64, *, tol: float = 1e-11, max_pieces: int = 256,
                      zero_floor: float = 1e-5) -> np.ndarray:
    """``[∫ f_j(μ(x), x) dx over the bulks for f_j in integrands]``, adaptively.

    ``coeff_fn(x)`` returns the polynomial coefficients ``(len(x), deg+1)`` at real ``x``.
    Each piece is integrated with the ``n``- and ``2n``-node angle rules; a piece whose two
    estimates differ by more than ``tol`` (absolute, any integrand) is halved (near-cusps
    inside a bulk, where the density almost vanishes, need this). The ``2n`` estimate is kept.

    A support ``[0, b]`` contiguous with the origin (an even density, smooth at 0) is
    evaluated at ``max(x, zero_floor·b)``: the polynomial degenerates as ``x → 0`` and the branch choice
    becomes ill-conditioned there; the error is ``O((zero_floor·b)^3 μ'')``.
    """
    t1, w1 = angle_rule(n)
    t2, w2 = angle_rule(2 * n)
    out = np.zeros(len(integrands))
    iv = sorted((float(a), float(b)) for a, b in intervals if b > a)
    reach = 0.0  # right end of the support that is contiguous with the origin
    for a, b in iv:
        if a <= reach * (1 + 1e-12) and (reach > 0 or a == 0):
            reach = max(reach, b)
    floor = zero_floor * reach if reach > 0 else -np.inf
    pending = [(a, b, floor if a < reach else -np.inf) for a, b in iv]
    done = 0
    while pending:
        a, b, floor = pending.pop()
        x = np.concatenate([a + (b - a) * t1, a + (b - a) * t2])
        x = np.maximum(x, floor)
        mu = physical_density(coeff_fn(x))
        lo = np.array([(b - a) * float(np.dot(w1, f(mu[:n], x[:n]))) for f in integrands])
        hi = np.array([(b - a) * float(np.dot(w2, f(mu[n:], x[n:]))) for f in integrands])
        done += 1
        if np.max(np.abs(hi - lo)) <= tol or done + len(pending) >= max_pieces:
            out += hi
        else:
            mid = 0.5 * (a + b)
            pending += [(a, mid, floor), (mid, b, floor)]
    return out
