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

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["batched_roots", "physical_density", "support_intervals", "integrate_density",
           "angle_rule", "density_batch", "batched_real_roots", "batched_support",
           "integrate_density_batch", "DensityIntegrals"]


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


# ==========================================================================================
# Batched over a whole grid: density in closed form, support from companion eigenvalues,
# adaptive angle-rule quadrature driven by masks (one NumPy pass per refinement round).
# ==========================================================================================

_SQRT3 = float(np.sqrt(3.0))


def _cbrt(v: np.ndarray) -> np.ndarray:
    """Real cube root, as ``copysign(|v|^(1/3), v)`` (NumPy's vectorised ``pow`` is about 1.5×
    faster than ``np.cbrt`` here; the relative error, a few ulp, is removed by the Newton
    polish of the roots that use it)."""
    return np.copysign(np.abs(v) ** (1.0 / 3.0), v)


def _cubic_pair(b: np.ndarray, c: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""The complex-conjugate pair ``re ± i im`` (``im ≥ 0``; ``im = 0`` when all roots are real)
    of ``g³ + b g² + c g + d = 0``, real coefficients.

    Depressed form ``t³ + P t + Q`` (``g = t − b/3``), ``D = Q²/4 + P³/27``: for ``D > 0`` one real
    root ``u + v`` and the pair ``−(u + v)/2 ± i (√3/2)(u − v)``, ``u, v = ∛(−Q/2 ∓ sgn(Q)√D)``:
    ``u`` the cube root of larger modulus (no cancellation), ``v = −P/(3u)`` (``uv = −P/3``; one
    cube root per entry, the costly operation here), and
    ``|u − v| = 2√D / (u² + uv + v²)`` (``|u³ − v³| = 2√D``, no cancellation). Where ``D ≤ 0``
    ``im = 0`` and ``re`` is not used (it may be NaN).
    """
    b3 = b / 3
    P = c - b * b3
    Q = (2 * b3 * b3 - c) * b3 + d
    D = Q * Q / 4 + P * P * P / 27
    sq = np.sqrt(np.maximum(D, 0.0))
    u = _cbrt(np.copysign(sq, Q) + Q / 2)
    u = -u
    v = -P / (3 * u)
    im = np.where(D > 0, _SQRT3 * sq / (u * u + u * v + v * v), 0.0)
    return -(u + v) / 2 - b3, im


def _largest_real_root_depressed(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Largest real root of ``t³ + P t + Q`` (real coefficients): Cardano with the
    cancellation-free choice of cube root when one root is real, the trigonometric form when
    all three are (each evaluated only where it applies)."""
    D = Q * Q / 4 + P * P * P / 27
    one = D > 0
    out = np.empty_like(D)
    if one.any():
        Q1, P1 = Q[one], P[one]
        u = _cbrt(-Q1 / 2 - np.copysign(np.sqrt(D[one]), Q1))    # the larger cube root
        out[one] = np.where(u != 0, u - P1 / (3 * np.where(u != 0, u, 1.0)), 0.0)
    three = ~one
    if three.any():
        P3, Q3 = P[three], Q[three]
        rP = np.sqrt(np.maximum(-P3 / 3, 0.0))
        cosarg = np.clip(np.where(rP > 0, -Q3 / (2 * np.where(rP > 0, rP, 1.0) ** 3), 0.0), -1, 1)
        out[three] = 2 * rP * np.cos(np.arccos(cosarg) / 3)
    return out


def _quartic_pairs(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""The two root pairs of ``g⁴ + a g³ + b g² + c g + d = 0`` (real coefficients, Ferrari) as
    ``(re₁, im₁, re₂, im₂)``: each quadratic factor's roots are ``re ± i im`` when complex
    (``im = 0`` for a real pair; its real roots are not needed).

    Depressed ``y⁴ + p y² + q y + r`` (``g = y − a/4``); ``m ≥ 0`` the largest real root of the
    resolvent ``m³ + p m² + (p²/4 − r) m − q²/8``; with ``s = √(2m)`` the quartic factors into
    ``y² ∓ s y + p/2 + m ± q/(2s)``: centres ``± s/2``, ``im = √((p + m ± q/s)/2)`` when positive.
    """
    a2 = a * a
    p = b - 3 * a2 / 8
    q = c - a * b / 2 + a2 * a / 8
    r = d - a * c / 4 + a2 * b / 16 - 3 * a2 * a2 / 256
    P = -p * p / 12 - r
    Q = -p * p * p / 108 + p * r / 3 - q * q / 8
    m = np.maximum(_largest_real_root_depressed(P, Q) - p / 3, 0.0)
    # one Newton step on the resolvent f(m) = m³ + p m² + k m − q²/8 (k = p²/4 − r): near a
    # biquadratic (q → 0, complex ±√r) its largest real root is m ≈ q²/(8k), tiny beside p²
    # and lost to cancellation in Cardano; f is nearly linear there and one step restores it
    # (elsewhere the step is a harmless polish, kept only where it stays finite and ≥ 0)
    k = p * p / 4 - r
    fm = ((m + p) * m + k) * m - q * q / 8
    dfm = (3 * m + 2 * p) * m + k
    m1 = m - fm / dfm
    m = np.where(np.isfinite(m1) & (m1 >= 0) & (dfm > 0), m1, m)
    s = np.sqrt(2 * m)
    qs = q / s
    im1 = np.sqrt(np.maximum((p + m + qs) / 2, 0.0))
    im2 = np.sqrt(np.maximum((p + m - qs) / 2, 0.0))
    return s / 2 - a / 4, im1, -s / 2 - a / 4, im2


def _newton_step(c: list[np.ndarray], gr: np.ndarray, gi: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``P(g)/P'(g)`` as ``(real, imag)`` for real coefficient columns ``c`` (lowest degree first)
    at ``g = gr + i gi``, in real arithmetic (Horner for ``P`` and ``P'`` together)."""
    n = len(c) - 1
    pr, pi = c[n] * gr + c[n - 1], c[n] * gi
    dr, di = c[n], 0.0
    for k in range(n - 2, -1, -1):
        dr, di = dr * gr - di * gi + pr, dr * gi + di * gr + pi
        pr, pi = pr * gr - pi * gi + c[k], pr * gi + pi * gr
    den = dr * dr + di * di
    return (pr * dr + pi * di) / den, (pi * dr - pr * di) / den


def _polished_im(c: list[np.ndarray], re: np.ndarray, im: np.ndarray, *, move: float = 1e-7
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One Newton step from ``g = re + i im`` (``im > 0``; ``im = 0`` means a real pair, kept at 0).
    Returns ``(|Im g|, ok)``: ``ok`` when the step moved ``g`` by at most ``move·|g|``, i.e. the
    estimate was already a root to that accuracy and Newton, in its quadratic regime, leaves
    an error of order ``move²`` relative."""
    cplx = im > 0
    sr, si = _newton_step(c, re, im)
    g1r, g1i = re - sr, im - si
    ok = (sr * sr + si * si) <= (move * move) * (g1r * g1r + g1i * g1i)
    return np.where(cplx, np.abs(g1i), 0.0), ok | ~cplx


def _pairs(mon: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The conjugate pairs ``(re, im)`` of a monic cubic/quartic, coefficients highest first
    after the leading 1 (``mon[..., 0]`` multiplies ``g^{n−1}``)."""
    if mon.shape[-1] == 3:
        return [_cubic_pair(mon[..., 0], mon[..., 1], mon[..., 2])]
    r1, i1, r2, i2 = _quartic_pairs(mon[..., 0], mon[..., 1], mon[..., 2], mon[..., 3])
    return [(r1, i1), (r2, i2)]


def _density_from_pairs(c: list[np.ndarray], pairs: list[tuple[np.ndarray, np.ndarray]],
                        reverse: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(max |Im g|, ok)`` over the candidate pairs (in ``w = 1/g`` when ``reverse``), polished."""
    if len(pairs) == 2:
        (r1, i1), (r2, i2) = pairs
        if not np.any((i1 > 0) & (i2 > 0)):
            # at most one complex pair per entry (the common case of a quartic with two real
            # roots): polish that one only; a real pair contributes 0 and passes
            one = i1 > 0
            pairs = [(np.where(one, r1, r2), np.where(one, i1, i2))]
    mu = np.zeros(c[0].shape)
    ok = np.ones(c[0].shape, dtype=bool)
    for re, im in pairs:
        if reverse:
            d = re * re + im * im
            re, im = np.where(im > 0, re / d, 0.0), np.where(im > 0, im / d, 0.0)
        m, o = _polished_im(c, re, im)
        mu = np.maximum(mu, m)
        ok &= o
    return mu, ok


def _root_k(v: np.ndarray, k: int) -> np.ndarray:
    """``|v|^{1/k}`` for k = 1…4 without ``pow``."""
    a = np.abs(v)
    return a if k == 1 else np.sqrt(a) if k == 2 else np.cbrt(a) if k == 3 else np.sqrt(np.sqrt(a))


def _closed_form_density(cols: Sequence[np.ndarray], spread: float = 1e3, rtol: float = 1e-12
                         ) -> np.ndarray:
    r"""``max |Im g| / π`` for a cubic or quartic with real coefficient columns ``cols``
    (``n + 1`` flat arrays of one length, lowest degree first), without eigenvalues.

    The pair formulas (Cardano, Ferrari) are accurate for roots whose size is not far below
    the largest root of the polynomial they solve. With the bounds
    ``R_max ≤ 2 max_k |c_{n−k}/c_n|^{1/k}`` and ``R_min ≥ 1/(2 max_k |c_k/c_0|^{1/k})``:

    * ``R_max/R_min ≤ spread``: the formulas for the polynomial made monic by its leading
      coefficient, each complex root polished by one Newton step (kept when the step is
      ``≤ 1e-7 |g|``);
    * otherwise, or when that check fails, the same for the polynomial and for its reverse
      (roots ``w = 1/g``), which cover roots far smaller and far larger than the physical one;
      kept where both pass and agree to ``rtol · max(1, |Im g|)``.

    Entries that pass neither are NaN (the caller falls back to eigenvalues).
    """
    n = len(cols) - 1
    inv = 1.0 / cols[n]
    mon = [cols[n - j] * inv for j in range(1, n + 1)]            # g^{n-1}, …, g^0
    # R_max/R_min ≤ 4 max_j |mon_j|^{1/j} · max_k |rev_k|^{1/k}; screened first by the cheap
    # (max_k |c_k|)² / (|c_0| |c_n|) (≥ the spread's order for one very large or very small root)
    cmax = np.abs(cols[0])
    for v in cols[1:]:
        cmax = np.maximum(cmax, np.abs(v))
    easy = cmax * cmax <= spread * np.abs(cols[0] * cols[n])
    if not easy.all():
        idx = np.flatnonzero(~easy)
        rev_i = [cols[j][idx] / cols[0][idx] for j in range(1, n + 1)]
        rmax = 2 * np.maximum.reduce([_root_k(mon[j - 1][idx], j) for j in range(1, n + 1)])
        rinv = 2 * np.maximum.reduce([_root_k(rev_i[j - 1], j) for j in range(1, n + 1)])
        easy[idx] = rmax * rinv <= spread

    def pairs(m: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        if n == 3:
            return [_cubic_pair(*m)]
        r1, i1, r2, i2 = _quartic_pairs(*m)
        return [(r1, i1), (r2, i2)]

    # the forward formulas everywhere (no masked copies of the columns for the common case);
    # kept where the screen says easy and the Newton check passes
    mf_all, of_all = _density_from_pairs(cols, pairs(mon), False)
    good = easy & of_all
    mu = np.where(good, mf_all, np.nan)
    if not good.all():
        hard = np.flatnonzero(~good)
        ch = [v[hard] for v in cols]
        rev = [ch[j] / ch[0] for j in range(1, n + 1)]              # w^{n-1}, …, w^0
        mf, of = mf_all[hard], of_all[hard]
        mr, orr = _density_from_pairs(ch, pairs(rev), True)
        agree = of & orr & (np.abs(mf - mr) <= rtol * np.maximum(1.0, np.maximum(mf, mr)))
        mu[hard] = np.where(agree, 0.5 * (mf + mr), np.nan)
    return mu / np.pi


def density_batch(coeffs: Any) -> np.ndarray:
    r"""``μ(x) = max_roots |Im g| / π`` for real coefficients ``(..., n+1)`` (lowest degree first),
    any batch shape, or a list of the ``n + 1`` coefficient arrays (broadcast together). Degrees 3 and 4 in closed form (real arithmetic, no root finding; see
    :func:`_closed_form_density`), others by companion
    eigenvalues. Entries where the closed form is not finite (vanishing leading coefficient,
    overflow) fall back to the eigenvalues; where those fail too the value is NaN.
    """
    if isinstance(coeffs, (list, tuple)):
        # coefficient columns (broadcast to one shape): no (..., n+1) array is built unless
        # some entries need the eigenvalue fallback
        cols = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in coeffs))
        shape = cols[0].shape
        flat = [np.ascontiguousarray(v).reshape(-1) for v in cols]
        c = None
    else:
        c = np.asarray(coeffs, dtype=float)
        shape = c.shape[:-1]
        flat = [np.ascontiguousarray(c[..., j]).reshape(-1) for j in range(c.shape[-1])]
    n = len(flat) - 1
    with np.errstate(all="ignore"):
        if n in (3, 4):
            mu = _closed_form_density(flat).reshape(shape)
        else:
            mu = np.full(shape, np.nan)
    bad = ~np.isfinite(mu)
    if bad.any():
        cb = (np.stack([v[bad.reshape(-1)] for v in flat], axis=-1) if c is None else c[bad])
        ok = np.all(np.isfinite(cb), axis=-1) & (cb[..., -1] != 0)
        fb = np.full(cb.shape[0], np.nan)
        if ok.any():
            r = batched_complex_roots(cb[ok])          # real companions, failures are NaN rows
            fb[ok] = np.max(np.where(np.isnan(r.imag), 0.0, np.abs(r.imag)), axis=-1) / np.pi
            fb[ok] = np.where(np.all(np.isnan(r), axis=-1), np.nan, fb[ok])
        mu[bad] = fb
    return mu


def batched_real_roots(coeffs: Any, *, tol_imag: float = 1e-7) -> np.ndarray:
    """Real roots of ``Σ_k c_k x^k`` per row of ``coeffs`` ``(P, n+1)`` (lowest degree first),
    sorted ascending and padded with NaN to ``(P, n)``, as ``np.roots`` would give them: exact
    zero leading coefficients are dropped (lower degree), exact zero trailing coefficients are
    exact zero roots, a root is real when ``|Im| ≤ tol_imag · max(1, max |root|)``.

    Rows are grouped by their effective degree and solved together (companion eigenvalues);
    rows with non-finite coefficients, or whose eigenvalue solve fails, are all NaN.
    """
    c = np.asarray(coeffs, dtype=float)
    P, n1 = c.shape
    if n1 >= 5 and not np.any(c[:, 1::2]):
        # even in x for every row (e.g. the rectangular edge polynomial, degree 5 in x²): solve
        # for u = x² (a companion of half the size), then x = ±√u
        u = batched_complex_roots(c[:, ::2])
        sq = np.sqrt(u.astype(complex))
        out = _real_sorted(np.concatenate([sq, -sq], axis=1), tol_imag, n1 - 1)
        # a small root u = x² carries the absolute error of the largest one: polish x by Newton
        # on the polynomial in x (two steps, kept where finite and shorter than 1e-3 |x|)
        with np.errstate(all="ignore"):
            x = out
            for _ in range(2):
                p = np.zeros_like(x)
                dp = np.zeros_like(x)
                for k in range(n1 - 1, -1, -1):
                    dp = dp * x + p
                    p = p * x + c[:, k:k + 1]
                step = p / dp
                good = np.isfinite(step) & (np.abs(step) <= 1e-3 * np.abs(x))
                x = np.where(good, x - step, x)
        return np.sort(x, axis=1)
    return _real_sorted(batched_complex_roots(c), tol_imag, n1 - 1)


def _real_sorted(roots: np.ndarray, tol_imag: float, width: int) -> np.ndarray:
    """Real parts of the roots with ``|Im| ≤ tol_imag · max(1, max |root|)`` per row, sorted,
    NaN-padded to ``width`` columns (non-finite rows: all NaN)."""
    P = roots.shape[0]
    out = np.full((P, width), np.nan)
    with np.errstate(invalid="ignore"):
        scale = np.maximum(1.0, np.max(np.abs(np.nan_to_num(roots, nan=0.0)), axis=1, initial=0.0))
        real = np.abs(roots.imag) <= tol_imag * scale[:, None]
    vals = np.where(real, roots.real, np.nan)
    vals.sort(axis=1)
    k = min(width, vals.shape[1])
    out[:, :k] = vals[:, :k]
    return out


def batched_complex_roots(c: np.ndarray) -> np.ndarray:
    """All roots per row of real ``c`` ``(P, n+1)`` (lowest degree first) as ``np.roots`` gives
    them, padded with NaN to ``(P, n)``: exact zero leading coefficients lower the degree, exact
    zero trailing coefficients are exact zero roots. Rows are grouped by effective degree and
    solved together (real companion eigenvalues); rows with non-finite coefficients, or whose
    solve fails (LinAlgError), are NaN."""
    P, n1 = c.shape
    out = np.full((P, n1 - 1), np.nan, dtype=complex)
    finite = np.all(np.isfinite(c), axis=1)
    nz = c != 0
    hi = np.where(nz.any(axis=1), n1 - 1 - np.argmax(nz[:, ::-1], axis=1), -1)   # degree
    lo = np.where(nz.any(axis=1), np.argmax(nz, axis=1), 0)                      # zero roots
    groups = np.unique(np.stack([hi[finite], lo[finite]], axis=1), axis=0)   # (degree, zero roots)
    for h, l in ((int(g[0]), int(g[1])) for g in groups):
        rows = np.flatnonzero(finite & (hi == h) & (lo == l))
        deg = h - l
        if h < 1:
            continue
        roots = np.zeros((rows.size, h), dtype=complex)
        if deg >= 1:
            cc = c[rows, l:h + 1]
            mon = cc[:, :-1] / cc[:, -1:]
            comp = np.zeros((rows.size, deg, deg))
            comp[:, 1:, :-1] = np.eye(deg - 1)
            comp[:, :, -1] = -mon
            try:
                with np.errstate(all="ignore"):
                    roots[:, :deg] = np.linalg.eigvals(comp)
            except np.linalg.LinAlgError:
                # solve row by row so one bad row does not take the others with it
                for j in range(rows.size):
                    try:
                        roots[j, :deg] = np.linalg.eigvals(comp[j])
                    except np.linalg.LinAlgError:
                        roots[j] = np.nan
        out[rows, :h] = roots
    return out


def batched_support(edge_coeffs: Any, density: Callable[[np.ndarray, np.ndarray], np.ndarray], *,
                    lo: float | None = 0.0, tol_imag: float = 1e-7, min_density: float = 1e-10,
                    rel_density: float = 1e-12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bulks of the density at every grid point at once (the batched :func:`support_intervals`).

    ``edge_coeffs`` ``(P, ne)``: the edge polynomial per point (lowest degree first);
    ``density(x, rows)``: ``μ`` at ``x`` of shape ``(len(rows), M)`` for the points ``rows``.
    Candidate edges are ``lo`` (unless None) and the real roots above it; consecutive distinct
    candidates bound a bulk where ``μ`` at the midpoint exceeds ``min_density`` and
    ``rel_density`` times the largest midpoint density of that point.

    Returns ``(a, b, valid)`` of shape ``(P, M)``: the bulks ``[a, b]`` where ``valid``, sorted
    per point. A point whose edge polynomial could not be solved has no valid bulk.
    """
    roots = batched_real_roots(edge_coeffs, tol_imag=tol_imag)
    P = roots.shape[0]
    if lo is not None:
        roots = np.where(roots > lo, roots, np.nan)
        cand = np.concatenate([np.full((P, 1), float(lo)), roots], axis=1)
    else:
        cand = roots
    cand = np.sort(cand, axis=1)                       # NaN last
    a, b = cand[:, :-1], cand[:, 1:]
    valid = np.isfinite(a) & np.isfinite(b) & (b > a)
    mids = np.where(valid, (a + b) / 2, 0.0)
    rows = np.flatnonzero(valid.any(axis=1))
    if rows.size:
        dens = np.asarray(density(mids[rows], rows), dtype=float)
        # relative floor too: in a gap next to a tall bulk the computed density is rounding
        # noise of the bulk's scale (e.g. 6e-11 beside a bulk of height 4e4 at Δ_eff = 1e-10)
        top = np.max(np.where(valid[rows], np.nan_to_num(dens), 0.0), axis=1, initial=0.0)
        ok = np.zeros_like(valid)
        ok[rows] = valid[rows] & (dens > np.maximum(min_density, rel_density * top)[:, None])
        valid = ok
    return a, b, valid


@dataclass
class DensityIntegrals:
    """Batched :func:`integrate_density_batch` result, one row per grid point.

    ``values`` ``(P, J)``: the integrals; ``error`` ``(P,)``: the sum over accepted pieces of
    ``max_j |Q_2n − Q_n|`` (an upper estimate of the error of the reported ``Q_2n``);
    ``pieces``: pieces used; ``ok``: every value is finite; ``met``: every piece also met the
    tolerance within the budget (where it did not, ``error`` says how far off it may be).
    """

    values: np.ndarray
    error: np.ndarray
    pieces: np.ndarray
    ok: np.ndarray
    met: np.ndarray


def integrate_density_batch(coeff_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
                            a: np.ndarray, b: np.ndarray, valid: np.ndarray,
                            integrand: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
                            n_int: int, n: int = 32, *, tol: float = 1e-11, max_pieces: int = 256,
                            zero_floor: float = 1e-5, adaptive: bool = True,
                            weights: np.ndarray | None = None, weighted_tol: float = 0.0
                            ) -> DensityIntegrals:
    """``∫ f_j(μ(x), x) dx`` over the bulks of every grid point at once (batched
    :func:`integrate_density`, same rule, same refinement criterion).

    ``coeff_fn(x, rows)``: polynomial coefficients ``(*x.shape, deg+1)`` at real ``x`` of shape
    ``(len(rows), K)`` for the grid points ``rows``; ``integrand(mu, x, rows)`` returns
    ``(*x.shape, n_int)``. Each piece gets the ``n``- and ``2n``-node angle rules in one pass;
    pieces whose estimates differ by more than ``tol`` (any integrand) are halved, all points
    together, until they agree or the point has used ``max_pieces``. The origin floor is as in
    :func:`integrate_density`. ``adaptive=False``: the ``n``-node rule once per bulk, no error
    estimate (``error`` is NaN, ``ok`` only says the values are finite) — a cheap map for
    the first stage of :func:`numerics.state_evolution.solve_two_stage`.

    ``weights`` ``(P, n_int)`` (optional): the sensitivities ``|∂y/∂I_j|`` of the quantity
    ``y`` the integrals are for (e.g. an mmse ``Δ − cΔ²∫μ³``: ``cΔ²``). A piece is then also
    accepted when ``max_j w_j |Q_2n − Q_n| ≤ weighted_tol``, i.e. its contribution to the
    error of ``y`` is below ``weighted_tol``: the error bound on ``y`` is
    ``max(weighted_tol, w · tol)`` per piece instead of ``w · tol``, and a point whose
    integrals enter ``y`` with a small weight (a tall, narrow density at small noise) is not
    refined to an absolute accuracy that ``y`` does not need.
    """
    P, M = a.shape
    if weights is not None:
        weights = np.broadcast_to(np.asarray(weights, dtype=float), (P, n_int))
    t1, w1 = angle_rule(n)
    t2, w2 = angle_rule(2 * n)
    tt = np.concatenate([t1, t2]) if adaptive else t1
    values = np.zeros((P, n_int))
    error = np.zeros(P)
    used = np.zeros(P, dtype=np.int64)
    ok = np.ones(P, dtype=bool)
    met = np.ones(P, dtype=bool)
    # reach of the support contiguous with the origin, per point (columns sorted)
    reach = np.zeros(P)
    for j in range(M):
        aj, bj, vj = a[:, j], b[:, j], valid[:, j]
        grow = vj & (aj <= reach * (1 + 1e-12)) & ((reach > 0) | (aj == 0))
        reach = np.where(grow, np.maximum(reach, bj), reach)
    owner, col = np.nonzero(valid)
    pa, pb = a[owner, col], b[owner, col]
    pfloor = np.where((reach[owner] > 0) & (pa < reach[owner]), zero_floor * reach[owner], -np.inf)
    np.add.at(used, owner, 1)
    while owner.size:
        x = pa[:, None] + (pb - pa)[:, None] * tt[None, :]
        x = np.maximum(x, pfloor[:, None])
        with np.errstate(all="ignore"):
            mu = density_batch(coeff_fn(x, owner))
            f = np.asarray(integrand(mu, x, owner), dtype=float)          # (Q, 3n, J)
            h = (pb - pa)[:, None]
            q_lo = h * np.einsum("k,qkj->qj", w1, f[:, :n])
            if adaptive:
                q_hi = h * np.einsum("k,qkj->qj", w2, f[:, n:])
                diff = np.max(np.abs(q_hi - q_lo), axis=1)
            else:
                q_hi, diff = q_lo, np.zeros(q_lo.shape[0])
        fin = np.all(np.isfinite(q_hi), axis=1) & np.isfinite(diff)
        budget = used[owner] >= max_pieces
        met_p = diff <= tol
        if weights is not None and adaptive:
            with np.errstate(all="ignore"):
                wdiff = np.max(weights[owner] * np.abs(q_hi - q_lo), axis=1)
            met_p |= wdiff <= weighted_tol
        accept = met_p | budget | ~fin
        if accept.any():
            oa = owner[accept]
            np.add.at(values, oa, np.where(fin[accept, None], q_hi[accept], np.nan))
            np.add.at(error, oa, np.where(fin[accept], diff[accept], np.inf))
            ok[oa[~fin[accept]]] = False
            met[oa[(~fin[accept]) | ~met_p[accept]]] = False
        split = ~accept
        if not split.any():
            break
        o, sa, sb, sf = owner[split], pa[split], pb[split], pfloor[split]
        mid = 0.5 * (sa + sb)
        np.add.at(used, o, 1)
        owner = np.concatenate([o, o])
        pa, pb = np.concatenate([sa, mid]), np.concatenate([mid, sb])
        pfloor = np.concatenate([sf, sf])
    ok &= np.all(np.isfinite(values), axis=1)
    met &= ok
    if not adaptive:
        error[:] = np.nan
    return DensityIntegrals(values=values, error=error, pieces=used, ok=ok, met=met)
