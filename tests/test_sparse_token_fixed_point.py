"""sparse-token: the trained-readout RS fixed point through ``derive.solve`` and the fixed-point
model protocol (``state``, ``init``, ``stability``, ``random_states``).

The stability reference is measured independently of ``numerics.phases``: the undamped map is
iterated from a perturbed fixed point and the contraction ratio of successive distances is
compared with the reported leading eigenvalue.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import derive
from derive.models.sparse_token import readout as ro

MODEL = derive.models.get("sparse-token")
BASE = dict(L=10, R=1, pi=0.5, theta=5.0, beta=1.0, eta_w=1.0, eta_q=1.0, alpha0=2.0, b1=0.0)
RO = dict(quantity="readout", classifier="pooled", loss="logistic")


def _solve(**kw):
    return derive.solve("sparse-token", **{**BASE, **RO, **kw})


def test_readout_reachable_through_solve_and_matches_readout_errors():
    a1 = np.array([0.5, 2.0, 8.0])
    ds = _solve(alpha1=a1, lam=1e-2)
    assert bool(ds.converged.all())
    ref = ro.readout_errors(L=10, R=1, pi=0.5, theta=5.0, alpha1=a1, lam=1e-2, loss=0)["pooled"]
    np.testing.assert_allclose(ds.test_error.values, ref["test_error"], rtol=1e-7)
    np.testing.assert_allclose(ds.train_loss.values, ref["train_loss"], rtol=1e-7)
    # the state observables are returned, and the two-step block is still there
    for name in MODEL.state + ("s_q", "alpha_pool", "stability"):
        assert name in ds
    # two_step (default) leaves the readout observables NaN, never silently filled
    d2 = derive.solve("sparse-token", **BASE)
    assert np.isnan(float(d2.test_error)) and bool(d2.converged)
    assert d2.attrs["option_loss"] == "logistic" and d2.attrs["alpha1"] == 2.0


def test_init_at_solution_converges_in_few_iterations():
    a1 = np.array([1.0, 3.0])
    ds = _solve(alpha1=a1, lam=1e-2)
    x = np.stack([ds[nm].values for nm in MODEL.state], axis=1)
    cold = ds.iterations.values
    warm = _solve(alpha1=a1, lam=1e-2, init=x)
    assert bool(warm.converged.all())
    assert np.all(warm.iterations.values <= 3), (warm.iterations.values, cold)
    for nm in MODEL.state:
        np.testing.assert_allclose(warm[nm].values, ds[nm].values, rtol=1e-7, atol=1e-9)
    # a row of NaN uses the default start; a single length-5 start is broadcast
    x2 = x.copy()
    x2[1] = np.nan
    mixed = _solve(alpha1=a1, lam=1e-2, init=x2)
    np.testing.assert_allclose(mixed.test_error.values, ds.test_error.values, rtol=1e-7)
    one = _solve(alpha1=a1, lam=1e-2, init=list(x[0]))
    assert bool(one.converged.all())
    with pytest.raises(ValueError, match="option 'init' must have length 5"):
        _solve(alpha1=a1, lam=1e-2, init=[0.1, 0.2])


def test_stability_matches_contraction_of_the_damped_map():
    a1, lam = np.array([2.0]), 1e-2
    ds = _solve(alpha1=a1, lam=lam, stability=True)
    lead = float(ds.stability.values[0])
    assert bool(ds.converged.all()) and lead < 1.0
    # independent estimate: iterate the damped map x <- (1 - w) x + w F(x) (eigenvalues
    # 1 - w + w lambda; for small w the one with the largest real part dominates) from a
    # perturbed fixed point and read lambda off the contraction ratio
    x = np.stack([ds[nm].values for nm in MODEL.state], axis=1)
    smp = ro.gm_samples(5.0 / math.sqrt(10), 0.5)
    F, _ = ro.readout_map(smp, a1, np.array([lam * 10]), 0.0)  # pooled: ridge lam L
    idx, w = np.arange(1), 0.1
    y = x + 1e-5 * np.array([[1.0, 1.0, 1.0, 0.0, 1.0]])
    dists = []
    for _ in range(120):
        y = (1 - w) * y + w * F(y, idx)
        dists.append(np.max(np.abs(y - x)))
    ratio = (dists[-1] / dists[-41]) ** (1 / 40)
    est = (ratio - (1 - w)) / w
    assert abs(est - lead) < 0.03, (est, lead)


def test_random_states_in_domain():
    s = MODEL.random_states(500, np.random.default_rng(1))
    assert s.shape == (500, len(MODEL.state))
    assert np.all(s[:, 1] > 0) and np.all(s[:, 2] > 0) and np.all(np.isfinite(s))
    # a random start converges to the same (convex: unique) fixed point
    a = _solve(alpha1=np.array([2.0]), lam=1e-2)
    b = _solve(alpha1=np.array([2.0]), lam=1e-2, init=s[:1])
    np.testing.assert_allclose(b.test_error.values, a.test_error.values, rtol=1e-6)


def test_capacity_attention_through_solve():
    ds = derive.solve("sparse-token", quantity="capacity_attention", query=(1e-9, 0.5), L=4, R=1,
                      pi=0.5, theta=3.0, beta=1.0, eta_w=0.5, eta_q=0.5, alpha0=1.0, b1=0.0,
                      n_mc=4000)
    # a query of zero norm is pooling: alpha*_A = alpha*_pool (MC error ~1%)
    assert bool(ds.converged) and abs(float(ds.alpha_attn / ds.alpha_pool) - 1) < 0.03
    with pytest.raises(ValueError, match="option 'query'"):
        derive.solve("sparse-token", quantity="capacity_attention", query=(1.0, 2.0), **BASE)
