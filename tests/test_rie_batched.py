"""numerics.rie, batched half: closed-form density, batched edges, mask-driven quadrature.

References from outside the code under test: the semicircle law (∫μ³ = 3/(π²R²) in closed
form, the edges ±R), LAPACK eigenvalues (``np.linalg.eigvals``/``np.roots``) for the roots.
"""
from __future__ import annotations

import numpy as np
import pytest

from numerics.rie import (batched_real_roots, batched_support, density_batch,
                          integrate_density_batch, physical_density)


def _semicircle_times(x: np.ndarray, R: np.ndarray, extra: list[float]) -> np.ndarray:
    """Coefficients (lowest first) of (R²/4 g² − x g + 1)·Π(g − e): the semicircle of radius R
    (Stieltjes transform g = (2/R²)(x − √(x² − R²))) times spurious real roots ``extra``."""
    x, R = np.broadcast_arrays(np.asarray(x, float), np.asarray(R, float))
    p = np.stack([np.ones_like(x), -x, R**2 / 4], axis=-1)
    for e in extra:
        q = np.zeros(p.shape[:-1] + (p.shape[-1] + 1,))
        q[..., 1:] += p
        q[..., :-1] -= e * p
        p = q
    return p


@pytest.mark.parametrize("extra", [[3.0], [3.0, -5.0], [1e4], [1e4, -2e-4]])
def test_density_closed_form_vs_semicircle(extra):
    x = np.linspace(-2.5, 2.5, 1001)
    R = 2.0
    mu = density_batch(_semicircle_times(x, R, extra))
    exact = np.where(np.abs(x) < R, 2 / (np.pi * R**2) * np.sqrt(np.clip(R**2 - x**2, 0, None)), 0.0)
    assert np.max(np.abs(mu - exact)) < 1e-7          # sqrt edges: conditioning √eps near ±R
    inner = np.abs(x) < 1.9
    assert np.max(np.abs(mu - exact)[inner]) < 1e-12


def test_density_closed_form_vs_eigenvalues():
    """Random real cubics and quartics, including badly scaled ones: the closed form (with its
    fallback) equals max |Im| of LAPACK's eigenvalues to 1e-10 relative (measured 1e-13)."""
    rng = np.random.default_rng(0)
    for deg in (3, 4):
        c = rng.standard_normal((20000, deg + 1)) * 10.0 ** rng.uniform(-6, 3, (20000, deg + 1))
        mu = density_batch(c)
        ref = physical_density(c)
        ok = np.isfinite(ref)
        rel = np.abs(mu[ok] - ref[ok]) / np.maximum(ref[ok], 1e-3)
        assert np.quantile(rel, 0.999) < 1e-10
        assert np.all(np.isfinite(mu[ok]))


def test_batched_real_roots_vs_np_roots():
    rng = np.random.default_rng(1)
    c = rng.standard_normal((200, 7))
    c[:20, -1] = 0.0          # lower degree
    c[20:30, 0] = 0.0         # a zero root
    got = batched_real_roots(c)
    for i in range(c.shape[0]):
        r = np.roots(np.trim_zeros(c[i], "b")[::-1])
        scale = max(1.0, float(np.max(np.abs(r))))
        want = np.sort(r.real[np.abs(r.imag) <= 1e-7 * scale])
        g = got[i][np.isfinite(got[i])]
        assert g.shape == want.shape
        assert np.allclose(g, want, atol=1e-9 * scale)
    bad = c.copy()
    bad[0, 2] = np.nan
    assert np.all(np.isnan(batched_real_roots(bad)[0]))


def test_quadrature_semicircle_exact():
    """∫μ³ over the support of semicircles of several radii, all at once: 3/(π²R²)."""
    R = np.array([0.5, 1.0, 2.0, 7.0])
    extra = [3.0, -40.0]

    def coeffs(xs, rows):
        return _semicircle_times(xs, R[rows][:, None], extra)

    edges = np.stack([-R**2, np.zeros_like(R), np.ones_like(R)], -1)  # x² − R²: edges ±R
    a, b, valid = batched_support(edges, lambda xs, rows: density_batch(coeffs(xs, rows)), lo=None)
    assert np.all(valid.sum(axis=1) == 1)
    res = integrate_density_batch(coeffs, a, b, valid, lambda mu, xs, rows: np.stack([mu**3, mu], -1), 2)
    assert res.ok.all() and res.met.all()
    assert res.values[:, 0] == pytest.approx(3 / (np.pi**2 * R**2), rel=1e-12)
    assert res.values[:, 1] == pytest.approx(1.0, abs=1e-12)       # unit mass
    assert np.all(res.error < 1e-10)


def test_weighted_acceptance_bounds_the_weighted_error():
    """``weights``: a piece is also accepted once ``w·|Q_2n − Q_n|`` is below ``weighted_tol``.
    Two bulks of very different shape (a semicircle with a spurious near root that makes the
    8-node rule poor): with a small weight the refinement stops earlier, and the weighted error
    against the closed form 3/(π²R²) stays below the weighted tolerance; with weight 1 and the
    absolute criterion the result is the unweighted one."""
    R = np.array([1.0, 2.0])
    extra = [1.05, -40.0]

    def coeffs(xs, rows):
        return _semicircle_times(xs, R[rows][:, None], extra)

    edges = np.stack([-R**2, np.zeros_like(R), np.ones_like(R)], -1)
    a, b, valid = batched_support(edges, lambda xs, rows: density_batch(coeffs(xs, rows)), lo=None)
    f = lambda mu, xs, rows: (mu**3)[..., None]           # noqa: E731
    exact = 3 / (np.pi**2 * R**2)
    plain = integrate_density_batch(coeffs, a, b, valid, f, 1, 8, tol=1e-13)
    w = np.full((2, 1), 1e-4)
    loose = integrate_density_batch(coeffs, a, b, valid, f, 1, 8, tol=1e-13, weights=w, weighted_tol=1e-12)
    assert plain.met.all() and loose.met.all()
    assert np.all(loose.pieces <= plain.pieces) and loose.pieces.sum() < plain.pieces.sum()
    assert np.all(w[:, 0] * np.abs(loose.values[:, 0] - exact) <= 1e-12)
    assert plain.values[:, 0] == pytest.approx(exact, abs=1e-12)


def test_quartic_closed_form_near_biquadratic():
    """Quartics with roots ±r and ≈ ±i s (a biquadratic up to tiny odd coefficients, as the
    rectangular RIE quartic near x = 0): the closed form (Ferrari, resolvent root polished)
    gives max |Im| without the eigenvalue fallback and equals LAPACK's to 1e-9 relative."""
    from numerics.rie import _closed_form_density

    rng = np.random.default_rng(3)
    n = 2000
    r, s = rng.uniform(0.2, 3.0, n), rng.uniform(0.1, 2.0, n)
    eps = 10.0 ** rng.uniform(-8, -5, n)
    # (g² − r²)(g² + s²) + eps·(g³ − g): tiny odd part
    c = np.stack([-(r**2) * s**2, -eps, s**2 - r**2, eps, np.ones(n)], -1) * rng.uniform(1e-9, 1.0, (n, 1))
    with np.errstate(all="ignore"):
        mu = _closed_form_density([c[:, j].copy() for j in range(5)])
    ref = physical_density(c)
    assert np.mean(np.isfinite(mu)) > 0.99
    ok = np.isfinite(mu)
    assert np.max(np.abs(mu[ok] - ref[ok]) / ref[ok]) < 1e-9
