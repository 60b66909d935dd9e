"""sparse-token: generated kernels vs mpmath at 50 digits, derived forms vs their definitions,
bad input, and the reference values of the spec (checks 1, 2 and 4).

Reference values come from outside this code: the spec's tables (computed by the spec's
author with an independent script), Cover's theorem (alpha* = 2 without signal), and
integrals evaluated directly in mpmath.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy as sp

import derive
from derive.codegen.functions import LogAddExp
from derive.models import sparse_token as st
from derive.verify import verify

MODEL = derive.models.get("sparse-token")
BASE = dict(L=10, R=3, pi=0.2, theta=6.0, beta=1.0, eta_w=0.5, eta_q=0.5, alpha0=1.0, b1=0.0)


def solve(**kw):
    p = dict(BASE, loss=0)  # the old numeric loss code still works (now an option)
    p.update(kw)
    return derive.solve("sparse-token", **p)


def test_registered():
    assert "sparse-token" in derive.models.names()
    assert MODEL.name == "sparse-token"


@pytest.mark.parametrize("bad, match", [
    (dict(R=11), "'R'.*exceeds 'L'"),
    (dict(pi=1.0), "'pi'.*outside its valid range \\(0, 1\\)"),
    (dict(pi=0.0), "'pi'.*outside its valid range"),
    (dict(theta=-0.1), "'theta'.*outside its valid range \\[0, ∞\\)"),
    (dict(L=0), "'L'.*outside its valid range"),
    (dict(L=2.5), "'L'.*integers"),
    (dict(loss=2), "option 'loss' = 2 must be 'logistic' or 'square'"),
    (dict(loss="hinge"), "option 'loss' = 'hinge' must be one of"),
    (dict(quantity="test"), "option 'quantity' = 'test' .*must be one of"),
    (dict(alpha1=-1.0), "'alpha1'.*outside its valid range"),
    (dict(lam=0.0), "'lam'.*outside its valid range"),
    (dict(alpha0=np.nan), "'alpha0'.*NaN"),
])
def test_bad_input_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        solve(**bad)


def test_spec_alignment_table():
    """Spec §3.2 table (L=10, R=3, pi=0.2, theta=6, eta=0.5, beta=1, logistic)."""
    a0 = np.array([0.25, 0.5, 1, 2, 4, 8])
    ds = solve(alpha0=a0, b1=np.array([0.0, math.log(0.2 / 0.8)]))
    assert bool(ds.converged.all())
    ref = {
        ("s_q", 0): [.439, .609, .757, .861, .925, .961],
        ("cos_w", 0): [.495, .627, .751, .849, .916, .955],
        ("s_q", 1): [.863, .927, .963, .981, .990, .995],
        ("cos_w", 1): [.751, .849, .916, .955, .977, .988],
    }
    for (name, j), vals in ref.items():
        np.testing.assert_allclose(ds[name].values[:, j], vals, atol=6e-4)
    # |s_q| = 1 - C/alpha0 + o(1/alpha0) (Cor. 1): alpha0 (1 - s_q) tends to a constant
    c = a0 * (1 - ds.s_q.values[:, 0])
    assert abs(c[-1] - c[-2]) / c[-1] < 0.1


def test_spec_oracle_and_capacity_values():
    """Spec §2.2 / §3.4 check values."""
    ds = solve(L=10, R=1, pi=0.5, theta=5.0)
    assert float(ds.e_pool) == pytest.approx(0.2146, abs=1e-4)
    assert float(ds.alpha_pool) == pytest.approx(2.950, abs=1e-3)
    assert float(ds.alpha_vec) == pytest.approx(29.50, abs=1e-2)
    assert float(ds.m_pool) == pytest.approx(0.525, abs=1e-3)
    assert float(ds.b_pool) == pytest.approx(-0.415, abs=1e-3)
    # the max-detector bounds the attention oracle (spec MC: 0.0175 at the best finite tau)
    assert 0.0175 <= float(ds.e_attn_max) < 0.019
    ds = solve(L=10, R=3, pi=0.2, theta=6.0)
    assert float(ds.e_pool) == pytest.approx(0.0017, abs=1e-4)
    assert float(ds.alpha_pool) == pytest.approx(248.1, abs=0.1)
    for L, ref_pool in ((100, 0.440), (1000, 0.481)):
        ds = solve(L=L, R=1, pi=0.5, theta=3.0)
        assert float(ds.e_pool) == pytest.approx(ref_pool, abs=1e-3)


def test_cover_without_signal():
    """theta = 0: Cover's alpha* = 2 (pi = 1/2); alpha*_vec = L alpha*_pool."""
    # (L = 1 with theta = 0 leaves the query direction 0/0: that point is flagged, not converged)
    ds = solve(theta=0.0, pi=0.5, L=np.array([2.0, 7.0, 100.0]), R=1)
    np.testing.assert_allclose(ds.alpha_pool.values, 2.0, rtol=1e-12)
    np.testing.assert_allclose(ds.alpha_vec.values, 2.0 * np.array([2, 7, 100]), rtol=1e-12)
    # no signal: every rule errs with probability min(pi, 1 - pi)
    np.testing.assert_allclose(ds.e_pool.values, 0.5)
    np.testing.assert_allclose(ds.e_attn_max.values, 0.5)


def _points() -> list[dict]:
    pts = [dict(BASE), dict(BASE, b1=math.log(0.25), alpha0=4.0),
           dict(BASE, L=1000, R=1, pi=0.5, theta=3.0, beta=3.0)]
    pts += MODEL.random_points(np.random.default_rng(3), 1)
    return [dict(st.READOUT_DEFAULTS, **p) for p in pts]


def test_float64_pipeline_vs_mpmath_50_digits():
    """Check 1 (and 2 for the Gaussian expectations: mpmath integrates them exactly)."""
    rep = verify(MODEL, _points(), dps=50, observables=st.TWO_STEP_OBS)
    for name in st.TWO_STEP_OBS:
        # alignment: the Gauss–Hermite rule (80 nodes) is the only approximation (13.9 digits
        # measured); capacity maximisers: the argmax of a flat maximum is conditioned by
        # 1/sqrt(Hessian) (10.4 digits measured; the maximum itself 12.3)
        need = 10.0 if name in ("m_pool", "b_pool") else 12.0
        assert rep.min_digits(name) >= need, rep.table()


def test_square_loss_pipeline_vs_mpmath_50_digits():
    """The same for the square loss (an option now): float64 grid vs mpmath per point."""
    from numerics.backend import get_backend
    from numerics.highprec import agreeing_digits

    pts = [dict(st.READOUT_DEFAULTS, **dict(BASE, alpha0=0.5)),
           dict(st.READOUT_DEFAULTS, **dict(BASE, L=3, R=3, pi=0.7, theta=2.0, b1=0.4))]
    be = get_backend("numpy")
    flat = {k: np.array([p[k] for p in pts], float) for k in pts[0]}
    out = MODEL.evaluate(flat, be, loss="square")
    for i, p in enumerate(pts):
        ref = MODEL.evaluate_mp(p, dps=50, loss="square")
        for name in ("cos_w", "q_xi", "q_norm", "s_q", "e_pool", "alpha_pool"):
            d = agreeing_digits(out[name][i:i + 1], np.array([ref[name]], dtype=object))
            assert float(np.min(d)) >= 12.0, (name, i, d)


def test_gardner_F_is_the_integral():
    """F(a) = E[(G - a)_+^2] (derived) vs the integral, 50 digits."""
    k = sp.lambdify(st.a_, st.gardner_F(st.a_), "mpmath")
    with mpmath.workdps(50):
        for a in ("-3.1", "-0.4", "0", "0.7", "2.5", "6"):
            a = mpmath.mpf(a)
            ref = mpmath.quad(lambda g: (g - a)**2 * mpmath.npdf(g), [a, a + 10, mpmath.inf])
            assert abs(k(a) - ref) < mpmath.mpf(10)**-45 * max(1, abs(ref))


def test_pooled_oracle_is_the_bayes_error():
    """E*_pool (derived) = min over thresholds of the error of the N(mu y+, 1) score, by
    numerical minimisation of the definition in mpmath."""
    k = MODEL.kernel("oracle_pool", "mpmath")
    with mpmath.workdps(40):
        for Lv, Rv, piv, thv in ((10, 1, 0.5, 5.0), (10, 3, 0.2, 6.0), (50, 2, 0.8, 1.3)):
            mu = mpmath.mpf(thv) * Rv / mpmath.sqrt(Lv)
            pim = mpmath.mpf(piv)

            def err(t):
                return pim * mpmath.ncdf(t - mu) + (1 - pim) * (1 - mpmath.ncdf(t))

            # stationarity of the definition: pi phi(t - mu) = (1 - pi) phi(t), in logs
            tstar = mpmath.findroot(lambda t: mpmath.log(pim) - (t - mu)**2 / 2
                                    - mpmath.log(1 - pim) + t**2 / 2, (-50, 50), solver="anderson")
            got = k(mpmath.mp, mpmath.mpf(Lv), mpmath.mpf(Rv), pim, mpmath.mpf(thv))["e_pool"]
            assert abs(got - err(tstar)) < mpmath.mpf(10)**-30


def test_max_detector_stable_form_and_threshold():
    """Stable E_max = definition, and g(b) = 0 <=> dE_max/db = 0 (50 digits)."""
    E = sp.lambdify((st.bb, st.L, st.R, st.pi, st.theta), MODEL.max_detector_error_def(), "mpmath")
    chk_expr = MODEL.max_detector_derivative_check().replace(
        LogAddExp, lambda a, b: sp.log(sp.exp(a) + sp.exp(b)))
    chk = sp.lambdify((st.bb, st.L, st.R, st.pi, st.theta), chk_expr, "mpmath")
    k = MODEL.kernel("max_detector", "mpmath")
    with mpmath.workdps(50):
        for args in ((2.0, 10, 1, 0.5, 5.0), (3.3, 1000, 1, 0.3, 3.0), (-1.0, 5, 2, 0.9, 1.0),
                     (4.4, 10, 3, 0.2, 6.0)):
            a = [mpmath.mpf(x) for x in args]
            assert abs(k(mpmath.mp, *a)["e_max"] - E(*a)) < mpmath.mpf(10)**-45
            assert abs(chk(*a)) < mpmath.mpf(10)**-45
    # and the pipeline's threshold is the minimiser of the definition
    ds = solve(L=10, R=1, pi=0.5, theta=5.0)
    b = float(ds.b_max)
    with mpmath.workdps(30):
        vals = [E(mpmath.mpf(b + s), 10, 1, mpmath.mpf(0.5), 5) for s in (-1e-3, 0, 1e-3)]
    assert vals[1] < vals[0] and vals[1] < vals[2]


def test_attention_at_q_zero_is_pooling_and_softmax_jacobian():
    """Symbolic checks of the classifier (§1.2): f_0(X) = x_bar, and the gradient in q at
    q = 0 is beta/L X^T P X w with P = I - 11^T/L (the form used by the step-3 update)."""
    dm = MODEL.model_definitions()
    sy = dm["symbols"]
    zero = {s: 0 for s in sy["q"]}
    assert sp.simplify(dm["f_q"].subs(zero) - dm["xbar"]) == sp.zeros(2, 1)
    score = dm["score_attention"]
    grad = sp.Matrix([sp.diff(score, s) for s in sy["q"]]).subs(zero)
    X = dm["X_pos"]
    P = sp.eye(3) - sp.ones(3, 3) / 3
    expected = st.beta / 3 * X.T * P * X * sy["w"]
    assert sp.simplify(grad - expected) == sp.zeros(2, 1)


def test_attention_capacity_reduces_to_pooled_at_q_zero():
    """beta Q_q -> 0: attention features are pooled features, alpha*_A -> alpha*_pool."""
    r = MODEL.attention_capacity(L=4, R=1, pi=0.5, theta=3.0, beta_q=1e-9, s_q=0.5, n_mc=20000,
                                 n_rep=3, seed=1)
    pool = float(solve(L=4, R=1, pi=0.5, theta=3.0).alpha_pool)
    assert r["converged"]
    assert abs(r["alpha_attn"] - pool) < 4 * r["alpha_attn_sem"] + 0.01 * pool


def test_attention_features_kernels_vs_direct_softmax():
    """rho, nu, kappa from the generated kernels vs a direct NumPy softmax on the same draws."""
    L, R, theta, bq, sq = 7, 2, 2.5, 1.7, 0.6
    f = MODEL.attention_features(L=L, R=R, pi=0.3, theta=theta, beta_q=bq, s_q=sq, n=500,
                                 rng=np.random.default_rng(5))
    rng = np.random.default_rng(5)
    v = (np.arange(L) < R).astype(float)
    for lab in (1, -1):
        t = rng.standard_normal((500, L))
        x = theta * (lab == 1) * sq * v + t
        a = np.exp(bq * x - (bq * x).max(axis=1, keepdims=True))
        a /= a.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(f[lab]["rho"], (a * x).sum(axis=1), rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(f[lab]["nu"], theta * (lab == 1) * math.sqrt(1 - sq**2) * a @ v,
                                   rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(f[lab]["kappa"], np.sqrt((a * a).sum(axis=1)), rtol=1e-13)
