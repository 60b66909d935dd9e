r"""Trained readout of the sparse-token model (spec §3.3, Thm 4 / Thm 5): replica-symmetric
fixed point for ERM on fixed features, derived here (the paper's equations were not available).

Features (exact for a fixed query $q=Q_q\hat q$, $s_q=\cos(q,\xi)$):
$f_q(X)=\rho\,\hat q+\nu\,\xi_\perp+\kappa\,g'$ with $g'\sim\mathcal N(0,I_{d-1})$ independent of
the latent $\omega=(y,t)$, $t\in\mathbb R^L$; pooled: $\rho=0$, $\nu=\theta y^+R/L$, $\kappa=L^{-1/2}$.
ERM: $\min_{w,b}\sum_{i\le n_1}\ell(y_i,w^\top f_i+b)+\frac{\lambda d}2\|w\|^2$, $n_1=\alpha_1d$.

Fixed point in $(m,Q,V,w_q,b)$ (local field $\omega_0=w_q\rho+m\nu+b+\kappa\sqrt Q\zeta$, scalar prox
$\eta^*=\operatorname{prox}_{\kappa^2V\ell(y,\cdot)}(\omega_0)$, $f=-\ell'(y,\eta^*)$,
$\partial\eta^*/\partial\omega_0=1/(1+\kappa^2V\ell''(y,\eta^*))$):

$\hat V=\frac{\alpha_1}V\mathbb E[1-\partial\eta^*]$, $\hat Q=\alpha_1\mathbb E[\kappa^2f^2]$,
$\hat m=\alpha_1\mathbb E[\nu f]$; $V=1/(\lambda+\hat V)$, $m=\hat mV$, $Q=(\hat m^2+\hat Q)V^2$;
$\lambda w_q=\alpha_1\mathbb E[f\rho]$, $\mathbb E[f]=0$ (solved by a Newton step inside the map).

Outputs: $E_{\rm test}=\mathbb E_\omega\Phi(-y(w_q\rho+m\nu+b)/(\kappa\sqrt Q))$,
$E_{\rm train\,loss}=\mathbb E\,\ell(y,\eta^*)$, $E_{\rm train\,err}=\mathbb P(y\eta^*<0)$.
Baselines (rescaling $w\to w/\sqrt L$): pooled = two-cluster mixture with $\kappa=1$,
$\nu=\mu y^+$, $\mu=\theta R/\sqrt L$, at $(\alpha_1,\lambda L)$; vectorised = the same at
$(\alpha_1/L,\lambda/L)$ (dimension $Ld$).

Expectations: $\zeta$ by Gauss–Hermite (``numerics.quadrature``), $\omega$ by Monte Carlo
(attention) or exactly (baselines: two classes); the prox by ``numerics.prox.newton_minimize``
with value/gradient/Hessian generated from SymPy; the map by ``numerics.fixed_point``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import sympy as sp

from numerics.backend import get_backend
from numerics.fixed_point import solve_fixed_point
from numerics.prox import newton_minimize
from numerics.quadrature import gauss_hermite

from ..codegen import Program, generate

__all__ = ["ReadoutSamples", "readout_programs", "solve_readout", "gm_samples", "attention_samples"]

eta, om, s_, yy, kap, nu, rho, lossc = sp.symbols("eta omega s y kappa nu rho loss", real=True)
Mval, Mg, Mh = sp.symbols("M M_eta M_etaeta")
f_s, deta, ell = sp.symbols("f deta ell")
m_s, Q_s, wq_s, b_s, z_s = sp.symbols("m Q w_q b zeta", real=True)
om_s, sv_s, err_s = sp.symbols("omega_0 s_V err")
al1, lam_s, V_s, E1_s, EQ_s, Em_s = sp.symbols("alpha1 lam V E_1mdeta E_k2f2 E_nuf", real=True)
Vh_s, Qh_s, mh_s, Vn_s, mn_s, Qn_s = sp.symbols("Vhat Qhat mhat V_new m_new Q_new")


def readout_programs() -> dict[str, Program]:
    """SymPy → programs: the Moreau objective of the scalar prox (value, gradient, Hessian)
    and the per-sample quantities at the prox."""
    from .sparse_token import loss, loss_fn  # the model's loss, one definition

    lo = loss_fn(yy, eta).subs(loss, lossc)
    moreau = lo + (eta - om)**2 / (2 * s_)
    g = sp.diff(moreau, eta)
    h = sp.diff(g, eta)
    lp = sp.diff(lo, eta)
    lpp = sp.diff(lp, eta)
    return {
        "prox_fgh": Program("sparse_readout_prox_fgh", (eta, yy, om, s_, lossc),
                            ((Mval, moreau), (Mg, g), (Mh, h)), (Mval, Mg, Mh),
                            doc="Moreau objective l(y, eta) + (eta - omega)^2/(2 s), s = kappa^2 V."),
        "local_field": Program(
            "sparse_readout_local_field", (rho, nu, kap, m_s, Q_s, V_s, wq_s, b_s, z_s),
            ((om_s, wq_s * rho + m_s * nu + b_s + kap * sp.sqrt(Q_s) * z_s), (sv_s, kap**2 * V_s)),
            (om_s, sv_s), doc="Local field omega_0 = w_q rho + m nu + b + kappa sqrt(Q) zeta, "
                              "prox scale s = kappa^2 V."),
        "test_error": Program(
            "sparse_readout_test_error", (yy, rho, nu, kap, m_s, Q_s, wq_s, b_s),
            ((err_s, sp.erfc(yy * (wq_s * rho + m_s * nu + b_s) / (kap * sp.sqrt(2 * Q_s))) / 2),),
            (err_s,), doc="P(y (w^T f + b) < 0 | omega) = Phi(-y (w_q rho + m nu + b)/(kappa sqrt Q))."),
        "update": Program("sparse_readout_update", (al1, lam_s, V_s, E1_s, EQ_s, Em_s),
                          ((Vh_s, al1 / V_s * E1_s), (Qh_s, al1 * EQ_s), (mh_s, al1 * Em_s),
                           (Vn_s, 1 / (lam_s + Vh_s)), (mn_s, mh_s * Vn_s),
                           (Qn_s, (mh_s**2 + Qh_s) * Vn_s**2)), (Vn_s, mn_s, Qn_s),
                          doc="RS update: hat variables from the averages, then V, m, Q."),
        "at_prox": Program("sparse_readout_at_prox", (eta, yy, s_, lossc),
                           ((f_s, -lp), (deta, 1 / (1 + s_ * lpp)), (ell, lo)), (f_s, deta, ell),
                           doc="f = -l'(y, eta*), d eta*/d omega = 1/(1 + s l''), l(y, eta*)."),
    }


@lru_cache(maxsize=None)
def _kernels() -> dict[str, Any]:
    return {k: generate(p, "xp") for k, p in readout_programs().items()}


@dataclass(frozen=True)
class ReadoutSamples:
    """Latent samples (weights summing to 1) and their features ``rho, nu, kappa``."""

    weight: np.ndarray
    y: np.ndarray
    rho: np.ndarray
    nu: np.ndarray
    kappa: np.ndarray
    has_rho: bool


def gm_samples(mu: float, pi: float) -> ReadoutSamples:
    """Two-cluster mixture (pooled / vectorised baseline after rescaling): exact, 2 'samples'."""
    return ReadoutSamples(np.array([pi, 1 - pi]), np.array([1.0, -1.0]), np.zeros(2),
                          np.array([mu, 0.0]), np.ones(2), False)


def attention_samples(feats: dict, pi: float) -> ReadoutSamples:
    """From :meth:`SparseToken.attention_features` (stratified positives / negatives)."""
    p, n = feats[1], feats[-1]
    k1, k2 = p["rho"].size, n["rho"].size
    return ReadoutSamples(np.concatenate([np.full(k1, pi / k1), np.full(k2, (1 - pi) / k2)]),
                          np.concatenate([np.ones(k1), -np.ones(k2)]),
                          np.concatenate([p["rho"], n["rho"]]), np.concatenate([p["nu"], n["nu"]]),
                          np.concatenate([p["kappa"], n["kappa"]]), True)


DEFAULT_START = np.array([0.1, 0.1, 1.0, 0.0, 0.0])
STATE = ("m", "Q", "V", "w_q", "b")


def readout_map(samples: ReadoutSamples, alpha1: np.ndarray, lam: np.ndarray, loss: float, *,
                gh: int = 24) -> tuple[Any, Any]:
    """The undamped RS map ``F(x, idx)`` on the state ``(m, Q, V, w_q, b)`` (module docstring)
    at the points ``alpha1[idx], lam[idx]``, and ``local(x)`` (prox quantities per sample and
    node). The RS update is the generated ``update`` kernel; ``(w_q, b)`` take one Newton step
    on their stationarity equations."""
    be = get_backend("numpy")
    xp, spc = be.xp, be.special
    ks = _kernels()
    rule = gauss_hermite(gh, 1)
    zk, gk = rule.nodes[:, 0], rule.weights
    W = samples.weight[:, None] * gk[None, :]  # (N, K)
    y = samples.y[:, None]
    rho_, nu_, kap_ = samples.rho[:, None], samples.nu[:, None], samples.kappa[:, None]
    lc = float(loss)

    def local(x: np.ndarray) -> dict[str, np.ndarray]:
        m, Q, V, wq, b = (x[:, i][:, None, None] for i in range(5))
        with np.errstate(all="ignore"):
            lf = ks["local_field"](xp, spc, rho_, nu_, kap_, m, np.maximum(Q, 0.0),
                                   np.maximum(V, 1e-300), wq, b, zk[None, None, :])
        shp = np.broadcast_shapes(m.shape[:1] + rho_.shape, zk[None, None, :].shape)
        omega = np.broadcast_to(lf["omega_0"], shp)
        s = np.broadcast_to(lf["s_V"], shp)
        yb = np.broadcast_to(y, omega.shape)
        shape = omega.shape
        fl = [a.reshape(-1) for a in (yb, omega, s)]

        def fgh(e: np.ndarray, rows: np.ndarray):
            with np.errstate(all="ignore"):
                o = ks["prox_fgh"](xp, spc, e[:, 0], fl[0][rows], fl[1][rows], fl[2][rows], lc)
            return o["M"], o["M_eta"][:, None], o["M_etaeta"][:, None, None]

        res = newton_minimize(fgh, fl[1][:, None], gtol=1e-11, maxiter=60)
        etas = res.x[:, 0].reshape(shape)
        with np.errstate(all="ignore"):
            o = ks["at_prox"](xp, spc, etas, yb, s, lc)
        return dict(eta=etas, f=o["f"], deta=o["deta"], ell=o["ell"], s=s,
                    prox_ok=res.converged.reshape(shape).all(axis=(1, 2)))

    def E(a: np.ndarray) -> np.ndarray:
        return np.einsum("pnk,nk->p", np.broadcast_to(a, (a.shape[0],) + W.shape), W)

    def F(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        al, lm = alpha1[idx], lam[idx]
        o = local(x)
        f, one_m = o["f"], 1 - o["deta"]
        with np.errstate(all="ignore"):
            up = ks["update"](xp, spc, al, lm, x[:, 2], E(one_m), E(kap_**2 * f**2), E(nu_ * f))
        D = one_m / o["s"]  # (1 - d eta)/(kappa^2 V) = -d f/d omega
        r2 = -E(f)
        j22 = E(D)
        wq, b = x[:, 3], x[:, 4]
        if samples.has_rho:
            r1 = lm * wq - al * E(rho_ * f)
            j11 = lm + al * E(rho_**2 * D)
            j12 = al * E(rho_ * D)
            j21 = E(rho_ * D)
            det = j11 * j22 - j12 * j21
            wqn = wq - (j22 * r1 - j12 * r2) / det
            bn = b - (-j21 * r1 + j11 * r2) / det
        else:
            wqn = np.zeros_like(wq)
            bn = b - r2 / j22
        return np.stack([up["m_new"], up["Q_new"], up["V_new"], wqn, bn], axis=1)

    return F, local


def solve_readout(samples: ReadoutSamples, alpha1: np.ndarray, lam: np.ndarray, loss: int, *,
                  gh: int = 24, tol: float = 1e-9, maxiter: int = 3000, damping: float = 0.5,
                  x0: np.ndarray | None = None, stability: bool = False) -> dict[str, np.ndarray]:
    """Solve the fixed point for every ``(alpha1[i], lam[i])`` on the same samples.

    ``x0``: ``None`` (:data:`DEFAULT_START`), a length-5 start, or per-point ``(n, 5)`` starts
    (rows with NaN use the default). ``stability``: real part of the leading eigenvalue of
    the Jacobian of the undamped map at converged points (``numerics.phases``), else NaN.
    """
    alpha1 = np.atleast_1d(np.asarray(alpha1, float))
    lam = np.broadcast_to(np.atleast_1d(np.asarray(lam, float)), alpha1.shape).copy()
    n = alpha1.size
    start = np.tile(DEFAULT_START, (n, 1))
    if x0 is not None:
        x0 = np.asarray(x0, float)
        x0 = np.broadcast_to(x0, (n, 5)) if x0.ndim == 1 else x0
        if x0.shape != (n, 5):
            raise ValueError(f"init must have length 5 or shape ({n}, 5), got {x0.shape}")
        good = np.all(np.isfinite(x0), axis=1)
        start[good] = x0[good]
    F, local = readout_map(samples, alpha1, lam, loss, gh=gh)

    def inside(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return (x[:, 1] > 0) & (x[:, 2] > 0) & np.all(np.isfinite(x), axis=1)

    res = solve_fixed_point(F, start, damping=damping, anderson=5, tol=tol, maxiter=maxiter,
                            project=inside, names=STATE)
    bad = np.flatnonzero(~np.asarray(res.converged))
    if bad.size:  # retry without Anderson, more damping, from the start (never hidden: flagged)
        F2, _ = readout_map(samples, alpha1[bad], lam[bad], loss, gh=gh)
        r2 = solve_fixed_point(F2, start[bad], damping=0.3, anderson=0, tol=tol,
                               maxiter=4 * maxiter, project=inside)
        for name in ("x", "converged", "residual", "iterations", "status"):
            getattr(res, name)[bad] = getattr(r2, name)
    x = res.x
    o = local(x)
    m, Q, wq, b = x[:, 0], x[:, 1], x[:, 3], x[:, 4]
    be = get_backend("numpy")
    with np.errstate(all="ignore"):
        err = _kernels()["test_error"](be.xp, be.special, samples.y[None], samples.rho[None],
                                        samples.nu[None], samples.kappa[None], m[:, None],
                                        Q[:, None], wq[:, None], b[:, None])["err"]
    test = (samples.weight[None] * np.broadcast_to(err, (x.shape[0], samples.y.size))).sum(axis=1)
    rule = gauss_hermite(gh, 1)
    W = samples.weight[:, None] * rule.weights[None, :]
    E = lambda a: np.einsum("pnk,nk->p", a, W)
    train_loss = E(o["ell"])
    train_err = E((samples.y[None, :, None] * o["eta"] < 0).astype(float))
    converged = np.asarray(res.converged) & o["prox_ok"]
    stab = np.full(n, np.nan)
    if stability and converged.any():
        from numerics.phases import jacobian_fd, stability as lead_eig

        idx = np.flatnonzero(converged)
        J = jacobian_fd(F, x[idx], idx, rel_step=1e-6)
        stab[idx] = lead_eig(J)[0]
    return dict(m=m, Q=Q, V=x[:, 2], w_q=wq, b=b, test_error=test, train_loss=train_loss,
                train_error=train_err, converged=converged, residual=res.residual,
                iterations=res.iterations, status=res.status, stability=stab)


def readout_errors(*, L: int, R: int, pi: float, theta: float, alpha1: np.ndarray, lam: float,
                   loss: int, beta_q: float | None = None, s_q: float | None = None,
                   n_mc: int = 4000, seed: int = 0, gh: int = 24) -> dict[str, dict]:
    """Test error / training loss of attention (if ``beta_q``, ``s_q`` are given), pooled and
    vectorised classifiers along ``alpha1`` (same ridge convention for all three)."""
    alpha1 = np.atleast_1d(np.asarray(alpha1, float))
    mu = theta * R / math.sqrt(L)
    # pooled: w' = w / sqrt(L) sees unit noise, penalty (lam d / 2) L |w'|^2 -> ridge lam L;
    # vectorised: dimension L d, n = (alpha1 / L)(L d), penalty (lam / L)(L d)/2 |W|^2
    out = {"pooled": solve_readout(gm_samples(mu, pi), alpha1, lam * L, loss, gh=gh),
           "vectorised": solve_readout(gm_samples(mu, pi), alpha1 / L, lam / L, loss, gh=gh)}
    if beta_q is not None:
        from .sparse_token import SparseToken

        feats = SparseToken().attention_features(L=L, R=R, pi=pi, theta=theta, beta_q=beta_q,
                                                 s_q=s_q, n=n_mc, rng=np.random.default_rng(seed))
        out["attention"] = solve_readout(attention_samples(feats, pi), alpha1, lam, loss, gh=gh)
    return out
