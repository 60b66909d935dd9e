"""token-dynamics: Kuramoto reduction in d = 2 (derived) = particle field; cycles,
consensus without stability and the Hamiltonian case, each with its invariant checked."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import sympy as sp

import derive
from numerics.simulate import token_dynamics as sim

M = derive.models.get("token-dynamics")
S = scipy.special
KK = {d: M.tensor_kernel(f"kuramoto_{d.lower()}") for d in ("SA", "USA")}


def _decompose(V):
    """V = alpha I + omega J + sigma S_chi (S_chi symmetric traceless, angle 2 chi)."""
    al, om = (V[0, 0] + V[1, 1]) / 2, (V[1, 0] - V[0, 1]) / 2
    p, q = (V[0, 0] - V[1, 1]) / 2, (V[0, 1] + V[1, 0]) / 2
    return al, om, np.hypot(p, q), np.arctan2(q, p) / 2


def field(dyn, beta, al, om, sg=0.0, chi=0.0):
    one = np.ones(1)
    return lambda th: KK[dyn](np, S, th, beta * one, al * one, om * one, sg * one,
                              chi * one)["thetadot"]


def rk4(f, th, T, h):
    for _ in range(int(round(T / h))):
        k1 = f(th)
        k2 = f(th + h / 2 * k1)
        k3 = f(th + h / 2 * k2)
        k4 = f(th + h * k3)
        th = th + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return th


def test_reduction_is_an_identity():
    assert M.kuramoto_reduction_holds()
    k = M.kuramoto_pair_term
    v11, v12, v21, v22 = sp.symbols("v11 v12 v21 v22", real=True)
    al, om, sg, chi = sp.symbols("alpha omega sigma chi", real=True)
    # general V written through its (alpha, omega, sigma cos 2chi, sigma sin 2chi) coordinates
    sub = {v11: al + sg * sp.cos(2 * chi), v22: al - sg * sp.cos(2 * chi),
           v12: -om + sg * sp.sin(2 * chi), v21: om + sg * sp.sin(2 * chi)}
    assert sp.simplify(sp.expand_trig(k["general"].subs(sub) - k["reduced"])) == 0


@pytest.mark.parametrize("dyn", ["SA", "USA"])
def test_reduced_field_equals_particle_field(dyn):
    """θ̇ from the generated Kuramoto kernel = <t_i, v_i> of the generated particle kernel
    (general V, random) = the hand-written angle loop, to 1e-14."""
    rng = np.random.default_rng(7)
    n, beta = 7, 1.3
    V = rng.standard_normal((2, 2))
    th = rng.uniform(0, 2 * np.pi, (1, n))
    got = field(dyn, beta, *_decompose(V))(th)[0]
    X = np.stack([np.cos(th), np.sin(th)], -1)
    kv = M.velocity_kernel(dyn, "general")
    extra = (np.zeros(1),) if dyn == "USA" else ()
    v = kv(np, S, X, np.array([beta]), np.eye(2), np.eye(2), V, *extra)["v"][0]
    tang = np.stack([-np.sin(th[0]), np.cos(th[0])], -1)
    np.testing.assert_allclose(got, (v * tang).sum(-1), atol=1e-14)
    np.testing.assert_allclose(got, sim.kuramoto_loop(th[0], beta, dyn, V=V), atol=1e-14)


@pytest.mark.parametrize("dyn,speed", [("SA", lambda b: 1.0), ("USA", lambda b: np.exp(b))])
def test_cycles_rotating_consensus_and_splay(dyn, speed):
    """V = ωJ: consensus and the splay state rotate rigidly (periodic orbits). Consensus
    speed ω (SA) and ω e^β (USA); after one period the splay state returns to itself."""
    beta, om = 1.5, 0.8
    f = field(dyn, beta, 0.0, om)
    cons = np.full((1, 5), 0.4)
    np.testing.assert_allclose(f(cons), om * speed(beta), rtol=1e-14)
    splay = (2 * np.pi * np.arange(5) / 5)[None]
    w = f(splay)
    assert np.ptp(w) < 1e-14
    period = 2 * np.pi / abs(w[0, 0])
    back = rk4(f, splay, period, period / 2000)
    np.testing.assert_allclose(np.angle(np.exp(1j * (back - splay))), 0, atol=1e-10)


_GL = np.polynomial.legendre.leggauss(60)


def _H(th, beta, om):
    def F(p):  # ω ∫_0^p e^{β cos s} cos s ds, 60-point Gauss–Legendre (analytic integrand)
        s = p * (_GL[0] + 1) / 2
        return om * p / 2 * float((_GL[1] * np.exp(beta * np.cos(s)) * np.cos(s)).sum())

    t = th[0]
    return (F(t[1] - t[0]) + F(t[2] - t[1]) + F(t[0] - t[2])) / 3


def test_hamiltonian_case_first_integral_and_volume():
    """USA, V = ωJ, n = 3: H = Σ_cyclic F(θ_{i+1}-θ_i)/3, F' = ω e^{β cos} cos, is conserved
    (derived: dH/dt = 0 for any even coupling); the field is divergence-free for any n
    (Liouville); SA with the same V is not."""
    H, dH = M.hamiltonian_n3
    assert dH == 0
    assert M.first_integral_n3(even=False)[1] != 0  # evenness (V = ωJ) is what makes it vanish
    beta, om = 1.0, 1.0
    f = field("USA", beta, 0.0, om)
    th = np.array([[0.3, 1.4, 2.9]])
    Hs = [_H(th, beta, om)]
    for _ in range(10):
        th = rk4(f, th, 1.0, 0.01)
        Hs.append(_H(th, beta, om))
    assert np.ptp(Hs) < 1e-10
    rng = np.random.default_rng(0)
    t5 = rng.uniform(0, 2 * np.pi, (1, 6))
    for dyn, zero in (("USA", True), ("SA", False)):
        g, eps, div = field(dyn, beta, 0.0, om), 1e-5, 0.0
        for i in range(6):
            e = np.zeros((1, 6))
            e[0, i] = eps
            div += (g(t5 + e)[0, i] - g(t5 - e)[0, i]) / (2 * eps)
        assert (abs(div) < 1e-8) == zero, (dyn, div)


def test_consensus_without_stability():
    """V = ωJ (USA): consensus is an equilibrium of the relative dynamics but not attracting:
    H(start) ≠ H(consensus) = 0 and H is conserved, so a start 1e-3 from consensus stays a
    fixed distance away; with V = I (gradient case) the same start collapses to 1e-12."""
    beta = 1.0
    th0 = np.array([[0.0, 1e-3, -0.7e-3]])

    def spread(th):
        d = th - th[:, :1]
        return float(np.abs(np.angle(np.exp(1j * d))).max())

    th = rk4(field("USA", beta, 0.0, 1.0), th0, 30.0, 0.01)
    H0, H1 = _H(th0, beta, 1.0), _H(th, beta, 1.0)
    assert abs(H0) > 1e-10 and abs(H1 - H0) < 1e-3 * abs(H0)
    assert spread(th) > 0.5 * spread(th0)
    th = rk4(field("USA", beta, 1.0, 0.0), th0, 30.0, 0.01)
    assert spread(th) < 1e-12
