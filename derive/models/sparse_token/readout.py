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
with value/gradient/Hessian generated from SymPy; the map by ``numerics.fixed_point``: the
generic driver :mod:`numerics.erm_readout` takes the generated kernels (declared by the model,
``readout_*`` in its kernel registry) as callables.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import sympy as sp

from numerics import erm_readout
from numerics.erm_readout import DEFAULT_START, STATE, ReadoutSamples, attention_samples, gm_samples

from ...codegen import Program
from .statement import loss, loss_fn  # the model's loss, one definition

__all__ = ["ReadoutSamples", "readout_programs", "readout_kernels", "readout_map", "solve_readout",
           "readout_errors", "gm_samples", "attention_samples", "DEFAULT_START", "STATE"]

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


def _model() -> Any:
    from .. import get

    return get("sparse-token")


def readout_kernels() -> dict[str, Callable[..., dict]]:
    """The generated readout kernels, from the model's kernel registry (``readout_<name>``)."""
    m = _model()
    return {k: m.kernel(f"readout_{k}") for k in ("prox_fgh", "local_field", "test_error",
                                                   "update", "at_prox")}


def readout_map(samples: ReadoutSamples, alpha1: np.ndarray, lam: np.ndarray, loss: float, *,
                gh: int = 24) -> tuple[Any, Any]:
    """:func:`numerics.erm_readout.readout_map` with this model's generated kernels."""
    return erm_readout.readout_map(readout_kernels(), samples, alpha1, lam, loss, gh=gh)


def solve_readout(samples: ReadoutSamples, alpha1: np.ndarray, lam: np.ndarray, loss: int,
                  **kwargs: Any) -> dict[str, np.ndarray]:
    """:func:`numerics.erm_readout.solve_readout` with this model's generated kernels."""
    return erm_readout.solve_readout(readout_kernels(), samples, alpha1, lam, loss, **kwargs)


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
        feats = _model().attention_features(L=L, R=R, pi=pi, theta=theta, beta_q=beta_q,
                                                 s_q=s_q, n=n_mc, rng=np.random.default_rng(seed))
        out["attention"] = solve_readout(attention_samples(feats, pi), alpha1, lam, loss, gh=gh)
    return out
