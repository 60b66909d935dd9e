"""Finite-d simulation of tied low-rank dot-product attention (Cui, Behrens, Krzakala, Zdeborová).

Written from the model's definition only (independent of the replica equations):

- tokens ``x_ℓ = s_ℓ p + z_ℓ`` with ``z_ℓ ~ N(0, σ² I_d)``, opposite positional encodings
  ``s = (+1, −1)``, ``p = u/√d`` with ``‖u‖² = d`` (so ``‖p‖ = 1``);
- teacher ``Y = T(X) X``, ``T = (1−ω) softmax(h* h*ᵀ) + ω A`` with ``h* = X Q*/√d``,
  ``‖Q*‖² = d``, ``Q* ⟂ u``;
- student ``f_Q(X) = softmax(h hᵀ) X``, ``h = X Q/√d`` (rank one, two tokens);
- risk ``R(Q) = Σ_μ ‖Y_μ − f_Q(X_μ)‖²/(2d) + (λ/2)‖Q‖²``, minimised by full-batch
  gradient methods from a positional (``Q ∝ u``) and a semantic (``Q ∝ Q*``) start.

Measured: ``q = σ²‖Q‖²/d``, ``m = uᵀQ/d``, ``θ = σ² Q*ᵀQ/d`` (signs fixed by ``Q → −Q``
symmetry: reported as absolute values), training loss ``Σ_μ‖Y−f‖²/(n d)``, test MSE on
fresh samples, and ``R/d`` (the minimal risk per dimension, which the theory calls −Φ).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

__all__ = ["Instance", "sample_instance", "risk_and_grad", "train", "measure", "run"]


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


def _softmax_rows(s: np.ndarray) -> np.ndarray:
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


def _tokens(n: int, u: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    d = u.size
    X = sigma * rng.standard_normal((n, 2, d))
    X[:, 0, :] += u / np.sqrt(d)
    X[:, 1, :] -= u / np.sqrt(d)
    return X


def teacher(X: np.ndarray, Qstar: np.ndarray, omega: float, A: np.ndarray) -> np.ndarray:
    d = Qstar.size
    hs = X @ Qstar / np.sqrt(d)  # (n, 2)
    T = (1 - omega) * _softmax_rows(hs[:, :, None] * hs[:, None, :]) + omega * A[None]
    return T @ X


def sample_instance(d: int, alpha: float, *, sigma: float = 0.5, omega: float = 0.3,
                    lam: float = 0.01, A: Any = None, seed: int = 0) -> Instance:
    """``n = round(α d)`` samples; ``u`` and ``Q*`` are random, orthogonalised, norm ``√d``."""
    rng = np.random.default_rng(seed)
    A = np.array([[0.6, 0.4], [0.4, 0.6]]) if A is None else np.asarray(A, dtype=float)
    u = rng.standard_normal(d)
    u *= np.sqrt(d) / np.linalg.norm(u)
    Qs = rng.standard_normal(d)
    Qs -= (Qs @ u) / d * u
    Qs *= np.sqrt(d) / np.linalg.norm(Qs)
    n = max(1, int(round(alpha * d)))
    X = _tokens(n, u, sigma, rng)
    return Instance(X, teacher(X, Qs, omega, A), u, Qs, d, sigma, omega, lam, A)


def risk_and_grad(Q: np.ndarray, inst: Instance) -> tuple[float, np.ndarray]:
    """``R(Q)`` and its analytic gradient (chain rule through the row softmax)."""
    X, Y, d = inst.X, inst.Y, inst.d
    h = X @ Q / np.sqrt(d)  # (n, 2)
    S = _softmax_rows(h[:, :, None] * h[:, None, :])  # (n, 2, 2)
    Rres = Y - S @ X  # (n, 2, d)
    loss = 0.5 * np.sum(Rres * Rres) / d
    G = -(Rres @ np.swapaxes(X, 1, 2)) / d  # dloss/dS, (n, 2, 2)
    dA = S * (G - np.sum(G * S, axis=2, keepdims=True))  # dloss/d(scores)
    dh = np.einsum("nlk,nk->nl", dA + np.swapaxes(dA, 1, 2), h)
    grad = np.einsum("nl,nld->d", dh, X) / np.sqrt(d) + inst.lam * Q
    return float(loss + 0.5 * inst.lam * Q @ Q), grad


def train(inst: Instance, init: str, *, seed: int = 0, gtol: float = 1e-9,
          maxiter: int = 20000) -> tuple[np.ndarray, optimize.OptimizeResult]:
    """Minimise the risk from a positional (``Q ∝ u``), semantic (``Q ∝ Q*``) or random start
    with full-batch L-BFGS on the analytic gradient."""
    d = inst.d
    rng = np.random.default_rng(seed + 12345)
    if init == "positional":
        Q0 = 0.5 * inst.u + 0.01 * rng.standard_normal(d)
    elif init == "semantic":
        Q0 = 1.0 * inst.Qstar + 0.01 * rng.standard_normal(d)
    elif init == "random":
        Q0 = rng.standard_normal(d)
    else:
        raise ValueError(f"init must be 'positional', 'semantic' or 'random', got {init!r}")
    res = optimize.minimize(risk_and_grad, Q0, args=(inst,), jac=True, method="L-BFGS-B",
                            options={"maxiter": maxiter, "gtol": gtol, "ftol": 1e-15, "maxcor": 30})
    return res.x, res


def measure(Q: np.ndarray, inst: Instance, *, n_test: int = 20000, seed: int = 1) -> dict[str, float]:
    """Overlaps, training loss, test MSE (fresh data) and minimal risk per dimension."""
    d, s2 = inst.d, inst.sigma**2
    rng = np.random.default_rng(seed + 999)
    Xt = _tokens(n_test, inst.u, inst.sigma, rng)
    Yt = teacher(Xt, inst.Qstar, inst.omega, inst.A)

    def err(X: np.ndarray, Y: np.ndarray) -> float:
        h = X @ Q / np.sqrt(d)
        S = _softmax_rows(h[:, :, None] * h[:, None, :])
        return float(np.sum((Y - S @ X) ** 2) / (X.shape[0] * d))

    R, _ = risk_and_grad(Q, inst)
    return {"q": s2 * Q @ Q / d, "m": abs(inst.u @ Q) / d, "theta": abs(s2 * inst.Qstar @ Q) / d,
            "train_loss": err(inst.X, inst.Y), "mse": err(Xt, Yt), "risk_per_d": R / d}


def run(d: int, alpha: float, init: str, *, seed: int = 0, **kw: Any) -> dict[str, float]:
    """Sample, train from ``init``, measure: one row of a simulation table."""
    inst = sample_instance(d, alpha, seed=seed, **kw)
    Q, res = train(inst, init, seed=seed)
    out = measure(Q, inst, seed=seed)
    out.update(d=d, alpha=alpha, init=init, seed=seed, converged=bool(res.success),
               grad_norm=float(np.max(np.abs(res.jac))))
    return out
