"""Tests of the finite-size ICL linear-attention simulator (numerics/simulate/icl_linear_attention.py).

Checks: the O(d) sampler and the direct token sampler against the exact moment identities
of spec §1.5 and against each other (two-sample tests); agreement of the ridge solvers;
Monte-Carlo test error against the exact §1.5 formula; input validation; seeding.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from numerics.simulate.icl_linear_attention import (
    CGNotConvergedError,
    ICLSimulation,
    exact_test_error,
    mc_test_error,
    problem_sizes,
    sample_contexts,
    sample_h_direct,
    sample_h_fast,
    sample_tasks,
    simulate,
    solve_ridge,
)

REF_PATH = Path(__file__).resolve().parent / "data" / "reference" / "icl_linear_attention.json"


# --------------------------------------------------------------------------- helpers

def _exact_moments(w: np.ndarray, ell: int, rho: float) -> list[tuple[str, callable, float]]:
    """(name, statistic of H, exact conditional expectation) from spec §1.5 (‖w‖² = d)."""
    d = w.size
    a1 = 1.0 + rho
    out = []
    for i in range(d):
        out.append((f"v{i}", lambda H, i=i: H[:, i], w[i]))
    out.append(("s", lambda H: H[:, d], a1))
    for i in range(d):
        for j in range(i, d):
            ex = (1.0 + 1.0 / ell) * w[i] * w[j] + (a1 * d / ell if i == j else 0.0)
            out.append((f"v{i}v{j}", lambda H, i=i, j=j: H[:, i] * H[:, j], ex))
        out.append((f"v{i}s", lambda H, i=i: H[:, i] * H[:, d], a1 * (1.0 + 2.0 / ell) * w[i]))
    out.append(("s2", lambda H: H[:, d] ** 2, a1 * a1 * (1.0 + 2.0 / ell)))
    return out


def _max_z(H: np.ndarray, w: np.ndarray, ell: int, rho: float) -> tuple[float, str]:
    worst, name_w = 0.0, ""
    N = H.shape[0]
    for name, f, ex in _exact_moments(w, ell, rho):
        vals = f(H)
        z = abs(vals.mean() - ex) / (vals.std(ddof=1) / math.sqrt(N))
        if z > worst:
            worst, name_w = z, name
    return worst, name_w


def _problem(d: int, tau: float, alpha: float, kappa: float, rho: float, seed: int = 0):
    sz = problem_sizes(d, tau, alpha, kappa)
    rng = np.random.default_rng(seed)
    pool = sample_tasks(rng, sz["k"], d)
    W = pool[np.arange(sz["n"]) // (sz["n"] // sz["k"])]
    X, H, y = sample_contexts(rng, W, sz["ell"], rho)
    return sz, pool, X, H, y


# --------------------------------------------------------------------------- sampler

@pytest.mark.parametrize("sampler", ["fast", "direct"])
@pytest.mark.parametrize("rho,ell", [(0.5, 4), (0.0, 3), (0.2, 1)])
def test_sampler_moments_match_exact_identities(sampler, rho, ell):
    """E[v|w]=w, E[s|w]=1+ρ, E[vvᵀ|w]=(1+1/ℓ)wwᵀ+(1+ρ)/α I, E[vs|w], E[s²|w] (spec §1.5)."""
    d, N = 5, 100_000
    rng = np.random.default_rng(123 + ell)
    w = sample_tasks(rng, 1, d)[0]
    W = np.broadcast_to(w, (N, d))
    fn = sample_h_fast if sampler == "fast" else sample_h_direct
    H = fn(rng, np.ascontiguousarray(W), ell, rho)
    # 27 statistics: a false alarm at |z| > 4.5 has probability ~ 27 * 7e-6
    z, name = _max_z(H, w, ell, rho)
    assert z < 4.5, f"{sampler}: moment {name} off by {z:.2f} MC standard errors"


def test_fast_and_direct_samplers_agree_in_distribution():
    """Two-sample KS tests on several projections and z-tests on higher moments."""
    d, ell, rho, N = 6, 7, 0.3, 60_000
    rng = np.random.default_rng(7)
    w = sample_tasks(rng, 1, d)[0]
    u = w / np.linalg.norm(w)
    W = np.ascontiguousarray(np.broadcast_to(w, (N, d)))
    Hf = sample_h_fast(np.random.default_rng(1), W, ell, rho)
    Hd = sample_h_direct(np.random.default_rng(2), W, ell, rho)

    def proj(H):
        v, s = H[:, :d], H[:, d]
        par = v @ u
        perp2 = np.sum(v * v, axis=1) - par ** 2
        return {"s": s, "u.v": par, "|Pv|^2": perp2, "v0": v[:, 0], "v.s": par * s,
                "v1v2": v[:, 1] * v[:, 2]}

    pf, pd = proj(Hf), proj(Hd)
    for key in pf:
        pval = stats.ks_2samp(pf[key], pd[key]).pvalue
        assert pval > 1e-4, f"KS test on {key}: p = {pval:.2e}"
    for key, f in {"s^3": lambda p: p["s"] ** 3, "(u.v)^3": lambda p: p["u.v"] ** 3,
                   "|Pv|^4": lambda p: p["|Pv|^2"] ** 2, "(u.v)^2 s": lambda p: p["u.v"] ** 2 * p["s"]}.items():
        a, b = f(pf), f(pd)
        z = abs(a.mean() - b.mean()) / math.sqrt(a.var(ddof=1) / N + b.var(ddof=1) / N)
        assert z < 4.5, f"higher moment {key}: fast vs direct differ by {z:.2f} sigma"


def test_tasks_on_sphere_and_sizes():
    rng = np.random.default_rng(0)
    W = sample_tasks(rng, 50, 9)
    np.testing.assert_allclose(np.sum(W * W, axis=1), 9.0, rtol=1e-12)
    sz = problem_sizes(32, 2.0, 10.0, 0.5)
    assert sz == {"d": 32, "ell": 320, "k": 16, "n": 2048, "p": 1056}
    sz = problem_sizes(10, 0.5, 1.0, math.inf)
    assert sz["n"] == 50 and sz["k"] == 50
    sz = problem_sizes(10, 0.01, 1.0, 3.0)  # fewer contexts than tasks: each task once
    assert sz["k"] == 30 and sz["n"] == 30


# --------------------------------------------------------------------------- solvers

@pytest.mark.parametrize("tau,lam", [(0.5, 1e-3), (2.0, 1e-3), (3.0, 0.5)])
def test_ridge_solvers_agree(tau, lam):
    sz, _, X, H, y = _problem(d=10, tau=tau, alpha=3.0, kappa=0.6, rho=0.05, seed=3)
    sols = {s: solve_ridge(X, H, y, lam, solver=s, rtol=1e-13, maxiter=20_000)
            for s in ("primal", "dual", "pcg", "dual_cg")}
    ref = sols["primal"].gamma
    assert ref.shape == (10, 11)
    for name, sol in sols.items():
        rel = np.linalg.norm(sol.gamma - ref) / np.linalg.norm(ref)
        assert rel < 1e-8, f"{name} differs from primal by {rel:.2e}"
        assert sol.residual < 1e-9, f"{name}: normal-equation residual {sol.residual:.2e}"
    assert sols["pcg"].iterations > 0 and sols["primal"].iterations == 0
    expected_auto = "primal"  # p = 110 <= 2500
    assert solve_ridge(X, H, y, lam).solver == expected_auto
    assert solve_ridge(X, H, y, lam, dense_max_p=10).solver == ("dual" if sz["n"] < sz["p"] else "pcg")


def test_ridgeless_interpolation_uses_min_norm_dual():
    sz, _, X, H, y = _problem(d=10, tau=0.5, alpha=3.0, kappa=0.6, rho=0.05, seed=4)
    assert sz["n"] < sz["p"]
    sol = solve_ridge(X, H, y, 0.0)
    assert sol.solver == "dual"
    fit = np.sum((X @ sol.gamma) * H, axis=1)
    np.testing.assert_allclose(fit, y, rtol=0, atol=1e-8 * np.abs(y).max())
    # min norm: equals the pseudo-inverse solution
    Phi = (X[:, :, None] * H[:, None, :]).reshape(sz["n"], -1)
    np.testing.assert_allclose(sol.gamma.ravel(), np.linalg.pinv(Phi) @ y, rtol=1e-6, atol=1e-9)
    sol_cg = solve_ridge(X, H, y, 0.0, solver="dual_cg", rtol=1e-12, maxiter=50_000)
    assert np.linalg.norm(sol_cg.gamma - sol.gamma) / np.linalg.norm(sol.gamma) < 1e-6
    for bad in ("primal", "pcg"):
        with pytest.raises(ValueError, match="lam=0"):
            solve_ridge(X, H, y, 0.0, solver=bad)


def test_pcg_flags_non_convergence():
    _, _, X, H, y = _problem(d=10, tau=2.0, alpha=3.0, kappa=0.6, rho=0.05, seed=5)
    with pytest.raises(CGNotConvergedError, match="did not converge"):
        solve_ridge(X, H, y, 1e-5, solver="pcg", maxiter=2)


# --------------------------------------------------------------------------- test errors

@pytest.mark.parametrize("kappa", [0.5, math.inf])
def test_mc_test_error_matches_exact_formula(kappa):
    d, rho = 8, 0.3
    sz, pool, X, H, y = _problem(d=d, tau=2.0, alpha=2.0, kappa=kappa, rho=rho, seed=11)
    G = solve_ridge(X, H, y, 1e-3).gamma
    ell = sz["ell"]
    ex_icl = exact_test_error(G, np.zeros(d), np.eye(d), ell, rho)
    ex_idg = exact_test_error(G, pool.mean(axis=0), pool.T @ pool / pool.shape[0], ell, rho)
    rng = np.random.default_rng(99)
    for method, n_test in (("fast", 300_000), ("direct", 100_000)):
        m, se = mc_test_error(G, rng, n_test, ell, rho, method=method)
        assert abs(m - ex_icl) < 4 * se, f"ICL {method}: MC {m:.5f}±{se:.5f} vs exact {ex_icl:.5f}"
        m, se = mc_test_error(G, rng, n_test, ell, rho, pool=pool, method=method)
        assert abs(m - ex_idg) < 4 * se, f"IDG {method}: MC {m:.5f}±{se:.5f} vs exact {ex_idg:.5f}"


def test_exact_formula_special_cases():
    """Γ = 0 gives 1+ρ; the optimum for R=I over the v-block is (1+1/ℓ+(1+ρ)/α)⁻¹ I."""
    d, ell, rho = 6, 12, 0.2
    assert exact_test_error(np.zeros((d, d + 1)), np.zeros(d), np.eye(d), ell, rho) == pytest.approx(1 + rho)
    c = 1.0 / (1.0 + 1.0 / ell + (1 + rho) * d / ell)
    G = np.zeros((d, d + 1))
    G[:, :d] = c * np.eye(d)
    assert exact_test_error(G, np.zeros(d), np.eye(d), ell, rho) == pytest.approx(1 + rho - c, rel=1e-12)


# --------------------------------------------------------------------------- driver

def test_simulate_result_and_exact_vs_mc():
    r = simulate(d=8, tau=2.0, alpha=2.0, kappa=0.5, rho=0.1, lam=1e-3, trials=3, seed=5, n_test=20_000)
    assert isinstance(r, ICLSimulation)
    assert (r.d, r.ell, r.k, r.n, r.p) == (8, 16, 4, 128, 72)
    assert r.tau_eff == pytest.approx(128 / 72)
    for name in ("e_icl", "e_idg", "e_train", "e_icl_exact", "e_idg_exact", "e_icl_mc_se", "seconds"):
        arr = getattr(r, name)
        assert isinstance(arr, np.ndarray) and arr.shape == (3,) and np.all(np.isfinite(arr))
    z = np.abs(r.e_icl - r.e_icl_exact) / r.e_icl_mc_se
    assert np.all(z < 5)
    z = np.abs(r.e_idg - r.e_idg_exact) / r.e_idg_mc_se
    assert np.all(z < 5)
    assert np.all(r.e_train < r.e_idg_exact)
    assert r.mean("e_icl") == pytest.approx(np.mean(r.e_icl))
    assert r.sem("e_icl") == pytest.approx(np.std(r.e_icl, ddof=1) / math.sqrt(3))
    summ = r.summary()
    assert summ["n"] == 128 and summ["solver"] == ["primal"]
    assert set(summ["e_icl_exact"]) == {"mean", "sem"}
    with pytest.raises(ValueError, match="unknown quantity"):
        r.mean("bogus")
    r_exact = simulate(d=8, tau=2.0, alpha=2.0, kappa=0.5, rho=0.1, lam=1e-3, trials=1, seed=5,
                       test_error="exact")
    assert np.isnan(r_exact.e_icl[0]) and np.isfinite(r_exact.e_icl_exact[0])
    assert r_exact.e_icl_exact[0] == r.e_icl_exact[0]  # the fit does not depend on the MC stream


def test_simulate_ridgeless_interpolation_and_kappa_inf():
    r = simulate(d=8, tau=0.5, alpha=2.0, kappa=math.inf, rho=0.1, lam=0.0, trials=1, n_test=2000)
    assert r.solver == ("dual",) and r.k == r.n == 32
    assert r.e_train[0] < 1e-15
    r = simulate(d=6, tau=3.0, alpha=2.0, kappa=math.inf, rho=0.0, lam=0.0, trials=1, n_test=2000)
    assert r.solver == ("primal",) and np.isfinite(r.e_icl_exact[0])


def test_seed_reproducibility_and_trial_independence():
    kw = dict(d=6, tau=1.5, alpha=2.0, kappa=1.0, rho=0.1, lam=1e-2, n_test=500)
    a = simulate(trials=3, seed=42, **kw)
    b = simulate(trials=3, seed=42, **kw)
    c = simulate(trials=2, seed=42, **kw)
    d_ = simulate(trials=3, seed=43, **kw)
    for name in ("e_icl", "e_idg", "e_train", "e_icl_exact", "e_idg_exact"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        # trial t uses SeedSequence(seed).spawn(trials)[t], independent of `trials`
        np.testing.assert_array_equal(getattr(a, name)[:2], getattr(c, name))
        assert not np.any(getattr(a, name) == getattr(d_, name))
    assert len(set(a.e_icl_exact)) == 3


BAD_INPUTS = [
    ("d", 1), ("d", 2.5), ("d", True), ("d", "8"),
    ("tau", 0.0), ("tau", -1.0), ("tau", float("nan")), ("tau", float("inf")),
    ("alpha", 0.0), ("alpha", float("nan")), ("alpha", float("inf")),
    ("kappa", 0.0), ("kappa", -1.0), ("kappa", float("nan")), ("kappa", float("-inf")),
    ("rho", -0.1), ("rho", float("nan")), ("rho", float("inf")),
    ("lam", -1e-3), ("lam", float("nan")),
    ("trials", 0), ("trials", 1.5),
    ("n_test", 1),
    ("seed", -1),
    ("solver", "cholesky"), ("test_error", "bogus"),
]


@pytest.mark.parametrize("name,value", BAD_INPUTS)
def test_input_validation(name, value):
    kw = dict(d=4, tau=1.0, alpha=1.0, kappa=1.0, rho=0.1, lam=0.1, trials=1, n_test=10)
    kw[name] = value
    with pytest.raises(ValueError) as exc:
        simulate(**kw)
    msg = str(exc.value)
    assert name in msg and repr(value) in msg


def test_input_validation_sizes():
    with pytest.raises(ValueError, match="alpha"):
        simulate(d=4, tau=1.0, alpha=0.1, kappa=1.0, rho=0.1, lam=0.1)
    with pytest.raises(ValueError, match="kappa"):
        simulate(d=4, tau=1.0, alpha=1.0, kappa=0.1, rho=0.1, lam=0.1)


# --------------------------------------------------------------------------- reference

@pytest.mark.slow
@pytest.mark.parametrize("label", ["P07", "P13"])
def test_matches_authors_fast_simulator_d32(label):
    """Trials mean of the exact test errors vs the authors' fast simulator at d = 32 (spec §4)."""
    ref = json.loads(REF_PATH.read_text())  # in the repository: a missing file fails
    point = next(p for p in ref["points"] if p["label"] == label)
    prm = point["params"]
    sim = point["simulations"]["authors_fast_d32"]
    trials = 10
    r = simulate(d=sim["d"], tau=prm["tau"], alpha=prm["alpha"], kappa=float(prm["kappa"]),
                 rho=prm["rho"], lam=sim["lam"], trials=trials, seed=2024, test_error="exact")
    for ours, key in (("e_icl_exact", "icl"), ("e_idg_exact", "idg")):
        m_ref, s_ref, n_ref = sim[f"{key}_mean"], sim[f"{key}_std"], sim["numavg"]
        sigma = math.sqrt(s_ref ** 2 / n_ref + r.sem(ours) ** 2)
        z = (r.mean(ours) - m_ref) / sigma
        assert abs(z) < 4, f"{label} {key}: ours {r.mean(ours):.5f}±{r.sem(ours):.5f}, " \
                           f"authors {m_ref:.5f}±{s_ref / math.sqrt(n_ref):.5f} (z = {z:.2f})"


@pytest.mark.gpu
def test_cupy_backend_matches_numpy():
    """Randomness is drawn on the host, so both backends see identical data."""
    from numerics.backend import available_backends

    if "cupy" not in available_backends():
        pytest.skip("CuPy / CUDA device not available")
    kw = dict(d=12, tau=2.0, alpha=3.0, kappa=0.5, rho=0.1, lam=1e-3, trials=2, seed=1, n_test=2000)
    a = simulate(backend="numpy", **kw)
    b = simulate(backend="cupy", **kw)
    assert b.backend == "cupy"
    for name in ("e_icl", "e_idg", "e_train", "e_icl_exact", "e_idg_exact"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-8)
