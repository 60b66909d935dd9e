"""sparse-token: theory vs finite-size simulation (check 3).

Fast tests use small sizes; the ``slow`` ones reproduce the trend in d recorded in
``tests/data/sparse_token_sim_trend.md`` (alignment at d = 400, 1000, 2000; separability
scans with the transition sharpening as d grows).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import derive
from numerics.simulate import sparse_token as sim

MODEL = derive.models.get("sparse-token")
FIG = dict(L=10, R=3, pi=0.2, theta=6.0, beta=1.0, eta_w=0.5, eta_q=0.5)  # alignment figure


def theory(**kw):
    p = dict(FIG, alpha0=1.0, b1=0.0, loss=0)
    p.update(kw)
    return derive.solve("sparse-token", **p)


def _mean_se(v):
    v = np.asarray(v, dtype=float)
    return v.mean(), v.std(ddof=1) / math.sqrt(v.size)


def test_simulator_data_model():
    """The sampler puts theta on exactly R random tokens of positives, along xi = e_1."""
    rng = np.random.default_rng(0)
    X, y = sim.sample(4000, 5, L=6, R=2, pi=0.3, theta=50.0, rng=rng)
    assert abs((y > 0).mean() - 0.3) < 0.03
    big = X[:, :, 0] > 25
    np.testing.assert_array_equal(big.sum(axis=1), np.where(y > 0, 2, 0))
    # positions are uniform over the L tokens
    assert np.all(np.abs(big[y > 0].mean(axis=0) - 2 / 6) < 0.05)
    with pytest.raises(ValueError, match="R = 7"):
        sim.sample(3, 5, L=6, R=7, pi=0.3, theta=1.0, rng=rng)


@pytest.mark.parametrize("alpha0, b1", [(1.0, math.log(0.25)), (2.0, 0.0)])
def test_alignment_d400(alpha0, b1):
    """cos(q2, xi), cos(w1, xi) and |q2| at d = 400 (10 trials) within 3 standard errors
    (+ 1% for the O(1/sqrt d) finite-size bias) of the two-step theory."""
    th = theory(alpha0=alpha0, b1=b1)
    r = [sim.simulate_alignment(d=400, alpha0=alpha0, b1=b1, seed=s, **FIG) for s in range(10)]
    for name in ("s_q", "cos_w", "q_norm"):
        m, se = _mean_se([getattr(x, name) for x in r])
        t = float(th[name])
        assert abs(m - t) <= 3 * se + 0.01 * abs(t), (name, m, se, t)


def test_alignment_square_loss_d400():
    th = theory(alpha0=2.0, b1=0.0, loss=1)
    r = [sim.simulate_alignment(d=400, alpha0=2.0, b1=0.0, loss="square", seed=s, **FIG)
         for s in range(8)]
    for name in ("s_q", "cos_w", "q_norm"):
        m, se = _mean_se([getattr(x, name) for x in r])
        t = float(th[name])
        assert abs(m - t) <= 3 * se + 0.01 * abs(t), (name, m, se, t)


def test_oracle_errors_monte_carlo():
    """Pooled Bayes error and max-detector error vs Monte Carlo of the token scores (2e5
    samples per class); attention at its best finite tau is no worse than the max-detector."""
    for L, R, pi, th in ((10, 1, 0.5, 5.0), (100, 1, 0.5, 3.0), (10, 3, 0.2, 3.0)):
        ds = derive.solve("sparse-token", L=L, R=R, pi=pi, theta=th, beta=1.0, eta_w=1.0,
                          eta_q=1.0, alpha0=1.0, b1=0.0, loss=0)
        mc = sim.oracle_errors_mc(L=L, R=R, pi=pi, theta=th, n=100_000, seed=L)
        # empirical best-threshold errors are biased low by O(n^-1/2): allow 4 se
        assert abs(mc["pooled"] - float(ds.e_pool)) < 4 * mc["pooled_se"] + 1e-3
        assert abs(mc["max_detector"] - float(ds.e_attn_max)) < 4 * mc["max_detector_se"] + 1e-3
        assert mc["attention"] <= float(ds.e_attn_max) + 4 * mc["attention_se"]


def test_cover_separability_small_d():
    """theta = 0, pooled, d = 60: separable well below alpha = 2, not well above."""
    p = sim.separability_scan(d=60, alphas=np.array([1.3, 2.9]), trials=12, L=4, R=1, pi=0.5,
                              theta=0.0, seed=1)
    assert p[0] >= 0.9 and p[1] <= 0.1, p


@pytest.mark.parametrize("features", ["pooled", "attention", "vectorised"])
def test_nnls_separability_agrees_with_lp(features):
    """The NNLS test (certificate either way) gives the max-margin LP's answer on random
    instances on both sides of the transition, and verifies its own certificates."""
    q = np.zeros(30)
    q[0], q[1] = 0.9, math.sqrt(1 - 0.81)
    for t in range(12):
        rng = np.random.default_rng([9, t])
        alpha = (1.5 + 0.25 * t) * (4 if features == "vectorised" else 1)
        d = 30 if features != "vectorised" else 12
        X, y = sim.sample(int(alpha * d), d, 4, 1, 0.5, 3.0 * (t % 2), rng)
        F = sim._features(X, features, q[:d] if features == "attention" else None)
        sep, info = sim.separable_nnls(F, y, lp_fallback=False)
        assert sep == sim.separable(F, y), (features, t)
        if sep:
            assert np.all(y * (F @ info["w"] + info["b"]) > 0)
        else:
            lam = info["lam"]
            assert lam.min() >= 0 and lam.sum() > 0.5
            G = y[:, None] * np.hstack([F, np.ones((len(y), 1))])
            assert np.linalg.norm(G.T @ lam) < 1e-9 * lam.sum()


def test_critical_alpha_bracket_is_exact():
    """The bracket [lo, hi) of the nested bisection: first lo rows separable, first hi rows
    not (checked by the LP), hi - lo within the tolerance."""
    X, y = sim.sample(400, 100, 4, 1, 0.5, 3.0, np.random.default_rng(4))
    F = sim.pooled_features(X)
    r = sim.critical_alpha(F, y, 100, n0=200, rel_tol=0.005)
    assert not r["censored"] and r["hi"] - 1 - r["lo"] <= 1
    assert sim.separable(F[:r["lo"]], y[:r["lo"]])
    assert not sim.separable(F[:r["hi"]], y[:r["hi"]])
    assert 2.0 < r["alpha_c"] < 4.0  # alpha* = 2.84; sd of alpha_c at d = 100 is ~10%


def test_critical_alpha_cover_exact_finite_d_law():
    """theta = 0: n points in general position in R^d are affinely separable with probability
    P(Bin(n - 1, 1/2) <= d) (Cover 1965, exact at finite d). The per-seed critical alpha of the
    nested bisection reproduces the mean and the spread of that law at d = 50 (40 seeds)."""
    from scipy.stats import binom

    d = 50
    res = sim.critical_alpha_scan(d=d, trials=40, L=4, R=1, pi=0.5, theta=0.0, alpha_star=2.0,
                                  seed=2, rel_tol=0.0)
    assert all(r["hi"] - r["lo"] == 1 for r in res)  # exact n_c
    n = np.arange(d + 1, 6 * d)
    S = binom.cdf(d, n - 1, 0.5)  # P(n_c >= n)
    pn = S[:-1] - S[1:]
    mean = (pn * n[:-1]).sum()
    sd = math.sqrt((pn * n[:-1] ** 2).sum() - mean**2)
    nc = np.array([r["lo"] for r in res], float)
    assert abs(nc.mean() - mean) < 3 * sd / math.sqrt(nc.size), (nc.mean(), mean)
    assert 0.6 < nc.std(ddof=1) / sd < 1.5, (nc.std(ddof=1), sd)


# ------------------------------------------------------------------------ slow: trends in d
ALIGN_GRID = ((400, 10), (1000, 6), (2000, 4))


@pytest.mark.slow
def test_alignment_trend_in_d():
    """|sim - theory| for s_q at alpha0 = 0.5, b1 = 0 shrinks with d and stays within 3 se."""
    th = float(theory(alpha0=0.5)["s_q"])
    gaps = []
    for d, n in ALIGN_GRID:
        m, se = _mean_se([sim.simulate_alignment(d=d, alpha0=0.5, b1=0.0, seed=s, **FIG).s_q
                          for s in range(n)])
        assert abs(m - th) <= 3 * se + 0.01, (d, m, se, th)
        gaps.append(abs(m - th))
    assert gaps[-1] <= gaps[0] + 0.01


def _crossing(alphas, p):
    """alpha where P(separable) crosses 1/2 (linear interpolation)."""
    for i in range(len(p) - 1):
        if p[i] >= 0.5 > p[i + 1]:
            return alphas[i] + (p[i] - 0.5) / (p[i] - p[i + 1]) * (alphas[i + 1] - alphas[i])
    return float("nan")


@pytest.mark.slow
@pytest.mark.parametrize("features, theta, dims", [
    ("pooled", 0.0, (100, 200)),
    ("pooled", 3.0, (100, 200)),
    ("attention", 3.0, (100, 200)),
    ("vectorised", 3.0, (25, 50)),
])
def test_capacity_transition(features, theta, dims):
    """P(separable) at alpha*(1 -+ 20%) tends to 1 / 0 and the 50% crossing is near alpha*."""
    base = dict(L=4, R=1, pi=0.5)
    ds = derive.solve("sparse-token", beta=1.0, eta_w=0.5, eta_q=0.5, alpha0=1.0, b1=0.0,
                      loss=0, theta=theta, **base)
    if features == "attention":
        a_star = MODEL.attention_capacity(theta=theta, beta_q=1.0, s_q=0.9, n_mc=50_000,
                                          n_rep=4, **base)["alpha_attn"]
    else:
        a_star = float(ds.alpha_vec if features == "vectorised" else ds.alpha_pool)
    fr = np.array([0.8, 0.9, 1.0, 1.1, 1.2])
    for d in dims:
        p = sim.separability_scan(d=d, alphas=a_star * fr, trials=20, theta=theta,
                                  features=features, q_overlap=0.9, q_norm_beta=1.0, seed=3,
                                  **base)
        assert p[0] >= 0.8 and p[-1] <= 0.2, (d, p)
        assert abs(_crossing(a_star * fr, p) / a_star - 1) < 0.08, (d, p)


@pytest.mark.slow
def test_critical_alpha_transition_sharpens():
    """Per-seed critical alpha (exact NNLS/LP tests on nested data sets), pooled, theta = 3,
    L = 4: the mean of alpha_c / alpha* is 1 within 3 se, the spread shrinks from d = 100 to
    d = 400 (recorded run to d = 800: tests/data/sparse_token_sim_trend.md)."""
    a_star = float(derive.solve("sparse-token", L=4, R=1, pi=0.5, theta=3.0, beta=1.0, eta_w=0.5,
                                eta_q=0.5, alpha0=1.0, b1=0.0).alpha_pool)
    sds = []
    for d in (100, 400):
        res = sim.critical_alpha_scan(d=d, trials=20, L=4, R=1, pi=0.5, theta=3.0,
                                      alpha_star=a_star, seed=5)
        ac = np.array([r["alpha_c"] for r in res]) / a_star
        assert not any(r["censored"] for r in res)
        m, se = _mean_se(ac)
        assert abs(m - 1) < 3 * se + 0.01, (d, m, se)
        sds.append(ac.std(ddof=1))
    assert sds[1] < sds[0], sds
