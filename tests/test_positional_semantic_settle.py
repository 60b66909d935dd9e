"""positional-semantic, issue 13 item 1: numbers that must not move (the long ones slow; see
docs/models/positional-semantic.md, "The semantic branch at small α and the transition line").

Outside references: the authors' stored tables (shared/reference/positional_semantic.json) and
their plotted α_c(ω); the numbers below were produced by derivations/positional_semantic_settle.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_reference


@pytest.mark.slow
def test_authors_cubature_reproduces_their_semantic_table_and_is_7_percent_off():
    """Our equations with the authors' degree-7 rule (4 Gauss–Hermite nodes per variable, and their
    stated Stein conjugates: the default envelope form differs at this coarse rule) give
    their semantic table at α = 1.016 to ~1 %; converged QMC moves V and θ by ~7 %, i.e. by
    more than 20 of its error bars (QMC with the same Stein conjugates): the authors' semantic V and θ
    carry their cubature error."""
    from derivations.positional_semantic import solve_pairs

    ref = [r for r in load_reference("positional_semantic")["omega_0.3"]["semantic"]
           if abs(r["alpha"] - 1.01636) < 1e-4][0]
    al = ref["alpha"]
    gh = solve_pairs([al], 0.3, "semantic", quadrature="gauss-hermite", quad_rtol=None, n_quad=4, replicas=1, hats="stein")
    for k, rk, tol in (("theta", "theta", 0.01), ("v", "V", 0.01), ("q", "q", 0.01), ("mse", "mse", 0.02)):
        assert abs(float(gh[k][0]) - ref[rk]) <= tol * abs(ref[rk]), (k, float(gh[k][0]), ref[rk])
    qm = solve_pairs([al], 0.3, "semantic", quad_rtol=None, n_quad=4096, replicas=4, hats="stein")
    for k in ("theta", "v"):
        gap = abs(float(qm[k][0]) - float(gh[k][0]))
        assert gap > 0.04 * abs(float(qm[k][0])) and gap > 10 * float(qm[f"{k}_err"][0]), (k, gap)


@pytest.mark.slow
def test_semantic_branch_ends_at_a_pitchfork_omega_03():
    """θ² on the semantic branch is linear near its end; α_s(0.3) = 0.64 ± 0.03 (fit over the four
    smallest resolved α, 2048 × 4 QMC; the page's value), and θ is unresolved (< 3 error bars)
    at α = 0.55 below it."""
    from derivations.positional_semantic import semantic_pitchfork

    pf = semantic_pitchfork([0.3], np.round(np.arange(0.55, 0.9001, 0.05), 3), quad_rtol=None, n_quad=2048, replicas=4)
    a_s, err = float(pf["alpha_s"][0]), float(pf["alpha_s_err"][0])
    assert abs(a_s - 0.64) < 3 * max(err, 0.03), (a_s, err)
    i = list(pf["alphas"]).index(0.55)
    assert not pf["theta"][i, 0] > 3 * pf["theta_err"][i, 0]


# ---- issue 13 item 1: the finite-d semantic start, the fixed-θ profile, the crossing by rule ----------
# Recorded by ``python -m derivations.positional_semantic_settle --part finite_d|profile|crossing``
# (CSV under tests/data with a provenance line). Fast tests recompute a d = 400 instance and check the
# recorded claims; slow tests recompute recorded theory numbers.

def _rows(name: str) -> list[dict]:
    from derivations.positional_semantic_settle import DATA, read_csv

    return read_csv(DATA / name)


def _stat(rows, key, **sel):
    v = np.array([r[key] for r in rows if all(r[k] == x for k, x in sel.items())], dtype=float)
    return v.mean(), v.std(ddof=1) / np.sqrt(v.size), v.size


def test_m0_subspace_and_fixed_theta_constraints_hold_exactly():
    """``subspace='m0'`` keeps uᵀQ = 0; ``theta_fixed`` also pins σ²Q*ᵀQ/d; both are rejected where
    they are not defined (r = 2; theta_fixed without m0)."""
    from numerics.simulate import positional_semantic as ps

    d = 120
    inst = ps.sample_instance(d, 0.45, seed=3)
    Q, _ = ps.train(inst, "semantic", subspace="m0")
    assert abs(inst.u @ Q / d) < 1e-12
    Q2, res = ps.train(inst, "fixed", Q0=Q, subspace="m0", theta_fixed=0.02)
    assert abs(0.25 * inst.Qstar @ Q2 / d - 0.02) < 1e-12 and abs(inst.u @ Q2 / d) < 1e-12
    assert abs(ps.risk_and_grad(Q2, inst)[0] - res.fun) < 1e-12 * max(1.0, abs(res.fun))
    with pytest.raises(ValueError):
        ps.train(inst, "semantic", subspace="m0", r=2)
    with pytest.raises(ValueError):
        ps.train(inst, "semantic", Q0=Q, theta_fixed=0.02)


def test_finite_d_instance_d400_reproduces_the_record_and_is_a_strict_minimum():
    """One recorded instance (d = 400, α = 0.45, seed 1) recomputed: every start's θ, m and risk/d
    as recorded; the semantic end point is a strict local minimum (smallest Hessian eigenvalue > 0,
    so θ can move by at most ``theta_shift_bound`` < 1e-5) and ``gtol = 1e-12`` moves θ by < 1e-5."""
    from derivations.positional_semantic_settle import finite_d_instance

    rec = {r["start"]: r for r in _rows("positional_semantic_finite_d.csv")
           if r["d"] == 400 and r["alpha"] == 0.45 and r["seed"] == 1}
    new = {r["start"]: r for r in finite_d_instance(400, 0.45, 1, hessian=True)}
    assert set(rec) == set(new)
    for s in rec:
        for k in ("theta", "m", "risk_per_d"):
            assert abs(new[s][k] - rec[s][k]) <= 1e-6 * max(1.0, abs(rec[s][k])) + 1e-9, (s, k, new[s][k], rec[s][k])
    sem = new["semantic"]
    assert sem["hess_min"] > 0 and sem["theta_shift_bound"] < 1e-5, sem
    assert abs(sem["theta_tight"] - sem["theta"]) < 1e-5


def test_recorded_finite_d_m_shrinks_theta_does_not():
    """The page's claims from the record (3–6 seeds per cell): from the free semantic start the mean
    |m| falls from d = 400 to 1600 (below half), but mixed end points (|m| > 0.1) still occur at
    d = 3200, and every free end point has a higher risk than the same data's positional minimum;
    θ does not shrink (on the m = 0 set the mean θ at the largest d is within 3 standard errors of,
    or above, d = 400, and above 0.04); every semantic end point where the Hessian was probed is a
    strict minimum, and the tight tolerance moves θ by < 1e-5."""
    rows = _rows("positional_semantic_finite_d.csv")
    for al in (0.45, 0.6):
        dmax = max(int(r["d"]) for r in rows if r["alpha"] == al)
        m = {d: np.mean([abs(r["m"]) for r in rows if r["alpha"] == al and r["d"] == d and r["start"] == "semantic"])
             for d in (400, 1600)}
        assert m[1600] < m[400] / 2, (al, m)
        t_lo, e_lo, _ = _stat(rows, "theta", alpha=al, d=400, start="semantic_m0")
        t_hi, e_hi, _ = _stat(rows, "theta", alpha=al, d=dmax, start="semantic_m0")
        assert t_hi > 0.04 and t_hi > t_lo - 3 * np.hypot(e_lo, e_hi), (al, t_lo, t_hi)
    assert any(abs(r["m"]) > 0.1 for r in rows if r["d"] == 3200 and r["start"] == "semantic")
    pos = {(r["alpha"], r["d"], r["seed"]): r["risk_per_d"] for r in rows if r["start"] == "positional"}
    sem = [r for r in rows if r["start"] == "semantic"]
    assert all(r["risk_per_d"] > pos[(r["alpha"], r["d"], r["seed"])] for r in sem)
    probed = [r for r in sem if np.isfinite(r.get("hess_min", np.nan))]
    assert probed and all(r["hess_min"] > 0 for r in probed)
    assert all(abs(r["theta_tight"] - r["theta"]) < 1e-5 for r in sem)


def test_recorded_finite_d_excess_risk_matches_the_fixed_theta_theory_not_theta_zero():
    """Risk/d minus the same instance's positional risk/d (the instance noise cancels) against the
    replica theory: the semantic (m = 0) end points sit at, or less than 5e-5 above, the theory's
    minimal risk at their own θ, e(θ_end) − (−Φ_pos) (a local minimum cannot lie below it; pooled over
    d ≥ 800, 3 standard errors), and above the θ = 0 value e(0) − (−Φ_pos); the random m = 0 starts
    (θ ≈ 0) end higher still."""
    rows = _rows("positional_semantic_finite_d.csv")
    prof = [r for r in _rows("positional_semantic_theta_profile.csv") if r["source"] == "rs"]
    for al in (0.45, 0.6):
        rs = sorted((r for r in prof if r["alpha"] == al), key=lambda r: r["theta"])
        th_rs = np.array([r["theta"] for r in rs])
        ex_rs = np.array([r["e_minus_pos"] for r in rs])
        pos = {(r["d"], r["seed"]): r["risk_per_d"] for r in rows if r["alpha"] == al and r["start"] == "positional"}
        sem = [r for r in rows if r["alpha"] == al and r["start"] == "semantic_m0" and r["d"] >= 800]
        ex = np.array([r["risk_per_d"] - pos[(r["d"], r["seed"])] for r in sem])
        pred = np.array([np.interp(r["theta"], th_rs, ex_rs) for r in sem])
        diff, se = (ex - pred).mean(), (ex - pred).std(ddof=1) / np.sqrt(ex.size)
        assert -3 * se < diff < 5e-5, (al, diff, se)  # at or just above the bound e(θ_end), never below
        gap0 = ex.mean() - ex_rs[0]
        assert gap0 > 3 * ex.std(ddof=1) / np.sqrt(ex.size), (al, gap0)
        small = np.array([r["risk_per_d"] - pos[(r["d"], r["seed"])] for r in rows
                          if r["alpha"] == al and r["start"] == "small_m0" and r["d"] >= 800])
        assert small.mean() > ex.mean() + 3 * small.std(ddof=1) / np.sqrt(small.size), (al, small.mean(), ex.mean())


def test_recorded_rs_profile_rises_from_theta_zero():
    """The replica theory on the m = 0 set at α = 0.45 and 0.6 (< α_s(0.3) = 0.70): the fixed-θ risk
    e(θ) rises from θ = 0 (every θ > 0.02 above e(0) by more than 3 paired errors) and the map
    contracts θ (F_θ < θ): θ = 0 is the constrained minimiser, with no second minimum up to θ = 0.08."""
    prof = [r for r in _rows("positional_semantic_theta_profile.csv") if r["source"] == "rs"]
    for al in (0.45, 0.6):
        rs = sorted((r for r in prof if r["alpha"] == al), key=lambda r: r["theta"])
        assert all(r["converged"] for r in rs)
        for r in rs:
            if r["theta"] > 0.02:
                assert r["e_minus_e0"] > 3 * r["e_minus_e0_err"], r
            if r["theta"] > 0:
                assert r["F_theta"] < r["theta"], r
        e = np.array([r["e_minus_e0"] for r in rs])
        assert np.all(np.diff(e[1:]) > 0)
    # 4× the quadrature points (16384 × 4) at α = 0.6: the same profile and F_θ/θ < 1 at θ = 0.01
    fine = {r["theta"]: r for r in _rows("positional_semantic_theta_profile.csv") if r["source"] == "rs_16384"}
    base = {r["theta"]: r for r in prof if r["alpha"] == 0.6}
    for t in (0.01, 0.05):
        assert abs(fine[t]["e_minus_e0"] - base[t]["e_minus_e0"]) < 3 * np.hypot(fine[t]["e_minus_e0_err"],
                                                                                base[t]["e_minus_e0_err"])
        assert abs(fine[t]["F_theta"] - base[t]["F_theta"]) < 3 * np.hypot(fine[t]["F_theta_err"], base[t]["F_theta_err"])
    assert fine[0.01]["F_theta"] + 1.5 * fine[0.01]["F_theta_err"] < 0.01


@pytest.mark.slow
def test_fixed_theta_profile_is_minimal_at_the_semantic_fixed_point():
    """Check of the constrained construction: at α = 1 (semantic branch, θ* ≈ 0.095) the fixed-θ
    risk e(θ) = −Φ_c(θ) equals −Φ at θ* (within the quadrature error) and is larger at θ* ± 0.015 (2048 × 2 QMC)."""
    from derivations.positional_semantic import solve_pairs
    from derivations.positional_semantic_settle import theta_profile

    o = dict(quad_rtol=None, n_quad=2048, replicas=2)
    r = solve_pairs([1.0], 0.3, "semantic", **o)
    th = float(r["theta"][0])
    p = theta_profile(1.0, 0.3, [th - 0.015, th, th + 0.015], **o)
    assert p["converged"].all()
    # θ* is the replica mean; each replica rule's own fixed point differs by its quadrature error, at
    # which e(θ) is stationary: the difference is second order (measured 2e-7)
    assert abs(p["e"][1] + float(r["phi"][0])) < max(3 * float(r["phi_err"][0]), 1e-6)
    assert p["e"][0] > p["e"][1] and p["e"][2] > p["e"][1]


@pytest.mark.slow
def test_rs_profile_recomputed_at_alpha_045():
    """The recorded e(0.05) − e(0) at α = 0.45 (4096 × 4) within 3 of its paired errors."""
    from derivations.positional_semantic_settle import theta_profile

    rec = {r["theta"]: r for r in _rows("positional_semantic_theta_profile.csv")
           if r["source"] == "rs" and r["alpha"] == 0.45}
    p = theta_profile(0.45, 0.3, [0.0, 0.05], quad_rtol=None, n_quad=4096, replicas=4)
    got, want = float(p["e_minus_e0"][1]), rec[0.05]["e_minus_e0"]
    assert abs(got - want) < 3 * np.hypot(float(p["e_minus_e0_err"][1]), rec[0.05]["e_minus_e0_err"]), (got, want)


def test_recorded_crossing_omega_01_and_the_authors_rule():
    """ω = 0.1: the converged Φ crossing (4096 × 4 QMC continuation) is α_c = 0.748 ± 0.008, within
    0.02 of the page's bisection (0.762) and 0.1 above the semantic branch's end (converged at
    α = 0.65, not at 0.60; pitchfork α_s = 0.61 ± 0.03). The authors' rule (4-node Gauss–Hermite,
    stated conjugates) puts the crossing **higher** at every ω (by > 0.05), not towards their
    plotted line, which lies below the converged value at every ω."""
    from derivations.positional_semantic_settle import AUTHORS_ALPHA_C, QMC_BISECTION_ALPHA_C, crossings_from_rows

    rows = _rows("positional_semantic_crossing.csv")
    ac = crossings_from_rows(rows)
    a01, e01 = ac[("qmc4096x4", 0.1)]
    assert abs(a01 - 0.748) < 3 * e01 and e01 < 0.015, (a01, e01)
    assert abs(a01 - 0.762) < 0.02
    q01 = {r["alpha"]: r for r in rows if r["rule"] == "qmc4096x4" and r["omega"] == 0.1}
    assert q01[0.65]["converged"] and not q01[0.6]["converged"]
    assert a01 - 0.61 > 0.1
    conv = {0.1: a01, **QMC_BISECTION_ALPHA_C}
    for w, a_auth in AUTHORS_ALPHA_C.items():
        assert ac[("gh4", w)][0] > conv[w] + 0.05, (w, ac[("gh4", w)], conv[w])
        assert a_auth < conv[w], (w, a_auth, conv[w])


@pytest.mark.slow
def test_crossing_omega_01_brackets_recomputed():
    """Φ_sem − Φ_pos at ω = 0.1 recomputed (4096 × 4 QMC): negative at α = 0.70 and positive at
    α = 0.80, each beyond 3 errors (α_c = 0.748 in between); with the authors' 4-node rule
    (stated conjugates) still negative at α = 0.80."""
    from derivations.positional_semantic import solve_pairs

    def diff(a, **o):
        s = solve_pairs([a], 0.1, "semantic", **o)
        p = solve_pairs([a], 0.1, "positional", **o)
        return float(s["phi"][0] - p["phi"][0]), float(np.hypot(s["phi_err"][0], p["phi_err"][0]))

    # the stated (Stein) conjugates, as recorded; the envelope form does not converge on the
    # semantic branch at (0.70, 0.1) from its default start (the model page says so)
    d70, e70 = diff(0.70, quad_rtol=None, n_quad=4096, replicas=4, hats="stein")
    d80, e80 = diff(0.80, quad_rtol=None, n_quad=4096, replicas=4, hats="stein")
    assert d70 < -3 * e70 and d80 > 3 * e80, (d70, e70, d80, e80)
    gh, _ = diff(0.80, quadrature="gauss-hermite", quad_rtol=None, n_quad=4, replicas=1, hats="stein")
    assert gh < 0, gh
