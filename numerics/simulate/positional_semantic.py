"""Finite-d simulation of tied low-rank dot-product attention (Cui, Behrens, Krzakala, Zdeborová).

Written from the model's definition only (independent of the replica equations):

- tokens ``x_ℓ = s_ℓ p + z_ℓ`` with ``z_ℓ ~ N(0, σ² I_d)``, opposite positional encodings
  ``s = (+1, −1)``, ``p = u/√d`` with ``‖u‖² = d`` (so ``‖p‖ = 1``);
- teacher ``Y = T(X) X``, ``T = (1−ω) softmax(h* h*ᵀ) + ω A`` with ``h* = X Q*/√d``,
  ``‖Q*‖² = d``, ``Q* ⟂ u``;
- student ``f_Q(X) = softmax(h hᵀ) X``, ``h = X Q/√d``, ``Q ∈ R^{d×r}`` (rank r; r = 1 is the
  paper's toy model), ``L`` tokens (L = 2: opposite encodings ±p; L > 2: orthonormal encodings);
- risk ``R(Q) = Σ_μ ‖Y_μ − f_Q(X_μ)‖²/(2d) + (λ/2)‖Q‖²``, minimised by full-batch
  gradient methods from a positional (``Q ∝ u``) and a semantic (``Q ∝ Q*``) start.

Measured: ``q = σ²‖Q‖²/d``, ``m = uᵀQ/d``, ``θ = σ² Q*ᵀQ/d`` (signs fixed by ``Q → −Q``
symmetry: reported as absolute values), training loss ``Σ_μ‖Y−f‖²/(n d)``, test MSE on
fresh samples, and ``R/d`` (the minimal risk per dimension, which the theory calls −Φ).
For r ≥ 2 the overlaps are matrices defined up to ``Q → QO``; reported are the invariants
``q = tr(σ²QᵀQ/d)``, its eigenvalues ``q_eig_min/max``, ``m = ‖Qᵀu/d‖`` (first encoding),
``θ = ‖σ²QᵀQ*/d‖`` and ``cos_m_theta`` (the angle between the two overlap vectors).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

__all__ = ["Instance", "sample_instance", "risk_and_grad", "train", "measure", "run", "hessian_probe"]


@dataclass
class Instance:
    """One training set at dimension ``d``."""

    X: np.ndarray  # (n, 2, d)
    Y: np.ndarray  # (n, 2, d)
    u: np.ndarray  # positional direction, ‖u‖² = d
    Qstar: np.ndarray  # teacher direction, ‖Q*‖² = d, ⟂ u
    d: int
    sigma: float
    omega: float
    lam: float
    A: np.ndarray = field(default_factory=lambda: np.array([[0.6, 0.4], [0.4, 0.6]]))
    U: np.ndarray | None = None  # (L, d) encodings times √d (rows: s_ℓ u, or orthonormal·√d)


def _softmax_rows(s: np.ndarray) -> np.ndarray:
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


def _tokens(n: int, U: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``x_ℓ = U_ℓ/√d + z_ℓ`` for the ``L`` rows of ``U``."""
    L, d = U.shape
    X = sigma * rng.standard_normal((n, L, d))
    X += U[None] / np.sqrt(d)
    return X


def _encodings(u: np.ndarray, L: int, rng: np.random.Generator) -> np.ndarray:
    """L = 2: (u, −u); L > 2: u and L−1 further random directions, orthonormalised (×√d)."""
    d = u.size
    if L == 2:
        return np.stack([u, -u])
    B = np.concatenate([u[:, None], rng.standard_normal((d, L - 1))], axis=1)
    Qb, _ = np.linalg.qr(B)
    Qb[:, 0] *= np.sign(Qb[:, 0] @ u)
    return Qb.T * np.sqrt(d)


def teacher(X: np.ndarray, Qstar: np.ndarray, omega: float, A: np.ndarray) -> np.ndarray:
    d = Qstar.size
    hs = X @ Qstar / np.sqrt(d)  # (n, L)
    T = (1 - omega) * _softmax_rows(hs[:, :, None] * hs[:, None, :]) + omega * A[None]
    return T @ X


def sample_instance(d: int, alpha: float, *, sigma: float = 0.5, omega: float = 0.3,
                    lam: float = 0.01, A: Any = None, seed: int = 0, L: int = 2) -> Instance:
    """``n = round(α d)`` samples; ``u`` and ``Q*`` are random, orthogonalised, norm ``√d``
    (``Q*`` orthogonal to every encoding). ``A`` defaults to the paper's matrix (L = 2), or 0.6 on
    the diagonal and 0.4/(L−1) elsewhere."""
    rng = np.random.default_rng(seed)
    if A is None:
        A = (np.array([[0.6, 0.4], [0.4, 0.6]]) if L == 2
             else 0.6 * np.eye(L) + 0.4 / (L - 1) * (1 - np.eye(L)))
    A = np.asarray(A, dtype=float)
    u = rng.standard_normal(d)
    u *= np.sqrt(d) / np.linalg.norm(u)
    U = _encodings(u, L, rng)
    Qs = rng.standard_normal(d)
    for row in U[: (1 if L == 2 else L)]:
        Qs -= (Qs @ row) / d * row
    Qs *= np.sqrt(d) / np.linalg.norm(Qs)
    n = max(1, int(round(alpha * d)))
    X = _tokens(n, U, sigma, rng)
    return Instance(X, teacher(X, Qs, omega, A), u, Qs, d, sigma, omega, lam, A, U)


def risk_and_grad(Q: np.ndarray, inst: Instance) -> tuple[float, np.ndarray]:
    """``R(Q)`` and its analytic gradient (chain rule through the row softmax). ``Q`` is a
    ``(d,)`` vector (rank one) or a flattened / ``(d, r)`` matrix with ``r = Q.size // d``."""
    X, Y, d = inst.X, inst.Y, inst.d
    Qm = Q.reshape(d, -1)
    h = np.einsum("nld,da->nla", X, Qm) / np.sqrt(d)  # (n, L, r)
    S = _softmax_rows(np.einsum("nla,nka->nlk", h, h))  # (n, L, L)
    Rres = Y - S @ X  # (n, L, d)
    loss = 0.5 * np.sum(Rres * Rres) / d
    G = -(Rres @ np.swapaxes(X, 1, 2)) / d  # dloss/dS, (n, L, L)
    dA = S * (G - np.sum(G * S, axis=2, keepdims=True))  # dloss/d(scores)
    dh = np.einsum("nlk,nka->nla", dA + np.swapaxes(dA, 1, 2), h)
    grad = np.einsum("nla,nld->da", dh, X) / np.sqrt(d) + inst.lam * Qm
    return float(loss + 0.5 * inst.lam * np.sum(Qm * Qm)), grad.reshape(Q.shape)


def train(inst: Instance, init: str, *, seed: int = 0, gtol: float = 1e-9,
          maxiter: int = 20000, r: int = 1, subspace: str | None = None,
          Q0: np.ndarray | None = None,
          theta_fixed: float | None = None) -> tuple[np.ndarray, optimize.OptimizeResult]:
    """Minimise the risk from a positional (``Q ∝ u``), semantic (``Q ∝ Q*``), mixed (r ≥ 2:
    first column ``∝ Q*``, second ``∝ u``) or random start with full-batch L-BFGS on the analytic
    gradient. Rank ``r``: further columns start small and random. Returns ``Q`` of shape ``(d,)``
    for ``r = 1``, else ``(d, r)``.

    ``subspace="m0"`` (r = 1) minimises on the set ``uᵀQ = 0`` (m = 0 exactly: ``R(PQ)`` with
    ``P = I − uuᵀ/d``), the finite-d counterpart of the replica theory's m = 0 branches.
    ``Q0`` (optional) replaces the start (``init`` is then only a label), e.g. to continue a run
    with a tighter ``gtol``. ``theta_fixed`` (with ``subspace="m0"``) also fixes
    ``θ = σ²Q*ᵀQ/d``: ``Q = P x + t e`` with ``e = Q*/‖Q*‖``, ``t = θ√d/σ²`` and ``P`` the
    projector off ``u`` and ``e`` (a finite-d profile of the minimal risk at fixed θ)."""
    if subspace not in (None, "m0"):
        raise ValueError(f"subspace must be None or 'm0', got {subspace!r}")
    if subspace == "m0" and r != 1:
        raise ValueError("subspace='m0' is implemented for r = 1")
    if Q0 is not None:
        x0 = np.asarray(Q0, dtype=float).reshape(-1).copy()
        fun = risk_and_grad
        if theta_fixed is not None and subspace != "m0":
            raise ValueError("theta_fixed needs subspace='m0'")
        if subspace == "m0":
            u = inst.u
            e = inst.Qstar / np.linalg.norm(inst.Qstar) if theta_fixed is not None else np.zeros_like(u)
            t = 0.0 if theta_fixed is None else theta_fixed * np.sqrt(inst.d) / inst.sigma**2

            def proj(v: np.ndarray) -> np.ndarray:
                return v - (v @ u) / (u @ u) * u - (v @ e) * e

            x0 = proj(x0)

            def fun(x: np.ndarray, inst: Instance) -> tuple[float, np.ndarray]:  # noqa: F811
                f, g = risk_and_grad(proj(x) + t * e, inst)
                return f, proj(g)
        res = optimize.minimize(fun, x0, args=(inst,), jac=True, method="L-BFGS-B",
                                options={"maxiter": maxiter, "gtol": gtol, "ftol": 1e-15, "maxcor": 30})
        x = res.x
        if subspace == "m0":
            x = proj(x) + t * e
        return (x if r == 1 else x.reshape(inst.d, r)), res
    d = inst.d
    rng = np.random.default_rng(seed + 12345)
    Q0 = 0.01 * rng.standard_normal((d, r))
    if init == "positional":
        Q0[:, 0] += 0.5 * inst.u
    elif init == "semantic":
        Q0[:, 0] += 1.0 * inst.Qstar
    elif init == "mixed" and r >= 2:
        Q0[:, 0] += 1.0 * inst.Qstar
        Q0[:, 1] += 0.5 * inst.u
    elif init == "random":
        Q0 = rng.standard_normal((d, r))
    else:
        raise ValueError(f"init must be 'positional', 'semantic', 'mixed' (r >= 2) or 'random', got {init!r}")
    Q0 = Q0[:, 0] if r == 1 else Q0.reshape(-1)
    if subspace is not None:
        return train(inst, init, seed=seed, gtol=gtol, maxiter=maxiter, r=r, subspace=subspace, Q0=Q0)
    res = optimize.minimize(risk_and_grad, Q0, args=(inst,), jac=True, method="L-BFGS-B",
                            options={"maxiter": maxiter, "gtol": gtol, "ftol": 1e-15, "maxcor": 30})
    return (res.x if r == 1 else res.x.reshape(d, r)), res


def measure(Q: np.ndarray, inst: Instance, *, n_test: int = 20000, seed: int = 1) -> dict[str, float]:
    """Overlaps, training loss, test MSE (fresh data) and minimal risk per dimension."""
    d, s2 = inst.d, inst.sigma**2
    rng = np.random.default_rng(seed + 999)
    U = inst.U if inst.U is not None else np.stack([inst.u, -inst.u])
    Xt = _tokens(n_test, U, inst.sigma, rng)
    Yt = teacher(Xt, inst.Qstar, inst.omega, inst.A)
    Qm = Q.reshape(d, -1)

    def err(X: np.ndarray, Y: np.ndarray) -> float:
        h = np.einsum("nld,da->nla", X, Qm) / np.sqrt(d)
        S = _softmax_rows(np.einsum("nla,nka->nlk", h, h))
        return float(np.sum((Y - S @ X) ** 2) / (X.shape[0] * d))

    R, _ = risk_and_grad(Q, inst)
    qm = s2 * Qm.T @ Qm / d
    mv = Qm.T @ inst.u / d
    tv = s2 * Qm.T @ inst.Qstar / d
    ev = np.linalg.eigvalsh(qm)
    nm, nt = float(np.linalg.norm(mv)), float(np.linalg.norm(tv))
    return {"q": float(np.trace(qm)), "m": nm, "theta": nt, "q_eig_min": float(ev[0]),
            "q_eig_max": float(ev[-1]), "cos_m_theta": float(abs(mv @ tv) / max(nm * nt, 1e-300)),
            "train_loss": err(inst.X, inst.Y), "mse": err(Xt, Yt), "risk_per_d": R / d}


def run(d: int, alpha: float, init: str, *, seed: int = 0, r: int = 1, n_test: int = 20000,
        **kw: Any) -> dict[str, float]:
    """Sample, train from ``init`` (rank ``r``), measure (test MSE on ``n_test`` fresh samples: at
    d = 1600 the default 20000 hold 0.5 GB per array): one row of a simulation table."""
    inst = sample_instance(d, alpha, seed=seed, **kw)
    Q, res = train(inst, init, seed=seed, r=r)
    out = measure(Q, inst, seed=seed, n_test=n_test)
    out.update(d=d, alpha=alpha, init=init, seed=seed, r=r, converged=bool(res.success),
               grad_norm=float(np.max(np.abs(res.jac))))
    return out


def hessian_probe(Q: np.ndarray, inst: Instance, *, k: int = 3, eps: float = 1e-5,
                  subspace: str | None = None, tol: float = 1e-6) -> dict[str, float]:
    """Second-order check of a trained end point ``Q`` (r = 1): the ``k`` smallest eigenvalues of
    the Hessian of ``R`` (Lanczos, ``scipy.sparse.linalg.eigsh``, on Hessian-vector products by
    central differences of the analytic gradient, step ``eps``), and the curvature ``eᵀHe`` along the
    unit semantic direction ``e = Q*/‖Q*‖`` and the positional one ``u/‖u‖``. With ``subspace="m0"``
    the Hessian is the one restricted to ``uᵀQ = 0`` (``PHP``). A strict local minimum has
    ``lambda_min > 0``; the distance to the exact critical point is then at most
    ``‖∇R‖/lambda_min`` (returned as ``dist_bound``) and θ can move by at most
    ``σ² dist_bound/√d`` (``theta_shift_bound``)."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    d = inst.d
    x = np.asarray(Q, dtype=float).reshape(-1)
    u = inst.u / np.linalg.norm(inst.u)
    P = (lambda v: v - (v @ u) * u) if subspace == "m0" else (lambda v: v)

    def g(y: np.ndarray) -> np.ndarray:
        return P(risk_and_grad(P(y), inst)[1])

    def hv(v: np.ndarray) -> np.ndarray:
        v = P(np.asarray(v, dtype=float).reshape(-1))
        return P((g(x + eps * v) - g(x - eps * v)) / (2 * eps))

    H = LinearOperator((d, d), matvec=hv, dtype=float)
    if subspace == "m0":  # the u direction is a zero mode of PHP: shift it out of the spectrum
        H = LinearOperator((d, d), matvec=lambda v: hv(v) + 1e3 * (np.ravel(v) @ u) * u, dtype=float)
    w = np.sort(eigsh(H, k=k, which="SA", tol=tol, return_eigenvectors=False))
    es = inst.Qstar / np.linalg.norm(inst.Qstar)
    gn = float(np.linalg.norm(g(x)))
    out = {f"hess_eig_{i}": float(w[i]) for i in range(k)}
    out.update(hess_min=float(w[0]), curv_semantic=float(es @ hv(es)), grad_norm2=gn,
               dist_bound=gn / float(w[0]) if w[0] > 0 else float("inf"))
    if subspace != "m0":
        out["curv_positional"] = float(u @ hv(u))
    out["theta_shift_bound"] = inst.sigma**2 * out["dist_bound"] / np.sqrt(d)
    return out

