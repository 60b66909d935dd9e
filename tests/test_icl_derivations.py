"""Derived forms of the ICL model = the forms stated in the spec / authors' code.

Check 2 of the architecture: every closed form obtained here by SymPy (limits,
substitution, elimination) is shown equal to its stated form -- symbolically where
SymPy can decide it, otherwise at 50 digits on random points of the domain -- and
the Marchenko–Pastur closed form equals the numerical integral of its definition.
"""
from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp

import derive
from derive.models import icl_linear_attention as icl
from derive.operators import MarchenkoPasturTrace, lower, mp_self_consistency

MODEL = derive.models.get("icl-linear-attention")
STATED = MODEL.stated_forms()
x, kappa, tau, q, rho, M = icl.x, icl.kappa, icl.tau, icl.q, icl.rho, icl.M
DPS = 50


_COMPILED: dict = {}


def mp_eval(expr: sp.Expr, subs: dict) -> mpmath.mpf:
    """Evaluate ``expr`` (operators lowered) at ``subs`` with DPS digits, via SymPy's own
    mpmath lambdify (independent of the project's printers)."""
    syms = tuple(sorted(subs, key=lambda s: s.name))
    key = (expr, syms)
    if key not in _COMPILED:
        _COMPILED[key] = sp.lambdify(syms, lower(expr), modules="mpmath")
    with mpmath.workdps(max(mpmath.mp.dps, DPS + 10)):
        return +_COMPILED[key](*[mpmath.mpf(str(subs[s])) for s in syms])


def rel(a, b) -> float:
    a, b = mpmath.mpf(a), mpmath.mpf(b)
    return float(abs(a - b) / max(abs(b), mpmath.mpf(10) ** -60))


def random_xk(rng: np.random.Generator, n: int):
    for _ in range(n):
        yield {x: 10 ** rng.uniform(-4, 3), kappa: 10 ** rng.uniform(-2, 3)}


def test_M_closed_form_equals_stated_form_everywhere():
    """The stable root (a Piecewise) equals the spec's 2/(b + sqrt(...)) at 50 digits."""
    rng = np.random.default_rng(0)
    for pt in random_xk(rng, 40):
        ours = mp_eval(MODEL.M_closed_form, pt)
        stated = mp_eval(STATED["M"], pt)
        assert rel(ours, stated) < 1e-45, pt
        # and it is a root of the defining quadratic, and positive
        assert ours > 0
        assert abs(mp_eval(mp_self_consistency(M, x, kappa).subs(M, MODEL.M_closed_form), pt)) < 1e-40


def test_M_closed_form_branches_are_algebraically_equal():
    (b0, _), (b1, _) = MODEL.M_closed_form.args
    assert sp.simplify(sp.radsimp(b0 - b1)) == 0


def test_Mprime_equals_both_stated_forms():
    rng = np.random.default_rng(1)
    Mexpr = MODEL.M_closed_form
    ours = MODEL.Mprime.subs(M, Mexpr)
    for pt in random_xk(rng, 30):
        o = mp_eval(ours, pt)
        assert rel(o, mp_eval(STATED["Mp_a"].subs(M, Mexpr), pt)) < 1e-40, pt
        assert rel(o, mp_eval(STATED["Mp_b"].subs(M, Mexpr), pt)) < 1e-40, pt
        # and the derivative of the closed form, by mpmath differentiation
        with mpmath.workdps(DPS):
            d = mpmath.diff(lambda xv: mp_eval(Mexpr, {x: xv, kappa: pt[kappa]}),
                            mpmath.mpf(str(pt[x])))
        assert rel(o, d) < 1e-30, pt


def test_kappa_infinity_limits_equal_stated_forms():
    lim = MODEL.kappa_infinity
    assert sp.simplify(lim["M"] - STATED["M_kappa_inf"]) == 0
    assert sp.simplify(lim["Mp"] - STATED["Mp_kappa_inf"]) == 0


def test_kappa_infinity_kernel_value():
    """The generated kernel at kappa = inf equals 1/(1+x) (no inf/inf in the stable form)."""
    from numerics.backend import get_backend

    be = get_backend("numpy")
    k = MODEL.kernel("observables")
    xs = np.geomspace(1e-3, 1e3, 13)
    out = k(be.xp, be.special, 2.0, 1.0 / xs, np.inf, 0.0, 0.0, 0.0)  # q = 1/alpha = xs, eps = 0
    np.testing.assert_allclose(out["M"], 1 / (1 + xs), rtol=1e-15)
    np.testing.assert_allclose(out["Mp"], -1 / (1 + xs) ** 2, rtol=1e-14)


@pytest.mark.parametrize("kap", [0.3, 1.0, 2.5, 40.0])
@pytest.mark.parametrize("xv", [1e-3, 0.2, 3.0])
def test_M_equals_marchenko_pastur_integral(kap, xv):
    r"""$M_\kappa(x)=\int\frac{\mu(ds)}{s+x}$ for the MP law of $\hat S=\frac1k\sum w w^\top$:
    aspect ratio $c=d/k=1/\kappa$, support $[(1-\sqrt c)^2,(1+\sqrt c)^2]$, atom $1-\kappa$
    at 0 when $\kappa<1$. Density written from its definition, integrated by mpmath."""
    with mpmath.workdps(30):
        c = 1 / mpmath.mpf(kap)
        a, b = (1 - mpmath.sqrt(c)) ** 2, (1 + mpmath.sqrt(c)) ** 2
        X = mpmath.mpf(xv)

        def density(s):
            return mpmath.sqrt((b - s) * (s - a)) / (2 * mpmath.pi * c * s)

        integral = mpmath.quad(lambda s: density(s) / (s + X), [a, (a + b) / 2, b])
        atom = max(mpmath.mpf(0), 1 - mpmath.mpf(kap))
        total = integral + atom / X
        mass = mpmath.quad(density, [a, (a + b) / 2, b]) + atom
    assert abs(mass - 1) < 1e-12
    ours = mp_eval(MarchenkoPasturTrace(x, kappa), {x: xv, kappa: kap})
    assert rel(ours, total) < 1e-12


def test_eps0_derived_equals_stated_and_solves_the_equation():
    """Ridgeless eps (tau < 1): the root obtained by eliminating M equals (1-tau)/(tau M_{kappa/tau}(q))
    and satisfies eps M(q + eps) = 1 - tau to ~50 digits."""
    rng = np.random.default_rng(2)
    for _ in range(40):
        pt = {tau: 10 ** rng.uniform(-3, -1e-3), q: 10 ** rng.uniform(-5, 3),
              kappa: 10 ** rng.uniform(-2, 3)}
        e0 = mp_eval(MODEL.eps0, pt)
        assert e0 > 0
        assert rel(e0, mp_eval(STATED["eps0"], pt)) < 1e-40, pt
        resid = mp_eval(icl.eps * MarchenkoPasturTrace(q + icl.eps, kappa) - (1 - tau),
                        {**pt, icl.eps: e0})
        assert abs(resid) < 1e-40


def test_lambda_over_eps_limits():
    r0 = MODEL.r_ridgeless
    assert r0.args[0][0] == 0 and r0.args[0][1] == (tau < 1)
    assert sp.simplify(r0.args[1][0] - (tau - 1) / tau) == 0


@pytest.mark.slow  # symbolic reduction; the same equality is checked at 50 digits below
def test_ridgeless_idg_above_threshold_is_symbolically_the_stated_form():
    """tau > 1: substituting eps = 0 gives tau/(tau-1) (rho + q(1 - q m*)) exactly (on the
    MP quadratic at x = q, which the kernels' cancellation-free forms use)."""
    from derive.operators import vanishes_modulo

    forms = MODEL.ridgeless_forms()["tau>1"]
    m_star = MarchenkoPasturTrace(q, kappa)
    rel_q = mp_self_consistency(M, q, kappa)
    for name, stated in (("e_idg", "e_idg_tau>1"), ("e_train", "e_train_tau>1")):
        diff = (forms[name] - STATED[stated]).subs(icl.alpha, (1 + rho) / q)
        assert vanishes_modulo(diff.subs(m_star, M), M, rel_q), name


@pytest.mark.parametrize("branch", ["tau<1", "tau>1"])
def test_ridgeless_learning_curves_equal_stated_forms(branch):
    """Both ridgeless branches, e_ICL and e_IDG, = the authors' closed forms (§2.4), at 50 digits."""
    forms = MODEL.ridgeless_forms()[branch]
    rng = np.random.default_rng(3)
    for _ in range(12):
        t = 10 ** rng.uniform(-2, -0.02) if branch == "tau<1" else 10 ** rng.uniform(0.02, 2)
        qv, kv, rv = 10 ** rng.uniform(-3, 2), 10 ** rng.uniform(-1.5, 2), 10 ** rng.uniform(-3, 0)
        pt = {tau: t, q: qv, kappa: kv, rho: rv}
        for obs in ("e_icl", "e_idg"):
            key = f"{obs}_{branch}"
            ours = mp_eval(forms[obs].subs(icl.alpha, (1 + rho) / q), pt)
            stated = mp_eval(STATED[key], pt)
            assert rel(ours, stated) < 1e-35, (key, pt, ours, stated)


@pytest.mark.slow  # a symbolic proof: ~1 min alone, several under load
def test_stable_forms_equal_definitions_modulo_the_quadratic():
    """The cancellation-free forms the kernels use (U, -M', Y, W, D, N, e_ICL) vanish
    against the stated definitions modulo the MP quadratic (a symbolic proof)."""
    assert MODEL.check_stable_forms() == {k: True for k in
                                          ("U", "-M'", "Y", "W", "D", "N", "e_icl")}
