"""token-dynamics: integrators (measured orders), energy monotonicity exactly in the
gradient-flow cases (and a counterexample), cluster diagnostics, exact W2."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.special

import derive
from numerics import particles
from numerics.simulate import token_dynamics as sim

M = derive.models.get("token-dynamics")
S = scipy.special


def _rho_after(method, h, T=1.0, b=2.0, nn=6, **kw):
    k = M.velocity_kernel("SA")
    X0 = sim.equiangular_start(nn, nn, 0.0)
    tr = particles.integrate(lambda Y: k(np, S, Y, np.array([b]))["v"], X0, T=T, h=h,
                             method=method, **kw)
    return float(particles.gram(tr.states[-1])[0, 0, 1]), tr


@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_fixed_step_error_and_observed_order(method, order):
    """Time error of rho(T) measured with the closed-form hitting time (independent of the
    integrator): halving h divides it by 2^order (measured 0.98/0.99, 1.96/1.98, 3.95/3.98)."""
    errs = []
    for h in (0.1, 0.05, 0.025):
        r, _ = _rho_after(method, h)
        errs.append(M.equiangular_hitting_time(2.0, 6, "SA", 0.0, r) - 1.0)
    p = np.log2(np.abs(np.array(errs[:-1]) / np.array(errs[1:])))
    assert np.all(np.abs(p - order) < 0.1), (errs, p)


def test_adaptive_dp54_reaches_tolerance():
    k = M.velocity_kernel("SA")
    X0 = sim.equiangular_start(6, 6, 0.0)
    tr = particles.integrate_adaptive(lambda Y: k(np, S, Y, np.array([2.0]))["v"], X0, T=1.0,
                                      rtol=1e-10, atol=1e-12)
    assert tr.converged and tr.steps < 200
    r = float(particles.gram(tr.states[-1])[0, 0, 1])
    assert abs(M.equiangular_hitting_time(2.0, 6, "SA", 0.0, r) - 1.0) < 1e-10


def test_adaptive_flags_exhausted_budget():
    k = M.velocity_kernel("SA")
    X0 = sim.equiangular_start(6, 6, 0.0)
    tr = particles.integrate_adaptive(lambda Y: k(np, S, Y, np.array([2.0]))["v"], X0, T=1.0,
                                      rtol=1e-12, atol=1e-14, max_steps=3)
    assert not tr.converged


def test_exp_map_euler_stays_on_sphere_and_is_first_order():
    r1, tr = _rho_after("euler", 0.05, retraction="exp")
    assert np.abs(np.linalg.norm(tr.states[-1], axis=-1) - 1).max() < 1e-14
    r2, _ = _rho_after("euler", 0.025, retraction="exp")
    e1 = M.equiangular_hitting_time(2.0, 6, "SA", 0.0, r1) - 1
    e2 = M.equiangular_hitting_time(2.0, 6, "SA", 0.0, r2) - 1
    assert abs(np.log2(abs(e1 / e2)) - 1) < 0.1


def test_bad_integrator_options_raise():
    f = lambda Y: Y  # noqa: E731
    X = np.ones((1, 2, 2)) / np.sqrt(2)
    with pytest.raises(ValueError, match="method"):
        particles.step(f, X, 0.1, "rk5")
    with pytest.raises(ValueError, match="retraction"):
        particles.step(f, X, 0.1, "rk4", retraction="exp")
    with pytest.raises(ValueError, match="step h"):
        particles.integrate(f, X, T=1.0, h=0.0)


# ---- energy ---------------------------------------------------------------------------------
def _energy_series(dyn, Q, K, V, d=3, n=16, b=2.0, T=4.0, h=0.01, seed=0):
    rng = np.random.default_rng(seed)
    X = particles.uniform_sphere(rng, (4, n, d))
    bet = np.full(4, b)
    k = M.velocity_kernel(dyn, "general")
    extra = (np.zeros(4),) if dyn == "USA" else ()
    ke = M.tensor_kernel("energy_general")
    A = Q.T @ K
    tr = particles.integrate(lambda Y: k(np, S, Y, bet, Q, K, V, *extra)["v"], X, T=T, h=h,
                             checkpoints=np.arange(0, T + h / 2, h),
                             callback=lambda t, Y: ke(np, S, Y, bet, A)["E"])
    return np.array(tr.states)


def _sym(d=3, seed=1):
    B = np.random.default_rng(seed).standard_normal((d, d))
    return (B + B.T) / 2


@pytest.mark.parametrize("dyn", ["SA", "USA"])
def test_energy_increases_in_the_gradient_case(dyn):
    """Q^T K = A symmetric, V = A: gradient ascent of E (SA in a conformal metric);
    every RK4 step increases E up to round-off (spec §1.4, check 3)."""
    A = _sym()
    E = _energy_series(dyn, np.eye(3), A, A)
    dE = np.diff(E, axis=0)
    assert dE.min() > -1e-12 * np.abs(E).max(), dE.min()
    assert (E[-1] - E[0]).min() > 0


def test_energy_decreases_when_v_is_minus_a():
    A = _sym()
    E = _energy_series("SA", np.eye(3), A, -A)
    assert np.diff(E, axis=0).max() < 1e-12 * np.abs(E).max()


def test_gradient_rate_identity_usa():
    r"""dE/dt = n Σ_i |grad_i E|^2 for USA with V = A (grad_i E = v_i/n): central differences."""
    A = _sym()
    rng = np.random.default_rng(3)
    n = 10
    X = particles.uniform_sphere(rng, (1, n, 3))
    bet = np.array([1.5])
    k = M.velocity_kernel("USA", "general")
    ke = M.tensor_kernel("energy_general")
    f = lambda Y: k(np, S, Y, bet, np.eye(3), A, A, np.zeros(1))["v"]  # noqa: E731
    h = 1e-4
    Ep = ke(np, S, particles.step(f, X, h), bet, A)["E"][0]
    Em = ke(np, S, particles.step(f, X, -h), bet, A)["E"][0]
    v = f(X)
    rate = n * ((v / n) ** 2).sum()
    assert (Ep - Em) / (2 * h) == pytest.approx(rate, rel=1e-7)


def test_energy_not_monotone_for_rotation_v():
    """Counterexample: d = 2, V = J (rotation), Q = K = I is not a gradient flow; the energy
    goes up and down along every trajectory."""
    J = np.array([[0.0, -1.0], [1.0, 0.0]])
    for dyn in ("SA", "USA"):
        E = _energy_series(dyn, np.eye(2), np.eye(2), J, d=2, n=6, b=1.0, T=10.0, h=0.02)
        dE = np.diff(E, axis=0)
        assert np.all((dE < -1e-8).sum(0) > 50) and np.all((dE > 1e-8).sum(0) > 50)


# ---- diagnostics --------------------------------------------------------------------------
def test_cluster_count_and_pair_fraction():
    e = np.eye(3)
    X = np.stack([np.stack([e[0], e[0], e[1], e[2], e[2], e[2]]),
                  np.stack([e[0]] * 6)])
    np.testing.assert_array_equal(particles.cluster_count(X, 0.999), [3, 1])
    np.testing.assert_allclose(particles.pair_fraction(X, 0.999), [(2 + 6) / 30, 1.0])
    # a chain 0.9995-close links transitively into one component
    ang = np.arange(5) * 0.03
    chain = np.stack([np.cos(ang), np.sin(ang), 0 * ang], -1)[None]
    assert int(particles.cluster_count(chain, np.cos(0.031))[0]) == 1


def test_w2_empirical_is_exact():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    best = min(((x - y[list(p)]) ** 2).sum(-1).mean() for p in itertools.permutations(range(6)))
    assert particles.w2_empirical(x, y) == pytest.approx(np.sqrt(best), rel=1e-14)


def test_causal_mask_single_cluster_for_identity_v():
    """Karagodin–Polyanskiy–Rigollet (spec §1.1): with the causal mask and V = I the tokens
    converge to one cluster for arbitrary Q, K (here random Gaussian, 4 systems)."""
    rng = np.random.default_rng(8)
    d, n = 3, 10
    Q, K = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    k = M.velocity_kernel("SA", "general", "sphere", causal=True)
    mask = np.tril(np.ones((n, n)))
    X = particles.uniform_sphere(rng, (4, n, d))
    tr = particles.integrate(lambda Y: k(np, S, Y, np.full(4, 1.0), Q, K, np.eye(d), mask)["v"],
                             X, T=60.0, h=0.1, method="rk4")
    np.testing.assert_array_equal(particles.cluster_count(tr.states[-1], 1 - 1e-6), 1)
    # token 1 attends only to itself: it never moves
    np.testing.assert_allclose(tr.states[-1][:, 0], X[:, 0], atol=1e-14)


def test_hemisphere_start_min_projection_is_nondecreasing():
    """Cone collapse (spec §2.2): if every <x_i(0), w> > 0 then min_i <x_i(t), w> is
    non-decreasing and all tokens end in one cluster (V = I, arbitrary Q, K)."""
    rng = np.random.default_rng(12)
    d, n = 4, 12
    w = np.array([1.0, 0, 0, 0])
    X = particles.uniform_sphere(rng, (3, n, d))
    X[..., 0] = np.abs(X[..., 0]) + 0.05
    X = particles.normalize(X)
    Q, K = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    k = M.velocity_kernel("SA", "general")
    tr = particles.integrate(lambda Y: k(np, S, Y, np.full(3, 2.0), Q, K, np.eye(d))["v"], X,
                             T=40.0, h=0.05, method="rk4", checkpoints=np.arange(0, 40.01, 0.5),
                             callback=lambda t, Y: ((Y @ w).min(-1), Y))
    mins = np.array([s[0] for s in tr.states])
    assert np.diff(mins, axis=0).min() > -1e-12
    np.testing.assert_array_equal(particles.cluster_count(tr.states[-1][1], 1 - 1e-6), 1)
