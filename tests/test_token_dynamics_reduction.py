"""token-dynamics: equiangular reduction (derived), hitting times (closed form = definition
= reference), particle simulation = reduced ODE, and the derive.solve pipeline."""
from __future__ import annotations

import mpmath
import numpy as np
import pytest
import scipy.special
import sympy as sp

import derive
from derive.models import token_dynamics as td
from numerics import particles
from numerics.simulate import token_dynamics as sim
from tests.conftest import load_reference

M = derive.models.get("token-dynamics")
REF = load_reference("token_dynamics")
ROWS = REF["equiangular_hitting_time_rho0_0_target_0.999"]
beta, n, rho0, target = (p.symbol for p in M.parameters)
rho = td.rho


# ---- derivations ---------------------------------------------------------------------------
@pytest.mark.parametrize("dyn", ["SA", "USA"])
def test_equiangular_rhs_equals_stated_form(dyn):
    assert sp.simplify(M.equiangular_rhs[dyn] - M.stated_rhs[dyn]) == 0


@pytest.mark.parametrize("dyn", ["SA", "USA"])
@pytest.mark.parametrize("m", [2, 3, 4, 5])
def test_explicit_ansatz_substitution_matches_symbolic_n(dyn, m):
    """Gram ansatz substituted into the velocity of m explicit tokens = the symbolic-n form."""
    e = M.equiangular_rhs_explicit(m, dyn)
    assert sp.simplify(e - M.equiangular_rhs[dyn].subs(n, m)) == 0


@pytest.mark.slow  # symbolic proof (~10 s on loaded cores); covered at 30 digits by the quadrature test
@pytest.mark.parametrize("dyn,c", [("SA", 2 * n), ("USA", 2)])
def test_antiderivative_differentiates_to_inverse_rate(dyn, c):
    d = sp.diff(M.antiderivatives[dyn], rho) * M.equiangular_rhs[dyn] - c
    assert sp.simplify(sp.powsimp(sp.expand(sp.powsimp(d)))) == 0


@pytest.mark.parametrize("dyn", ["SA", "USA"])
def test_antiderivative_equals_spec_form(dyn):
    """Equal up to log identities valid on [0, 1): same derivative, same value at rho = 0."""
    def canon(e):
        return e.replace(sp.Ei, lambda a: sp.Ei(sp.factor(a))).replace(
            sp.exp, lambda a: sp.exp(sp.factor(a)))

    diff = canon(M.antiderivatives[dyn]) - canon(M.stated_antiderivatives[dyn])
    assert sp.simplify(sp.powsimp(sp.expand(sp.powsimp(sp.diff(diff, rho))))) == 0
    assert sp.simplify(sp.powsimp(sp.expand(diff.subs(rho, 0)))) == 0


def test_beta0_solution_solves_the_ode():
    r = M.beta0_solution
    ode = sp.diff(r, td.t) - M.equiangular_rhs["SA"].subs(beta, 0).subs(rho, r)
    assert sp.simplify(ode) == 0
    assert sp.simplify(r.subs(td.t, 0) - rho0) == 0


# ---- closed form vs definition (mpmath) and vs reference ----------------------------------
@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"beta{r['beta']}_n{r['n']}")
def test_hitting_times_equal_reference(row):
    for dyn, key in (("SA", "t_SA"), ("USA", "t_USA")):
        got = M.equiangular_hitting_time(row["beta"], row["n"], dynamics=dyn)
        assert got == pytest.approx(float(row[key]), rel=2e-14)
    with mpmath.workdps(50):  # exact decimal target (0.999 is not a float64)
        mp_out = M.kernel("hitting_time", "mpmath")(mpmath.mp, mpmath.mpf(row["beta"]),
                                                    mpmath.mpf(row["n"]), mpmath.mpf(0),
                                                    mpmath.mpf("0.999"))
        assert abs(mp_out["t_sa"] / mpmath.mpf(row["t_SA"]) - 1) < 1e-22
        assert abs(mp_out["t_usa"] / mpmath.mpf(row["t_USA"]) - 1) < 1e-22


@pytest.mark.parametrize("b,nn,r0,tg", [(2.0, 5, 0.1, 0.9), (0.3, 64, 0.0, 0.99), (6.0, 16, 0.5, 0.95)])
def test_hitting_time_equals_integral_of_inverse_rate(b, nn, r0, tg):
    """Closed form = its definition t = ∫ dρ/ρ̇ (mpmath quadrature of the ODE right side)."""
    rhs = M.kernel("equiangular_rhs", "mpmath")
    out = M.evaluate_mp(dict(beta=b, n=nn, rho0=r0, target=tg), dps=30)
    with mpmath.workdps(30):
        for key, rk in (("t_sa", "rhodot_sa"), ("t_usa", "rhodot_usa")):
            q = mpmath.quad(lambda r: 1 / rhs(mpmath.mp, r, mpmath.mpf(b), nn)[rk],
                            [mpmath.mpf(r0), mpmath.mpf(tg)])
            assert abs(out[key] / q - 1) < 1e-25


def test_float64_hitting_time_vs_mpmath_on_a_grid():
    bs, ns = np.array([0.0, 1e-6, 0.5, 3.0, 12.0, 40.0]), np.array([2, 8, 100, 10**4])
    ds = derive.solve("token-dynamics", beta=bs, n=ns, rho0=0.2, target=0.99)
    assert bool(ds.converged.all())
    worst = 17.0
    for i, b in enumerate(bs):
        for j, nn in enumerate(ns):
            mp_out = M.evaluate_mp(dict(beta=b, n=nn, rho0=0.2, target=0.99))
            for k in ("t_sa", "t_usa"):
                v = float(ds[k].values[i, j])
                worst = min(worst, -np.log10(abs(v / float(mp_out[k]) - 1) + 1e-17))
    assert worst > 11.0, worst


def test_beta0_matches_closed_solution():
    k = M.kernel("equiangular_beta0")
    r = k(np, scipy.special, 0.7, 8.0, 0.0)["rho_t"]
    t_back = M.equiangular_hitting_time(0.0, 8, "SA", rho0=0.0, target=float(r))
    assert t_back == pytest.approx(0.7, rel=1e-13)


# ---- particles = reduced ODE ----------------------------------------------------------------
@pytest.mark.parametrize("dyn", ["SA", "USA"])
@pytest.mark.parametrize("b", [1.0, 4.0])
def test_particle_simulation_equals_reduced_ode(dyn, b):
    """n = d = 8 orthonormal start, RK4 h = 1e-3 + renormalisation with the generated kernel,
    T = 1 (0.05 for USA at beta = 4): rho(T) vs the reduced ODE solved by mpmath (taylor, 20 digits), and the closed-form
    hitting time of the simulated rho(T) returns T."""
    nn = 8
    X = sim.equiangular_start(nn, nn, 0.0)
    k = M.velocity_kernel(dyn)
    extra = (np.zeros(1),) if dyn == "USA" else ()
    T = 1.0 if dyn == "SA" or b == 1.0 else 0.05  # USA at beta = 4 saturates by T = 1
    tr = particles.integrate(lambda Y: k(np, scipy.special, Y, np.array([b]), *extra)["v"], X,
                             T=T, h=1e-3, method="rk4")
    G = particles.gram(tr.states[-1])[0]
    off = G[~np.eye(nn, dtype=bool)]
    assert off.max() - off.min() < 1e-13  # stays equiangular
    rhs = M.kernel("equiangular_rhs", "mpmath")
    key = "rhodot_sa" if dyn == "SA" else "rhodot_usa"
    with mpmath.workdps(20):
        sol = mpmath.odefun(lambda t, r: rhs(mpmath.mp, r, mpmath.mpf(b), nn)[key], 0,
                            mpmath.mpf(0))
        r1 = float(sol(T))
    assert abs(off.mean() - r1) < 1e-10, off.mean() - r1
    t_back = M.equiangular_hitting_time(b, nn, dyn, rho0=0.0, target=float(off.mean()))
    assert abs(t_back - T) < 1e-9


# ---- pipeline, validation -------------------------------------------------------------------
def test_solve_dataset_and_observables():
    ds = derive.solve("token-dynamics", beta=np.linspace(0, 9, 4), n=np.array([8, 32]),
                      rho0=0.0, target=0.999)
    assert ds.t_sa.dims == ("beta", "n")
    assert set(ds.data_vars) >= {"t_sa", "t_usa", "converged", "residual", "status"}
    # SA is slower than USA for beta > 0 and increasing in beta (spec §2.1)
    assert np.all(np.diff(ds.t_sa.values, axis=0) > 0)


def test_overflow_is_flagged_not_hidden():
    ds = derive.solve("token-dynamics", beta=np.array([5.0, 800.0]), n=8, rho0=0.0, target=0.999)
    assert bool(ds.converged.values[0]) and not bool(ds.converged.values[1])
    assert np.isnan(ds.t_sa.values[1]) and int(ds.status.values[1]) != 0


@pytest.mark.parametrize("bad,match", [
    (dict(beta=-1.0), "beta"), (dict(n=1), "'n'"), (dict(n=2.5), "'n'"),
    (dict(rho0=1.0), "rho0"), (dict(target=1.0), "target"), (dict(target=0.1, rho0=0.5), "target")])
def test_bad_input_raises_naming_parameter(bad, match):
    p = dict(beta=1.0, n=8, rho0=0.0, target=0.999) | bad
    with pytest.raises(ValueError, match=match):
        derive.solve("token-dynamics", **p)
    with pytest.raises(ValueError, match=match):
        M.equiangular_hitting_time(p["beta"], p["n"], rho0=p["rho0"], target=p["target"])


def test_bad_dynamics_name():
    with pytest.raises(ValueError, match="dynamics"):
        M.equiangular_hitting_time(1.0, 8, dynamics="softmax")


def test_long_context_limits():
    """One-layer output cosine at beta = gamma log n: the three limits (spec §2.5) out to
    n = 1e6, the finite-n values quoted in the spec, and the Gram simulation at small n."""
    k = M.kernel("long_context")
    ns = np.array([1e2, 1e4, 1e6])
    rh = 0.5
    crit = 1 / (1 - rh)
    below = k(np, scipy.special, rh, 0.5 * crit, ns)["cos_out"]  # gamma = 1
    at = k(np, scipy.special, rh, crit, ns)["cos_out"]
    above = k(np, scipy.special, rh, 2 * crit, ns)["cos_out"]  # gamma = 4
    assert float(REF["long_context_critical_limit"]["rho=0.5"]) == pytest.approx(4 * rh / (1 + 3 * rh))
    assert at[0] == pytest.approx(0.8028, abs=1e-4) and abs(at[-1] - 0.8) < 1e-5
    # spec §2.5 [checked]: n = 1e2 -> 1e6 gives 0.9933 -> 1.0000 and 0.5050 -> 0.50000
    assert above[0] == pytest.approx(0.5050, abs=1e-4) and abs(above[-1] - 0.5) < 1e-5
    assert below[0] == pytest.approx(0.9933, abs=1e-4) and abs(below[-1] - 1) < 1e-5
    lim = M.long_context_critical_limit
    assert sp.simplify(lim - 4 * rho / (1 + 3 * rho)) == 0
    for nn, g in ((50, 1.0), (200, crit), (300, 3.5)):
        assert k(np, scipy.special, rh, g, float(nn))["cos_out"] == pytest.approx(
            sim.long_context_gram(nn, rh, g), rel=1e-12)


def test_verify_float64_vs_mpmath_random_domain():
    """Check 1 (architecture): the float64 pipeline vs the same generated expressions in
    mpmath at 50 digits over random points of the domain (measured: ≥ 13.7 digits on 200)."""
    from derive.verify import verify

    rep = verify(M, M.random_points(np.random.default_rng(1), 60))
    for name in ("t_sa", "t_usa"):
        assert rep.min_digits(name) > 12.5, rep.table()
