"""positional-semantic: derivations, kernels vs mpmath, prox, quadrature, fixed point, reference.

Outside references: mpmath at 50 digits (kernels, prox, inner quadrature), scipy's adaptive
quadrature (baseline), the authors' tables in ``shared/reference/positional_semantic.json``.
"""
from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp

import derive
from derive.models import positional_semantic as PS
from numerics.backend import get_backend
from tests.conftest import load_reference

MODEL = derive.models.get("positional-semantic")
BE = get_backend("numpy")


class _Map:
    """The shared driver on one replica rule (seed ``seed``), for tests of single map evaluations."""

    def __init__(self, points: dict, **opts):
        p = {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in points.items()}
        self.d, self.pb = MODEL.saddle(p, BE, **dict(dict(replicas=1), **opts))
        self.weights = self.d.weights[0]

    def _channel(self, x, idx):
        z = self.d.nodes[0]
        N = z.shape[0]
        c = self.pb.channel(np.repeat(x, N, axis=0), np.zeros(N, dtype=int), z)
        c["z"] = z
        return c

    def _prox(self, c, idx):
        y, _, _ = self.d._prox(c, np.arange(1), None)
        return type("R", (), {"x": y})()

    def hats_and_map(self, x, idx, final=True):
        return self.d.evaluate(x, np.arange(x.shape[0]))

    def baseline(self):
        return PS.baseline_mse(MODEL, self.d, self.pb, 2, 1, np, BE.special, self.pb.context["sigma"])


def _solver(points: dict, **opts):
    return _Map(points, **opts)


# -- symbolic -------------------------------------------------------------------------------
def test_overlap_updates_derived_from_phi_equal_stated():
    assert all(MODEL.check_overlaps().values()), MODEL.check_overlaps()


def test_conjugates_derived_from_phi_mhat_qhat_identical_to_stated():
    """∂Φ/∂m = 0 and ∂Φ/∂V = 0 with the envelope theorem give the stated m̂, q̂ exactly."""
    d = MODEL.derived_hats_from_envelope()
    env = MODEL.envelope_integrands
    st = MODEL.stated_hat_integrands
    ch = MODEL.channel
    back = {PS.h1: ch[PS.h1], PS.h2: ch[PS.h2]}
    # integrands: derived = coefficient * E[dM/dp]; compare pointwise in x
    mh_derived = sp.simplify(d[PS.mh].subs(PS.d_m, env[PS.d_m]) / PS.alpha)
    qh_derived = sp.simplify(d[PS.qh].subs(PS.d_V, env[PS.d_V]) / PS.alpha)
    assert sp.simplify(mh_derived - st[PS.i_mh].subs(back)) == 0
    assert sp.simplify(qh_derived - st[PS.i_qh].subs(back)) == 0


def test_conjugates_stated_equal_envelope_forms_numerically():
    """V̂ and θ̂: the stated forms (Gaussian integration by parts) equal the forms derived from
    Φ (E ∂_q M, E ∂_θ M at the prox) at an arbitrary point, within the QMC error."""
    pt = dict(alpha=1.3, omega=0.4, sigma=0.5, lam=0.01)
    x = np.array([[0.08, 0.1, 14.0, 0.09]])
    d = MODEL.derived_hats_from_envelope()
    ks = MODEL.kernel("envelope_integrands")
    stated, derived = [], []
    for seed in range(4):
        s = _solver(pt, quad_rtol=None, n_quad=8192, seed=seed)
        c = s._channel(x, np.arange(1))
        res = s._prox(c, np.arange(1))
        z = c["z"]
        env = ks(np, BE.special, res.x[:, 0], res.x[:, 1], z[:, 0], z[:, 1], z[:, 2], z[:, 3],
                 *(np.full(len(z), v) for v in (*x[0], 0.25, 0.5, 0.4, 0.6, 0.4, 0.4, 0.6)))
        E = {k: float(np.sum(s.weights * v)) for k, v in env.items()}
        out = s.hats_and_map(x, np.arange(1), final=True)
        subs = {PS.d_q: E["dM_dq"], PS.d_m: E["dM_dm"], PS.d_V: E["dM_dV"], PS.d_th: E["dM_dtheta"],
                PS.alpha: 1.3, PS.q: 0.08, PS.m: 0.1, PS.V: 14.0, PS.theta: 0.09}
        derived.append([float(d[k].subs(subs)) for k in (PS.Vh, PS.thh)])
        stated.append([float(out["vhat"][0]), float(out["thetahat"][0])])
    stated, derived = np.array(stated), np.array(derived)
    diff = (stated - derived).mean(0)
    err = np.sqrt(stated.var(0, ddof=1) / 4 + derived.var(0, ddof=1) / 4)
    assert np.all(np.abs(diff) < 4 * err + 1e-4 * np.abs(stated.mean(0))), (diff, err)


# -- kernels vs mpmath at 50 digits ------------------------------------------------------------------
def test_kernels_vs_mpmath():
    """Every generated kernel = its mpmath print at 50 digits (random inputs in the model's ranges)."""
    digits = MODEL.verify_kernels(n=40, seed=7, dps=50)
    assert set(digits) == set(MODEL.programs())
    assert min(digits.values()) >= 11.5, digits


# -- prox and the inner quadrature vs mpmath --------------------------------------------------------
def _mp_prox(km, args, x0, dps=40):
    """Newton on the mpmath kernel of the prox objective (independent of numerics.prox)."""
    with mpmath.workdps(dps):
        x = mpmath.matrix([mpmath.mpf(float(x0[0])), mpmath.mpf(float(x0[1]))])
        for _ in range(100):
            o = km(mpmath, x[0], x[1], *args)
            g = mpmath.matrix([o["g1"], o["g2"]])
            H = mpmath.matrix([[o["H11"], o["H12"]], [o["H12"], o["H22"]]])
            step = mpmath.lu_solve(H, g)
            x = x - step
            if mpmath.norm(step) < mpmath.mpf(10) ** (-dps + 5):
                break
        return x, o


def test_prox_matches_mpmath_newton():
    s = _solver(dict(alpha=1.0, omega=0.3, sigma=0.5, lam=0.01), quad_rtol=None, n_quad=64, seed=3)
    x = np.array([[0.05, 0.25, 15.0, 0.02]])
    c = s._channel(x, np.arange(1))
    res = s._prox(c, np.arange(1))
    km = MODEL.kernel("prox_fgh", "mpmath")
    for row in range(0, 64, 7):
        a = [mpmath.mpf(float(c[k][row])) for k in ("h1", "h2", "V", "sigma", "T11", "T12", "T21", "T22")]
        xm, _ = _mp_prox(km, a, res.x[row])
        assert abs(float(xm[0]) - res.x[row, 0]) < 1e-10 and abs(float(xm[1]) - res.x[row, 1]) < 1e-10


@pytest.mark.slow
def test_inner_quadrature_slice_vs_mpmath_quad():
    """A 1-D slice of the m̂ integrand over w₁ (other variables fixed): Gauss–Hermite on the
    generated kernels + batched prox vs mpmath.quad of the same integrand with an mpmath prox."""
    q, m, V, th, sig, om = 0.05, 0.25, 3.0, 0.05, 0.5, 0.3  # V small: a unique, smooth prox
    xi1, xi2, w2 = 0.3, -0.4, 0.2
    kc, kcm = MODEL.kernel("channel"), MODEL.kernel("channel", "mpmath")
    kf = MODEL.kernel("prox_fgh", "mpmath")
    kh, khm = MODEL.kernel("hat_integrands"), MODEL.kernel("hat_integrands", "mpmath")
    from numerics.prox import minimize_multistart
    from numerics.quadrature import gauss_hermite

    rule = gauss_hermite(60, 1)
    w1 = rule.nodes[:, 0]
    n = w1.size
    full = lambda v: np.full(n, v)  # noqa: E731
    c = kc(np, BE.special, full(xi1), full(xi2), w1, full(w2), full(q), full(m), full(th), full(0.25),
           full(om), full(0.6), full(0.4), full(0.4), full(0.6))
    kx = MODEL.kernel("prox_fgh")
    T = [c[k] for k in ("T11", "T12", "T21", "T22")]

    def fgh(x, rows):
        o = kx(np, BE.special, x[:, 0], x[:, 1], c["h1"][rows], c["h2"][rows], full(V)[rows],
               full(sig)[rows], *(t[rows] for t in T))
        return (o["M"], np.stack([o["g1"], o["g2"]], 1),
                np.stack([np.stack([o["H11"], o["H12"]], 1), np.stack([o["H12"], o["H22"]], 1)], 1))

    h = np.stack([c["h1"], c["h2"]], 1)
    res, distinct = minimize_multistart(fgh, [h, np.zeros_like(h)], gtol=1e-13)
    I = kh(np, BE.special, res.x[:, 0], res.x[:, 1], c["h1"], c["h2"], full(xi1), full(xi2), w1, full(w2),
           full(q), full(V), c["Vstar"], full(sig), *T)["i_mhat"]
    gh = float(np.sum(rule.weights * I))

    with mpmath.workdps(20):
        def integrand(w):
            cm = kcm(mpmath, xi1, xi2, w, w2, q, m, th, mpmath.mpf("0.25"), om, mpmath.mpf("0.6"),
                     mpmath.mpf("0.4"), mpmath.mpf("0.4"), mpmath.mpf("0.6"))
            args = [cm["h1"], cm["h2"], V, sig, cm["T11"], cm["T12"], cm["T21"], cm["T22"]]
            xm, _ = _mp_prox(kf, args, (float(cm["h1"]), float(cm["h2"])), dps=20)
            o = khm(mpmath, xm[0], xm[1], cm["h1"], cm["h2"], xi1, xi2, w, w2, q, V, cm["Vstar"], sig,
                    cm["T11"], cm["T12"], cm["T21"], cm["T22"])
            return o["i_mhat"] * mpmath.npdf(w)
        ref = mpmath.quad(integrand, [-mpmath.inf, 0, mpmath.inf], maxdegree=6)
    assert int(distinct.sum()) == 0  # a slice with a unique minimiser: the integrand is smooth
    assert abs(gh - float(ref)) < 1e-9 * max(1e-3, abs(float(ref)))


# -- baseline, validation ----------------------------------------------------------------------------
def test_linear_baseline_vs_adaptive_quadrature():
    """Independent: scipy dblquad of the same expectation gave 0.00394276866934018 (σ=0.5, ω=0.3,
    standard A); the authors' notebook prints 0.003981 (its degree-11 cubature is 1% off)."""
    from scipy import integrate

    A = np.array([[0.6, 0.4], [0.4, 0.6]])

    def T(t1, t2):
        s11 = 1 / (1 + np.exp(-(t1 * t1 - t1 * t2)))
        s22 = 1 / (1 + np.exp(-(t2 * t2 - t1 * t2)))
        return 0.7 * np.array([[s11, 1 - s11], [1 - s22, s22]]) + 0.3 * A

    phi = lambda x: np.exp(-x * x / 2) / np.sqrt(2 * np.pi)  # noqa: E731
    ET = [integrate.dblquad(lambda y, x: T(0.5 * x, 0.5 * y)[i, j] * phi(x) * phi(y), -10, 10, -10, 10,
                            epsabs=1e-12)[0] for i in range(2) for j in range(2)]
    ETT = integrate.dblquad(lambda y, x: (T(0.5 * x, 0.5 * y) ** 2).sum() * phi(x) * phi(y), -10, 10,
                            -10, 10, epsabs=1e-12)[0]
    ref = 0.25 * (ETT - sum(e * e for e in ET))
    ours = float(_solver(dict(alpha=1.0, omega=0.3, sigma=0.5, lam=0.01)).baseline()[0])
    assert abs(ours - ref) < 1e-10
    assert abs(ours - 0.003981) / 0.003981 < 0.015  # the authors' printed value, to its precision


@pytest.mark.parametrize("bad,match", [(dict(omega=1.5), "omega"), (dict(sigma=0.0), "sigma"),
                                       (dict(lam=-1.0), "lam"), (dict(alpha=-1.0), "alpha")])
def test_bad_parameters_rejected_by_name(bad, match):
    p = dict(alpha=1.0, omega=0.3, sigma=0.5, lam=0.01)
    p.update(bad)
    with pytest.raises(ValueError, match=match):
        derive.solve("positional-semantic", **p)


@pytest.mark.parametrize("opt,match", [(dict(r=0), "'r'"), (dict(L=1), "'L'"), (dict(branch="x"), "branch"),
                                       (dict(A=((0.5, 0.6), (0.4, 0.6))), "row-stochastic")])
def test_bad_options_rejected_by_name(opt, match):
    with pytest.raises(ValueError, match=match):
        derive.solve("positional-semantic", alpha=1.0, omega=0.3, sigma=0.5, lam=0.01, **opt)


# -- the fixed point --------------------------------------------------------------------------------
def test_fixed_point_satisfies_undamped_equations_and_flags_failures():
    ds = derive.solve("positional-semantic", alpha=np.array([0.3, 1.2]), omega=0.3, sigma=0.5, lam=0.01,
                      branch="semantic", quad_rtol=None, n_quad=1024, maxiter=300, replicas=1)
    assert bool(ds.converged.all())
    s = _solver(dict(alpha=[0.3, 1.2], omega=[0.3, 0.3], sigma=[0.5, 0.5], lam=[0.01, 0.01]), quad_rtol=None, n_quad=1024,
                branch="semantic")
    x = np.stack([ds.q.values, ds.m.values, ds.v.values, ds.theta.values], 1)
    # the reported representative has θ ≥ 0 (Q → −Q maps (m, θ) → (−m, −θ); the QMC rule is not
    # closed under it): the solver's fixed point is x or its image, per point
    res = []
    for xx in (x, x * np.array([1.0, -1.0, 1.0, -1.0])):
        fx = s.hats_and_map(xx, np.arange(2))["map"]
        res.append(np.max(np.abs(fx - xx) / np.maximum(1, np.abs(xx)), axis=1))
    assert np.all(np.minimum(*res) <= 1e-10), res
    assert float(ds.residual.max()) <= 1e-10
    starved = derive.solve("positional-semantic", alpha=np.array([1.2]), omega=0.3, sigma=0.5, lam=0.01,
                           branch="semantic", quad_rtol=None, n_quad=256, maxiter=2)
    assert not bool(starved.converged[0]) and np.isnan(float(starved.q[0]))  # flagged, never returned


def test_reference_table_few_points():
    """Both branches at ω = 0.3 vs the authors' tables, to the agreement stated in
    tests/data/positional_semantic_reference.md (their tables carry 1-2 % quadrature error and a
    loose stopping rule; the semantic V and θ differ more, and simulation sides with ours)."""
    ref = load_reference("positional_semantic")["omega_0.3"]
    # positional V loosened from 3 % to 5 % (stated reason): the shared driver's converged value at
    # α = 1.893 is V = 11.82 ± 0.06 (QMC 4 × 16384, replica error), 3.4 % above the authors' 11.43;
    # the old 3 % passed only because the old single-rule value carried a 1-2 % error of its own
    cases = {"positional": ((1, 10), {"q": 0.03, "v": 0.05, "mse": 0.03, "phi": 0.03, "m": 0.03}),
             "semantic": ((1, 6), {"q": 0.03, "v": 0.10, "mse": 0.06, "phi": 0.03, "theta": 0.05})}
    for branch, (picks, tol) in cases.items():
        rows = [ref[branch][i] for i in picks]
        ds = derive.solve("positional-semantic", alpha=np.array([r["alpha"] for r in rows]), omega=0.3,
                          sigma=0.5, lam=0.01, branch=branch, quad_rtol=None, n_quad=4096)
        assert bool(ds.converged.all())
        for i, r in enumerate(rows):
            for k, t in tol.items():
                rk = {"v": "V", "phi": "Phi"}.get(k, k)
                assert abs(float(ds[k][i]) - r[rk]) <= t * abs(r[rk]), (branch, k, float(ds[k][i]), r[rk])


@pytest.mark.slow
def test_theory_vs_simulation_trend():
    """Check 3: the finite-d trainer (independent code) approaches the theory as d grows, at
    α = 1.5, ω = 0.3 on both branches (6 seeds per d). At d = 1600 every observable (q, m or θ,
    MSE, risk/d) is within 3 % and within 4 standard errors of the theory, and the largest gap
    is smaller than at d = 100. (The earlier form, 3 seeds and 8 % at d = 400 on the largest of
    four gaps, failed by chance: q alone has a 3 % standard error there; measured 2026-12-03:
    largest gap 9.2 %, 3.3 %, 2.1 % at d = 100, 400, 1600 on the positional branch.)"""
    from numerics.simulate.positional_semantic import run

    th = {b: derive.solve("positional-semantic", alpha=np.array([1.5]), omega=0.3, sigma=0.5, lam=0.01,
                          branch=b, quad_rtol=None, n_quad=4096) for b in ("positional", "semantic")}
    for branch, key in (("positional", "m"), ("semantic", "theta")):
        t = {"q": float(th[branch].q[0]), key: float(th[branch][key][0]), "mse": float(th[branch].mse[0]),
             "risk_per_d": -float(th[branch].phi[0])}
        gaps = {}
        for d in (100, 1600):
            rows = [run(d, 1.5, branch, seed=s) for s in range(6)]
            vals = {k: np.array([r[k] for r in rows]) for k in t}
            rel = {k: abs(v.mean() - t[k]) / abs(t[k]) for k, v in vals.items()}
            gaps[d] = max(rel.values())
            if d == 1600:
                for k, v in vals.items():
                    sem = v.std(ddof=1) / np.sqrt(v.size)
                    assert rel[k] < 0.03, (branch, k, rel[k])
                    assert abs(v.mean() - t[k]) < 4 * sem + 1e-3 * abs(t[k]), (branch, k, v.mean(), t[k], sem)
        assert gaps[1600] < gaps[100], (branch, gaps)


@pytest.mark.slow
def test_derivation_script_end_to_end(tmp_path):
    """The reproduction script writes its figures, tables and summary (tiny configuration)."""
    from derivations.positional_semantic import Config, main

    cfg = Config(n_quad=512, alphas=(0.6, 1.6), pd_alphas=(0.6, 2.0), pd_omegas=(0.3,), sim_alphas=(1.5,),
                 sim_dims=(60,), sim_seeds=2, replicas=2, rank2_alphas=(1.5,))
    files = main(tmp_path, config=cfg, echo=lambda *a: None)
    names = {f.name for f in files}
    assert {"branches_omega0.3.png", "phase_diagram.png", "simulations.png", "summary.md"} <= names
    assert all(f.exists() and f.stat().st_size > 0 for f in files)
    assert "α_c(ω=0.3)" in (tmp_path / "summary.md").read_text()


def test_cli_solve_with_branch_option(tmp_path):
    from typer.testing import CliRunner

    from derive.cli import app

    out = tmp_path / "ps.nc"
    res = CliRunner().invoke(app, ["solve", "positional-semantic", "--alpha", "2", "--omega", "0.3", "--sigma",
                                   "0.5", "--lam", "0.01", "--branch", "semantic", "--n-quad", "512", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.exists() and "1/1 points converged" in res.output
    bad = CliRunner().invoke(app, ["solve", "positional-semantic", "--alpha", "2", "--omega", "1.5", "--sigma",
                                   "0.5", "--lam", "0.01"])
    assert bad.exit_code != 0 and "omega" in bad.output


# -- public science API, error estimates, phase diagram (issue 12) ---------------------------------
def test_envelope_conjugates_equal_stein_on_positional_branch():
    """On the positional branch (θ = 0) the envelope integrands of q̂, m̂, V̂ equal the stated ones
    node by node (∂_V M = −|r|²/V², ∂_m M = −2(r₁−r₂)/V, ∂_q M = ∂_h M·ξ/(2√q) there) and θ̂ vanishes
    by the w-flip in both forms: the two ``hats`` options give the same fixed point to round-off."""
    a = MODEL.solve_pairs([1.0], 0.3, "positional", quad_rtol=None, n_quad=128, replicas=2, hats="stein")
    b = MODEL.solve_pairs([1.0], 0.3, "positional", quad_rtol=None, n_quad=128, replicas=2, hats="envelope")
    assert bool(a["converged"][0]) and bool(b["converged"][0])
    for k in ("q", "m", "v", "mse", "phi"):
        assert abs(float(a[k][0]) - float(b[k][0])) <= 1e-8 * abs(float(a[k][0])), k
    assert abs(float(b["theta"][0])) <= 1e-12  # zero up to the summation order of the closed rule


def test_quadrature_error_bar_shrinks_and_covers_refinement():
    """The replica error bar of the fixed point shrinks under refinement (128 → 1024 points per
    scramble) and covers the change of the value (the coarse error bar is not optimistic)."""
    lo = MODEL.solve_pairs([1.0], 0.3, "positional", quad_rtol=None, n_quad=128, replicas=4)
    hi = MODEL.solve_pairs([1.0], 0.3, "positional", quad_rtol=None, n_quad=1024, replicas=4, seed=50)
    assert bool(lo["converged"][0]) and bool(hi["converged"][0])
    assert float(hi["quad_error"][0]) < 0.5 * float(lo["quad_error"][0])
    for k in ("q", "m", "v", "mse", "phi"):
        d = abs(float(lo[k][0]) - float(hi[k][0]))
        assert d <= 4 * np.hypot(float(lo[f"{k}_err"][0]), float(hi[f"{k}_err"][0])), k


def test_sign_crossing_and_branch_ends_known_answers():
    """numerics.saddle.sign_crossing / branch_ends on a synthetic grid with known crossings."""
    from numerics.saddle import branch_ends, sign_crossing

    al = np.linspace(0.0, 1.0, 11)
    d = np.stack([al - 0.33, 0.5 * (al - 0.71), al + 1.0], axis=1)  # roots 0.33, 0.71, none
    on = np.ones_like(d, dtype=bool)
    root, err, at_end = sign_crossing(al, d, np.full_like(d, 1e-3), on, on)
    assert np.allclose(root[:2], [0.33, 0.71]) and np.isnan(root[2])
    assert np.allclose(err[:2], [1e-3, 2e-3]) and not at_end.any()
    # the second branch starts at 0.5 with d > 0: the crossing is the branch end
    sec = al[:, None] >= 0.5 + np.zeros((1, 3))
    root, err, at_end = sign_crossing(al, np.ones_like(d), np.zeros_like(d), sec & on, sec)
    assert np.allclose(root, 0.45) and np.allclose(err, 0.05) and at_end.all()
    last, first = branch_ends(al, al[:, None] <= 0.62 + np.zeros((1, 2)), sec[:, :2])
    assert np.allclose(last, 0.6) and np.allclose(first, 0.5)


def test_phase_diagram_small_grid_public_api():
    """The model's phase_diagram on a 3 × 2 grid: both branches by continuation, α_c where the
    Φ difference changes sign between grid points where both exist."""
    pd = MODEL.phase_diagram([0.9, 1.2, 1.5], [0.25, 0.3], quad_rtol=None, n_quad=128, replicas=2)
    pos, sem = pd["positional"], pd["semantic"]
    assert pos["phi"].shape == (3, 2) and sem["on_branch"].shape == (3, 2)
    assert pos["on_branch"][0].all() and sem["on_branch"][-1].all()
    d = sem["phi"] - pos["phi"]
    for j in range(2):
        if np.isfinite(pd["alpha_c"][j]) and not pd["alpha_c_at_branch_end"][j]:
            i = np.searchsorted(pd["alphas"], pd["alpha_c"][j])
            assert d[i - 1, j] < 0 <= d[i, j]
    assert np.all(np.isfinite(pd["alpha_c"]))


ALPHA_C_CSV = "tests/data/positional_semantic_alpha_c.csv"


@pytest.mark.slow
def test_alpha_c_reproduces_recorded_table_within_error_bars():
    """α_c(ω) recomputed at three ω (bisection, the recorded settings) stays within the recorded
    quadrature error bar (tests/data/positional_semantic_alpha_c.csv, written by
    ``python derivations/positional_semantic.py --alpha-c-from ...``)."""
    from pathlib import Path

    from derivations.positional_semantic import read_alpha_c_table

    path = Path(__file__).resolve().parent.parent / ALPHA_C_CSV
    tab = read_alpha_c_table(path)
    prov = path.read_text().splitlines()[0]
    import re

    n_quad = int(re.search(r"'n_quad': (\d+)", prov).group(1))
    replicas = int(re.search(r"'replicas': (\d+)", prov).group(1))
    ok = np.isfinite(tab["alpha_c"])
    pick = np.nonzero(ok)[0][[0, ok.sum() // 2, -1]]
    om, ac, err = tab["omega"][pick], tab["alpha_c"][pick], tab["alpha_c_err"][pick]
    hats = prov.split("'hats': '")[1].split("'")[0] if "'hats'" in prov else "stein"  # recorded: §4 forms
    starts = None
    if "pos_q" in tab:  # recorded with each branch continued from the phase diagram's states
        starts = {b: np.stack([tab[f"{b[:3]}_{k}"][pick] for k in ("q", "m", "v", "theta")], axis=1)
                  for b in ("positional", "semantic")}
    if "critical_alpha_scan" in prov:  # the local scan: recomputed across the recorded bracket, both errors
        r = MODEL.critical_alpha_scan(om, 0.5 * (tab["bracket_lo"][pick] + tab["bracket_hi"][pick]), half_width=0.04,
                                      quad_rtol=None, n_quad=n_quad, replicas=replicas, hats=hats, starts=starts)
        assert np.all(np.isfinite(r["alpha_c"]))
        assert np.all(np.abs(r["alpha_c"] - ac) <= 2 * np.hypot(err, r["error"])), (r["alpha_c"], ac, err)
        return
    tol = float(re.search(r"tol ([0-9.e-]+)\)", prov).group(1)) if "tol " in prov else 2e-3
    res = MODEL.critical_alpha(om, tab["bracket_lo"][pick], tab["bracket_hi"][pick], tol=tol,
                               quad_rtol=None, n_quad=n_quad, replicas=replicas, hats=hats, starts=starts)
    assert bool(np.all(res.converged))
    assert np.all(np.abs(res.root - ac) <= err + tol), (res.root, ac, err)
