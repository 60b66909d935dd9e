r"""Replica-symmetric fixed point of ridge-regularised ERM on low-dimensional feature laws.

A generic driver (no formula of a particular model): the features of a sample are
$f=\rho\,\hat q+\nu\,\xi_\perp+\kappa\,g'$ for latent samples $(y,\rho,\nu,\kappa)$ with weights
(:class:`ReadoutSamples`); the estimator minimises $\sum_i\ell(y_i,w^\top f_i+b)+\frac{\lambda d}2\|w\|^2$
with $n=\alpha_1d$ samples. The state is $(m,Q,V,w_q,b)$. Every formula comes in as a *kernel*
(a callable ``(xp, special, *args) -> dict``, generated from SymPy by the caller):

* ``local_field(rho, nu, kappa, m, Q, V, w_q, b, zeta) -> {omega_0, s_V}``: the local field
  $\omega_0=w_q\rho+m\nu+b+\kappa\sqrt Q\zeta$ and prox scale $s=\kappa^2V$;
* ``prox_fgh(eta, y, omega, s, loss) -> {M, M_eta, M_etaeta}``: the Moreau objective of the scalar
  prox, its gradient and Hessian (minimised by :func:`numerics.prox.newton_minimize`);
* ``at_prox(eta, y, s, loss) -> {f, deta, ell}``: $f=-\ell'$, $\partial\eta^*/\partial\omega$, $\ell$;
* ``update(alpha1, lam, V, E[1-deta], E[kappa^2 f^2], E[nu f]) -> {V_new, m_new, Q_new}``;
* ``test_error(y, rho, nu, kappa, m, Q, w_q, b) -> {err}``.

$\zeta$ is integrated by Gauss--Hermite (:mod:`numerics.quadrature`), the samples by their
weights; $(w_q,b)$ take one Newton step on their stationarity equations inside the map
($\lambda w_q=\alpha_1\mathbb E[f\rho]$, $\mathbb E[f]=0$); the map is solved by
:func:`numerics.fixed_point.solve_fixed_point` with the convergence test on the undamped
residual, and the stability is the leading eigenvalue of the undamped map's Jacobian.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .backend import get_backend
from .fixed_point import solve_fixed_point
from .prox import newton_minimize
from .quadrature import gauss_hermite

__all__ = ["ReadoutSamples", "readout_map", "solve_readout", "DEFAULT_START", "STATE"]


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


def readout_map(kernels: Mapping[str, Callable[..., dict]], samples: ReadoutSamples,
                alpha1: np.ndarray, lam: np.ndarray, loss: float, *,
                gh: int = 24) -> tuple[Any, Any]:
    """The undamped RS map ``F(x, idx)`` on the state ``(m, Q, V, w_q, b)`` (module docstring)
    at the points ``alpha1[idx], lam[idx]``, and ``local(x)`` (prox quantities per sample and
    node). The RS update is the generated ``update`` kernel; ``(w_q, b)`` take one Newton step
    on their stationarity equations."""
    be = get_backend("numpy")
    xp, spc = be.xp, be.special
    ks = kernels
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


def solve_readout(kernels: Mapping[str, Callable[..., dict]], samples: ReadoutSamples,
                  alpha1: np.ndarray, lam: np.ndarray, loss: int, *,
                  gh: int = 24, tol: float = 1e-9, maxiter: int = 3000, damping: float = 0.5,
                  x0: np.ndarray | None = None, stability: bool = False) -> dict[str, np.ndarray]:
    """Solve the fixed point for every ``(alpha1[i], lam[i])`` on the same samples
    (``kernels``: see the module docstring).

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
    F, local = readout_map(kernels, samples, alpha1, lam, loss, gh=gh)

    def inside(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return (x[:, 1] > 0) & (x[:, 2] > 0) & np.all(np.isfinite(x), axis=1)

    res = solve_fixed_point(F, start, damping=damping, anderson=5, tol=tol, maxiter=maxiter,
                            project=inside, names=STATE)
    bad = np.flatnonzero(~np.asarray(res.converged))
    if bad.size:  # retry without Anderson, more damping, from the start (never hidden: flagged)
        F2, _ = readout_map(kernels, samples, alpha1[bad], lam[bad], loss, gh=gh)
        r2 = solve_fixed_point(F2, start[bad], damping=0.3, anderson=0, tol=tol,
                               maxiter=4 * maxiter, project=inside)
        for name in ("x", "converged", "residual", "iterations", "status"):
            getattr(res, name)[bad] = getattr(r2, name)
    x = res.x
    o = local(x)
    m, Q, wq, b = x[:, 0], x[:, 1], x[:, 3], x[:, 4]
    be = get_backend("numpy")
    with np.errstate(all="ignore"):
        err = kernels["test_error"](be.xp, be.special, samples.y[None], samples.rho[None],
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
