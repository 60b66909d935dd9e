r"""Independent particle simulations of self-attention dynamics (the check, not the thing checked).

Hand-written velocity fields, written from the papers' definitions and *not* from the SymPy
model (spec ``token_dynamics.md`` §1.1–§1.4):

* :func:`velocity_loop` -- per-particle Python loop over one system (the authors' style);
* :func:`velocity_batch` -- a hand-written batched NumPy/CuPy version (the benchmark baseline);
* :func:`energy_batch` -- $E_\beta=\frac1{2\beta n^2}\sum_{ij}e^{\beta\langle x_i,Ax_j\rangle}$;
* :func:`kuramoto_loop` -- the $d=2$ field written directly on angles;
* :func:`long_context_gram` -- one SA layer on explicit equiangular tokens (Gram computed).

:func:`simulate` integrates a batch of systems with :mod:`numerics.particles`.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from numerics import particles

__all__ = ["velocity_loop", "velocity_batch", "energy_batch", "kuramoto_loop",
           "equiangular_start", "long_context_gram", "simulate", "equiangular_hitting_time"]


def velocity_loop(X: np.ndarray, beta: float, dynamics: str = "SA", Q: np.ndarray | None = None,
                  K: np.ndarray | None = None, V: np.ndarray | None = None,
                  causal: bool = False, sphere: bool = True) -> np.ndarray:
    """Velocity of one system ``X (n, d)`` token by token (plain loops over i and j)."""
    n, d = X.shape
    Q = np.eye(d) if Q is None else Q
    K = np.eye(d) if K is None else K
    V = np.eye(d) if V is None else V
    out = np.zeros_like(X)
    for i in range(n):
        js = range(i + 1) if causal else range(n)
        logits = [beta * float((Q @ X[i]) @ (K @ X[j])) for j in js]
        if dynamics == "SA":
            m = max(logits)
            w = [math.exp(lg - m) for lg in logits]
            Z = sum(w)
            w = [wj / Z for wj in w]
        elif dynamics == "USA":
            w = [math.exp(lg) / n for lg in logits]
        else:
            raise ValueError(f"dynamics must be 'SA' or 'USA', got {dynamics!r}")
        u = np.zeros(d)
        for wj, j in zip(w, js):
            u += wj * (V @ X[j])
        out[i] = u - (u @ X[i]) * X[i] if sphere else u
    return out


def velocity_batch(X: Any, beta: Any, dynamics: str = "SA", Q: Any = None, K: Any = None,
                   V: Any = None, causal: bool = False, sphere: bool = True) -> Any:
    """Hand-written batched velocity, ``X (B, n, d)``, ``beta`` scalar or (B,)."""
    xp = particles._xp(X)
    B, n, d = X.shape
    beta = xp.asarray(beta, dtype=X.dtype).reshape(-1, 1, 1) if np.ndim(beta) else beta
    QX = X if Q is None else X @ Q.T
    KX = X if K is None else X @ K.T
    VX = X if V is None else X @ V.T
    Lg = beta * (QX @ xp.swapaxes(KX, -1, -2))
    if causal:
        Lg = xp.where(xp.tril(xp.ones((n, n), dtype=bool)), Lg, -xp.inf)
    if dynamics == "SA":
        Lg = Lg - Lg.max(-1, keepdims=True)
        P = xp.exp(Lg)
        P /= P.sum(-1, keepdims=True)
    else:
        P = xp.exp(Lg) / n
    U = P @ VX
    if not sphere:
        return U
    return U - (U * X).sum(-1, keepdims=True) * X


def energy_batch(X: Any, beta: Any, A: Any = None) -> Any:
    r"""$E_\beta(X)=\frac1{2\beta n^2}\sum_{ij}e^{\beta\langle x_i,Ax_j\rangle}$ per system."""
    xp = particles._xp(X)
    n = X.shape[1]
    beta = xp.asarray(beta, dtype=float).reshape(-1)
    AX = X if A is None else X @ A.T
    G = X @ xp.swapaxes(AX, -1, -2)
    return xp.exp(beta[:, None, None] * G).sum((-2, -1)) / (2 * beta * n * n)


def kuramoto_loop(theta: np.ndarray, beta: float, dynamics: str = "SA", alpha: float = 1.0,
                  omega: float = 0.0, V: np.ndarray | None = None) -> np.ndarray:
    r"""$\dot\theta_i=\langle t_i,\sum_jw_{ij}Vx_j\rangle$ with $x=(\cos,\sin)$, computed on
    the circle directly (V defaults to $\alpha I+\omega J$)."""
    n = theta.shape[0]
    V = np.array([[alpha, -omega], [omega, alpha]]) if V is None else V
    out = np.zeros(n)
    for i in range(n):
        c = np.array([math.exp(beta * math.cos(theta[i] - theta[j])) for j in range(n)])
        w = c / c.sum() if dynamics == "SA" else c / n
        ti = np.array([-math.sin(theta[i]), math.cos(theta[i])])
        out[i] = sum(w[j] * ti @ (V @ np.array([math.cos(theta[j]), math.sin(theta[j])]))
                     for j in range(n))
    return out


def equiangular_start(n: int, d: int, rho0: float = 0.0, batch: int = 1) -> np.ndarray:
    r"""Tokens with $\langle x_i,x_j\rangle=\rho_0$ ($i\ne j$): $x_j=\sqrt{1-\rho_0}e_j+\sqrt{\rho_0}e_n$
    (needs $d\ge n+1$ when $\rho_0>0$, $d\ge n$ when $\rho_0=0$)."""
    need = n + (1 if rho0 > 0 else 0)
    if d < need:
        raise ValueError(f"d must be >= {need} for an equiangular start with n={n}, rho0={rho0}")
    X = np.zeros((batch, n, d))
    X[:, np.arange(n), np.arange(n)] = math.sqrt(1 - rho0)
    if rho0 > 0:
        X[:, :, n] = math.sqrt(rho0)
    return X


def long_context_gram(n: int, rho: float, gamma: float, d_extra: int = 1) -> float:
    r"""One SA layer, $\beta=\gamma\log n$, on explicit equiangular unit tokens (small n only:
    builds the n×n Gram matrix); returns the output cosine $\langle y_1,y_2\rangle/(|y_1||y_2|)$."""
    G = np.full((n, n), rho)
    np.fill_diagonal(G, 1.0)
    beta = gamma * math.log(n)
    Lg = beta * G
    P = np.exp(Lg - Lg.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    Gy = P @ G @ P.T  # <y_i, y_k> with y = P X
    return float(Gy[0, 1] / math.sqrt(Gy[0, 0] * Gy[1, 1]))


def simulate(n: int = 32, d: int = 8, beta: Any = 1.0, dynamics: str = "SA", T: float = 10.0,
             h: float = 0.1, method: str = "euler", batch: int = 16, seed: int = 0,
             checkpoints: Any = None, threshold: float = 0.999, xp: Any = np) -> dict[str, Any]:
    """Uniform i.i.d. starts, hand-written field, fixed steps; returns checkpoint times and,
    per checkpoint, the pair fraction above ``threshold`` and the cluster count."""
    rng = np.random.default_rng(seed)
    betas = np.atleast_1d(np.asarray(beta, float))
    X0 = particles.uniform_sphere(rng, (batch, n, d))
    Xb = np.repeat(X0[None], len(betas), 0).reshape(-1, n, d)
    bb = np.repeat(betas, batch)
    Xb, bb = xp.asarray(Xb), xp.asarray(bb)

    def diag(t: float, X: Any) -> tuple[Any, Any]:
        return (particles.pair_fraction(X, threshold).reshape(len(betas), batch),
                particles.cluster_count(X, threshold).reshape(len(betas), batch))

    traj = particles.integrate(lambda X: velocity_batch(X, bb, dynamics), Xb, T=T, h=h,
                               method=method, checkpoints=checkpoints, callback=diag)
    return {"times": traj.times, "beta": betas,
            "pair_fraction": np.stack([np.asarray(s[0]) for s in traj.states]),
            "clusters": np.stack([np.asarray(s[1]) for s in traj.states])}


def equiangular_hitting_time(n: int, d: int, beta: float, rho0: float, target: float,
                             dynamics: str = "SA", h: float = 1e-3, t_max: float = 1e3,
                             max_steps: int = 200_000) -> float:
    r"""Time for the mean pairwise inner product of ``n`` tokens started equiangular at ``rho0``
    (:func:`equiangular_start`, ``d >= n + 1``) to reach ``target`` under the hand-written
    ``dynamics`` field (RK4, step ``h``, linear interpolation inside the last step); ``inf`` if
    not reached by ``t_max`` or ``max_steps``. The check of the closed-form hitting time."""
    if dynamics not in ("SA", "USA"):
        raise ValueError(f"dynamics must be 'SA' or 'USA', got {dynamics!r}")
    if not (0 <= rho0 < 1 and rho0 <= target < 1):
        raise ValueError(f"need 0 <= rho0 <= target < 1, got rho0={rho0}, target={target}")
    X = equiangular_start(int(n), int(d), float(rho0))

    def cos(Y: np.ndarray) -> float:
        G = Y[0] @ Y[0].T
        return float((G.sum() - np.trace(G)) / (n * (n - 1)))

    def field(Y: np.ndarray) -> np.ndarray:
        return velocity_batch(Y, beta, dynamics)

    t, c = 0.0, cos(X)
    if c >= target:
        return 0.0
    for _ in range(int(max_steps)):
        if t >= t_max:
            break
        Xn = particles.step(field, X, h, "rk4")
        cn = cos(Xn)
        if cn >= target:
            return t + h * (target - c) / (cn - c)
        X, c, t = Xn, cn, t + h
    return math.inf
