"""Check 3 of the architecture: theory = finite-size simulation, within error bars, with the
gap shrinking as d grows (icl-linear-attention; spec shared/specs/icl_linear_attention.md).

The theory is ``derive.solve("icl-linear-attention", ...)``; the simulation is
``numerics.simulate.icl_linear_attention.simulate`` (independent of the theory: no MP law,
no ε equation). The simulated errors are the *exact* test errors of the fitted Γ (spec §1.5,
``e_icl_exact``/``e_idg_exact``) and the training MSE, averaged over independent trials
(fresh pool, data and fit per trial).

How the theory is evaluated. At the simulation's own sizes: τ_eff = n/(d(d+1)) (spec §2.5,
§4), κ = k/d, α = ℓ/d, and the simulation's λ (1e-5 / 1e-6 for the "ridgeless" points), so
that the remaining gap gap(d) = sim − theory is the genuine finite-d correction.

Points (α = 10, ρ = 0.01 throughout):

* A: τ = 2,   κ = 0.5, λ = 1e-5: κ < 1, the large positive e_ICL bias of spec §4;
* B: τ = 10,  κ = 4,   λ = 1e-6: κ > 1, small O(1/d) bias;
* C: τ = 0.5, κ = 0.5, λ = 1:    ridge point; tests the *derived* IDG and train formulas.

Statistics. Every error bar is the standard error of the mean over trials (sem). Trial
counts are small at d = 128, so a sem estimated from T trials is itself uncertain; every
"3σ" below is therefore the two-sided 99.73 % Student-t interval for T − 1 degrees of
freedom, written as 3·σ_eff with σ_eff = sem · t_{T−1}(0.99865)/3 (= sem for T → ∞;
×1.5 for T = 8, ×2.2 for T = 5). This was needed: one measured 8-trial run of e_IDG at
point A, d = 128, had a sample std 3× below the value found from 16 further trials.

Finite-d model. gap(d) = c1/d (+ c0, which must vanish if the theory is the d → ∞ limit).
The coefficients c1 below were MEASURED with a separate high-statistics run (seeds 1000 + d,
and 3000 + d for 16 extra trials of A at d = 128; d ∈ {24, 32, 48, 64, 96, 128};
24–40 trials at d ≤ 48, 4–24 at d ≥ 96), fitted by weighted least squares; the table and
the fits are in tests/data/icl_sim_trend.md. Quoted σ(c1) is the fit error, multiplied by
the Birge ratio sqrt(χ²/dof) where that exceeds 1. The fast tests use independent seeds, so
they are out-of-sample checks of these measured coefficients.

The spec's "~ +5/d" ICL bias at κ < 1 (spec §4) is relative to the theory at the nominal τ;
relative to the theory at τ_eff (which absorbs the n = d(d+1) threshold shift) the measured
coefficient is c1 = 3.72 ± 0.13 at point A. The bias is *shown* (sign, size, 1/d decay,
extrapolation to 0), never absorbed into a loosened tolerance.

P04 (= point A) at d = 32 (issue 13.5). The per-trial e_ICL there is right-skewed, so the
positive bias is judged by a bootstrap p-value (shifted-sample and bootstrap-t) over 200 stored
trials of the authors' protocol (spec §3: tasks on the sphere of radius √d, exact O(d) context
sampler, n = k·round(τd²/k), dense normal equations, exact test errors), not by a Gaussian z
on 16 trials; tests/data/icl_p04_d32_trials.json, numbers in tests/data/icl_sim_trend.md §5.

Runtimes (2 cores; d = 128 dominates: PCG solves with n = 2d² … 10d² contexts). Fast tests
(default CI, d = 32 only): ~12 s on idle cores. Slow tests (``-m slow``, d ∈ {32, 64, 128}):
~3.1 min on idle cores. On cores shared with other jobs, multithreaded OpenBLAS oversubscribes:
measured at load average ~3.5, 40 s / 12.5 min by default vs 15 s / 3.1 min with
``OPENBLAS_NUM_THREADS=1`` (same numbers to the printed digits).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest
from scipy import stats

import derive
from numerics.simulate.icl_linear_attention import simulate

QUANTITIES = ("e_icl", "e_idg", "e_train")
SIM_FIELD = {"e_icl": "e_icl_exact", "e_idg": "e_idg_exact", "e_train": "e_train"}

POINTS = {
    "A": dict(tau=2.0, alpha=10.0, kappa=0.5, rho=0.01, lam=1e-5),
    "B": dict(tau=10.0, alpha=10.0, kappa=4.0, rho=0.01, lam=1e-6),
    "C": dict(tau=0.5, alpha=10.0, kappa=0.5, rho=0.01, lam=1.0),
}

#: Measured finite-d coefficients, gap(d) = c1/d: (c1, σ(c1)), theory at τ_eff.
#: High-statistics WLS fit over d ∈ {24, 32, 48, 64, 96, 128} (tests/data/icl_sim_trend.md);
#: χ²/dof of the pure c1/d fit in brackets (Birge-inflated σ where χ²/dof > 1).
C1 = {
    ("A", "e_icl"): (3.721, 0.130),     # χ² 4.0/5; c0+c1/d fit: c0 = -0.0016 ± 0.0037
    ("A", "e_idg"): (0.1228, 0.0096),   # χ² 3.9/5
    ("A", "e_train"): (-0.0120, 0.0032),  # χ² 4.6/5
    ("B", "e_icl"): (0.1255, 0.0036),   # χ² 5.6/5 (Birge 1.06)
    ("B", "e_idg"): (0.1096, 0.0034),   # χ² 17.7/5 (Birge 1.88; a small c2/d², c2 = 0.53 ± 0.15)
    ("B", "e_train"): (0.0647, 0.0045),  # χ² 3.1/5
    ("C", "e_icl"): (0.130, 0.029),     # χ² 2.1/5
    ("C", "e_idg"): (-0.033, 0.056),    # χ² 0.9/5: no bias resolved (per-trial std ~3 % of e_IDG)
    ("C", "e_train"): (0.0145, 0.0121),  # χ² 6.8/5 (Birge 1.17)
}

# ----------------------------------------------------------------------------- helpers


def t_factor(trials: int) -> float:
    """σ_eff/sem: the 99.73 % two-sided Student-t quantile for ``trials - 1`` dof, over 3."""
    return float(stats.t.ppf(1.0 - 0.00135, trials - 1)) / 3.0


def theory_at(sim, point: str) -> dict[str, float]:
    """Theory at the simulation's sizes: τ_eff = n/(d(d+1)), κ = k/d, α = ℓ/d, same λ and ρ."""
    p = POINTS[point]
    kappa = math.inf if math.isinf(p["kappa"]) else sim.k / sim.d
    ds = derive.solve("icl-linear-attention", tau=sim.tau_eff, alpha=sim.ell / sim.d,
                      kappa=kappa, rho=p["rho"], lam=p["lam"])
    assert bool(ds.converged)
    return {q: float(ds[q]) for q in QUANTITIES}


@lru_cache(maxsize=None)
def run(point: str, d: int, trials: int, seed: int) -> dict:
    """Simulate once per session (cached) and compare with the theory at τ_eff.

    Returns per quantity: mean, sem, sigma (= sem · t_factor), theory, gap = mean − theory.
    """
    sim = simulate(d=d, trials=trials, seed=seed, test_error="exact", **POINTS[point])
    th = theory_at(sim, point)
    out = {"d": d, "trials": trials, "seed": seed, "tau_eff": sim.tau_eff,
           "seconds": float(np.sum(sim.seconds))}
    for q in QUANTITIES:
        mean, sem = sim.mean(SIM_FIELD[q]), sim.sem(SIM_FIELD[q])
        out[q] = {"mean": mean, "sem": sem, "sigma": sem * t_factor(trials),
                  "theory": th[q], "gap": mean - th[q]}
    return out


def fit_gap(ds, gaps, sigmas) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted least squares gap(d) = c0 + c1/d: (params, standard errors, χ²)."""
    x = 1.0 / np.asarray(ds, dtype=float)
    y = np.asarray(gaps, dtype=float)
    w = 1.0 / np.asarray(sigmas, dtype=float) ** 2
    X = np.c_[np.ones_like(x), x]
    cov = np.linalg.inv(X.T @ (w[:, None] * X))
    par = cov @ (X.T @ (w * y))
    chi2 = float(np.sum(w * (y - X @ par) ** 2))
    return par, np.sqrt(np.diag(cov)), chi2


def describe(r: dict, q: str) -> str:
    e = r[q]
    return (f"d={r['d']} T={r['trials']} {q}: sim {e['mean']:.5f} ± {e['sem']:.5f}, "
            f"theory(τ_eff={r['tau_eff']:.4f}) {e['theory']:.5f}, gap {e['gap']:+.5f} "
            f"(d·gap {r['d'] * e['gap']:+.3f}), {r['seconds']:.1f} s")


# ----------------------------------------------------------------------------- fast tests
# d = 32, fresh seeds (4xxxx), i.e. independent of the runs that measured C1. Each quantity
# must match the measured finite-d model: |gap − c1/d| ≤ 3σ_eff(sim) + 3σ(c1)/d.

FAST_D = 32
FAST = {"A": (16, 41032), "B": (10, 42032), "C": (40, 43032)}  # point: (trials, seed)


def _check_model(r: dict, point: str, q: str) -> None:
    c1, sc1 = C1[(point, q)]
    d = r["d"]
    e = r[q]
    pred = c1 / d
    tol = 3.0 * e["sigma"] + 3.0 * sc1 / d
    assert abs(e["gap"] - pred) <= tol, (
        f"{point}: {describe(r, q)}; finite-d model c1/d = {pred:+.5f} (c1 = {c1} ± {sc1}), "
        f"|gap − c1/d| = {abs(e['gap'] - pred):.5f} > {tol:.5f}")


# P04 (= point A) at d = 32: the per-trial e_ICL is skewed (heavy upper tail), so the bias is
# judged by a bootstrap p-value over >= 200 trials, not by a Gaussian z (issue 13.5). The trials
# are stored (tests/data/icl_p04_d32_trials.json: the authors' protocol of spec §3, dense
# normal-equation solve, exact test errors, 200 trials, seed 61032); the slow test reruns them.

P04_TRIALS = "icl_p04_d32_trials.json"
BOOT = 20000


def bootstrap_pvalues(x: np.ndarray, null_mean: float, *, boots: int = BOOT, seed: int = 0
                      ) -> dict[str, float]:
    """Bootstrap tests of H0: E[x] = ``null_mean`` from i.i.d. trials ``x``.

    * ``p_upper`` (one-sided, H1: E[x] > null_mean): the sample is shifted to the null mean and
      resampled with replacement; p = (1 + #{mean* ≥ mean})/(1 + boots).
    * ``p_t_upper`` / ``p_t_two``: bootstrap-t (studentised; second-order accurate for skewed
      data): t* = (mean* − mean)/sem* against t = (mean − null_mean)/sem.
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(boots, n))
    xb = x[idx]
    mb = xb.mean(axis=1)
    sb = xb.std(axis=1, ddof=1) / np.sqrt(n)
    m, s = x.mean(), x.std(ddof=1) / np.sqrt(n)
    shifted = mb - m + null_mean
    t_obs = (m - null_mean) / s
    tb = (mb - m) / sb
    return {"mean": float(m), "sem": float(s), "t": float(t_obs),
            "p_upper": float((1 + np.sum(shifted >= m)) / (1 + boots)),
            "p_t_upper": float((1 + np.sum(tb >= t_obs)) / (1 + boots)),
            "p_t_two": float((1 + np.sum(np.abs(tb) >= abs(t_obs))) / (1 + boots)),
            "skewness": float(stats.skew(x))}


def _p04_stored() -> dict:
    import json
    from pathlib import Path

    return json.loads((Path(__file__).parent / "data" / P04_TRIALS).read_text())


def _p04_theory(tau_eff: float, d: int, k: int, ell: int) -> dict[str, float]:
    p = POINTS["A"]
    ds = derive.solve("icl-linear-attention", tau=tau_eff, alpha=ell / d, kappa=k / d,
                      rho=p["rho"], lam=p["lam"])
    assert bool(ds.converged)
    return {q: float(ds[q]) for q in QUANTITIES}


def test_kappa_below_one_icl_bias_bootstrap_p04():
    """P04 / point A (κ = 0.5) at d = 32, 200 stored trials: e_ICL(sim) > e_ICL(theory at τ_eff)
    with bootstrap p < 1e-3 (no Gaussian assumption), and the excess is consistent with the
    measured finite-d model +3.72/d (two-sided bootstrap-t p > 0.01; measured 0.03 without the
    ±0.13 uncertainty of c1). e_IDG likewise positive. Measured: e_ICL 1.0377 ± 0.0042 against
    0.91239, d·gap = 4.01, no bootstrap resample of 10⁵ reached it (p < 1e-5)."""
    st = _p04_stored()
    assert st["trials"] >= 200 and st["d"] == 32
    th = _p04_theory(st["tau_eff"], st["d"], st["k"], st["ell"])
    b0 = bootstrap_pvalues(st["e_icl"], th["e_icl"])
    assert b0["p_upper"] < 1e-3 and b0["p_t_upper"] < 1e-3, b0
    c1, sc1 = C1[("A", "e_icl")]
    b1 = bootstrap_pvalues(st["e_icl"], th["e_icl"] + c1 / st["d"])
    assert b1["p_t_two"] > 0.01, b1
    bi = bootstrap_pvalues(st["e_idg"], th["e_idg"])
    assert bi["p_t_upper"] < 1e-3, bi


@pytest.mark.slow
def test_p04_d32_rerun_reproduces_stored_trials():
    """Rerun the stored 200-trial P04 simulation (authors' protocol; ≈ 3–15 min on 2 shared
    cores) and require the same per-trial values (same seeds) and the same p-values."""
    st = _p04_stored()
    sim = simulate(d=32, trials=st["trials"], seed=st["seed"], test_error="exact",
                   solver=st["solver"], **POINTS["A"])
    assert np.allclose(sim.e_icl_exact, st["e_icl"], rtol=1e-8)
    assert np.allclose(sim.e_idg_exact, st["e_idg"], rtol=1e-8)


@pytest.mark.parametrize("q", QUANTITIES)
def test_kappa_above_one_matches_theory_at_d32(q):
    """Point B (κ = 4 > 1) at d = 32: all three errors within 3σ of theory + measured c1/d
    (c1 ≈ 0.13 / 0.11 / 0.065, i.e. 3 %, 3 %, 2.3 % at d = 32)."""
    trials, seed = FAST["B"]
    _check_model(run("B", FAST_D, trials, seed), "B", q)


@pytest.mark.parametrize("q", QUANTITIES)
def test_ridge_point_matches_theory_at_d32(q):
    """Point C (λ = 1, τ = 0.5) at d = 32: the derived ridge e_IDG and e_train formulas
    (spec §2.3, [derived+sim]) and e_ICL within 3σ of theory + measured c1/d."""
    trials, seed = FAST["C"]
    _check_model(run("C", FAST_D, trials, seed), "C", q)


# ----------------------------------------------------------------------------- slow tests
# d ∈ {32, 64, 128}; seeds 3x000 + d. Trial counts chosen from the measured per-trial
# spreads so that the trend tests resolve the bias (see each test) within the runtime budget.

SLOW_D = (32, 64, 128)
SLOW_TRIALS = {
    "A": {32: 120, 64: 16, 128: 8},  # 120 at d = 32: the e_IDG trend needs sem(32) ≈ 4e-4
    "B": {32: 20, 64: 8, 128: 5},
    "C": {32: 40, 64: 16, 128: 5},
}
SLOW_SEED = {"A": 31000, "B": 32000, "C": 33000}


def slow_runs(point: str) -> list[dict]:
    return [run(point, d, SLOW_TRIALS[point][d], SLOW_SEED[point] + d) for d in SLOW_D]


#: (point, quantity) whose bias is visible and resolvable between d = 32 and d = 128 at the
#: trial counts above. Expected significance of gap(32) − gap(128) from the measured c1 and
#: per-trial spreads: A e_ICL ~10σ, A e_IDG ~4.5σ, B e_ICL ~10σ, B e_IDG ~10σ (obtained in the
#: test runs, in units of σ_eff: 15.7σ, 4.3σ, 6.4σ, 13.9σ). Not listed:
#: B e_train (c1 = 0.065: the difference is only ~2.6σ here), A e_train (c1 = −0.012, i.e.
#: −1.4 % at d = 32: the 32-vs-128 difference is ~1.5σ) and C (no bias resolved at any d).
#: These are covered by the extrapolation and d = 128 tests below.
TREND_CASES = [("A", "e_icl"), ("A", "e_idg"), ("B", "e_icl"), ("B", "e_idg")]


@pytest.mark.slow
@pytest.mark.parametrize("point,q", TREND_CASES)
def test_gap_shrinks_with_d(point, q):
    """(i) The finite-d bias is positive at d = 32 and smaller at d = 128 by more than
    3σ_eff of the difference; (d·gap stays roughly constant: printed)."""
    runs = slow_runs(point)
    for r in runs:
        print(describe(r, q))
    g32, g128 = runs[0][q], runs[-1][q]
    assert g32["gap"] > 3.0 * g32["sigma"], describe(runs[0], q)
    diff = g32["gap"] - g128["gap"]
    err = math.hypot(g32["sigma"], g128["sigma"])
    assert diff > 3.0 * err, (f"{point} {q}: gap(32) − gap(128) = {diff:.5f} not > 3σ = {3 * err:.5f}; "
                              + describe(runs[0], q) + "; " + describe(runs[-1], q))
    # |gap| itself decreases: the d = 128 gap is below the d = 32 gap also in absolute value
    assert abs(g128["gap"]) < abs(g32["gap"])


@pytest.mark.slow
@pytest.mark.parametrize("point", list(POINTS))
@pytest.mark.parametrize("q", QUANTITIES)
def test_gap_extrapolates_to_zero(point, q):
    """(ii) WLS fit gap(d) = c0 + c1/d over d = 32, 64, 128 (weights 1/σ_eff²): the d → ∞
    intercept c0 is consistent with 0 within 3 of its standard errors — the theory is the
    d → ∞ limit of the simulation. A c2/d² term (measured: consistent with 0 except
    B e_IDG, c2 = 0.53 ± 0.15) shifts c0 by ~ −c2/(32·128) ≈ −1e-4, below σ(c0)."""
    runs = slow_runs(point)
    ds = [r["d"] for r in runs]
    par, err, chi2 = fit_gap(ds, [r[q]["gap"] for r in runs], [r[q]["sigma"] for r in runs])
    c1_hi, sc1_hi = C1[(point, q)]
    print(f"{point} {q}: c0 = {par[0]:+.5f} ± {err[0]:.5f}, c1 = {par[1]:+.4f} ± {err[1]:.4f}, "
          f"χ² = {chi2:.2f}/1; high-statistics c1 = {c1_hi} ± {sc1_hi}")
    for r in runs:
        print("   ", describe(r, q))
    assert abs(par[0]) <= 3.0 * err[0], (
        f"{point} {q}: intercept c0 = {par[0]:+.5f} ± {err[0]:.5f} is not consistent with 0")


#: quantities whose d = 128 agreement must be "within a few %": the bound below must be ≤ 5 %.
#: Not C e_IDG: at the ridge point its per-trial spread is ~2.5 % of e_IDG at d = 128 (pool
#: fluctuations; measured 0.008 at d = 128 vs 0.015 at d = 32), so with 5 trials the 3σ_eff
#: interval alone is ~8 %; it is still required to agree within that interval.
FEW_PERCENT = 0.05
D128_CASES = [("A", "e_idg"), ("A", "e_train"), ("B", "e_idg"), ("B", "e_train"),
              ("C", "e_idg"), ("C", "e_train")]


@pytest.mark.slow
@pytest.mark.parametrize("point,q", D128_CASES)
def test_idg_and_train_at_d128(point, q):
    """(iii) At d = 128, e_IDG and e_train agree with theory: |gap| ≤ 3σ_eff + (|c1| + 3σ(c1))/128
    with the measured c1 (finite-d allowance ≤ 1.2 % of the value), and this bound is ≤ 5 %
    of the theory value (except C e_IDG, see FEW_PERCENT)."""
    r = run(point, 128, SLOW_TRIALS[point][128], SLOW_SEED[point] + 128)
    e = r[q]
    c1, sc1 = C1[(point, q)]
    bound = 3.0 * e["sigma"] + (abs(c1) + 3.0 * sc1) / 128
    rel = abs(e["gap"]) / e["theory"]
    print(f"{point} {q}: {describe(r, q)}; |gap|/theory = {100 * rel:.2f} %, "
          f"bound {100 * bound / e['theory']:.2f} %")
    assert abs(e["gap"]) <= bound, describe(r, q)
    if (point, q) != ("C", "e_idg"):
        assert bound / e["theory"] <= FEW_PERCENT, (point, q, bound / e["theory"])
