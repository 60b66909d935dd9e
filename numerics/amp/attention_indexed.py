r"""GAMP-RIE for the attention-indexed model with $T$ tokens at finite size.

Model (Boncoraglio, Troiani, Erba, Zdeborová 2025, arXiv:2506.01582; project spec
``attention_indexed_multitoken.md`` §1, §5): $S^*=WW^\top/\sqrt{rd}$, $W\in\mathbb R^{d\times r}$
i.i.d. $N(0,1)$, $r=\rho d$; $n=\alpha d^2$ samples of $T$ tokens $x_{\mu a}\sim N(0,I_d)$;
pre-activations on the $K=T(T+1)/2$ free pairs $a\le b$,
$h_{\mu,ab}=\langle A_{\mu,ab},S^*\rangle$ with $A_{aa}=(x_ax_a^\top-I)/\sqrt d$ and
$A_{ab}=(x_ax_b^\top+x_bx_a^\top)/(2\sqrt d)$; labels: the row-wise softmax of $h$ ($\beta=1$) or,
at $T=2$, the row-wise hardmax.

This is a generalised linear model on the symmetric matrix $S$ with $K$ correlated outputs per
sample. With $m^t$ the current error per $d$ ($\|\hat S-S^*\|_F^2/d$), each output carries the
variance $V^tC_k$, $C_{aa}=2$, $C_{a<b}=1$. One iteration (written here from the GLM form, not
from the symbolic layer):

* $\omega_\mu=\langle A_\mu,\hat S^t\rangle-V^tC\,g_\mu^{t-1}$, $g_\mu=g_{\rm out}(y_\mu,\omega_\mu,V^t)$;
* $A^t=\frac1d\sum_\mu g_\mu^\top Cg_\mu$ (the Bayes/Nishimori form of $-\sum\partial g$),
  $R^t=\hat S^t+\frac1{A^t}\sum_{\mu,k}g_{\mu k}A_{\mu k}$: $S^*$ plus GOE noise with semicircle
  variance $\Delta^t=d/(2A^t)$;
* $\hat S^{t+1}=$ the RIE of $R^t$ (eigenvalues $\lambda\mapsto\lambda-2\Delta\,\mathrm{Re}\,G(\lambda)$, $G$ the
  Stieltjes transform of $\sqrt\rho\,\mathrm{MP}(1/\rho)\boxplus\mathrm{sc}(\Delta)$ from the spec's cubic
  $\sqrt a\Delta G^3-(\sqrt az+\Delta)G^2+(z+\sqrt a-1/\sqrt a)G-1=0$, $a=1/\rho$, typed here);
  $V^{t+1}=2\Delta\operatorname{div}/d^2$ (the divergence of the spectral map).

Channels: softmax, any $T$: $y$ is equivalent to the log-ratios $u=Ph$ (noiseless), so
$g=P^\top(PCP^\top)^+(u-P\omega)/V$. Hardmax, $T=2$: with $s_a=\pm1$ (does $h_{aa}$ win row $a$),
$Z=\Phi_2(k_1,k_2;s_1s_2/3)$, $k_a=s_a(\omega_{aa}-\omega_{12})/\sqrt{3V}$;
$g_{aa}=s_a\partial_a\Phi_2/(\sqrt{3V}Z)$, $g_{12}=-(g_{11}+g_{22})$ with
$\partial_1\Phi_2=\varphi(k_1)\Phi((k_2-rk_1)/\sqrt{1-r^2})$ (``derivative="correct"``) or the
bivariate density $\varphi_2(k_1,k_2;r)$ (``"authors"``, as in their ``AMP_hardmax.py``).
No SymPy, no ``derive`` import.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from ..special import bvn_cdf

__all__ = ["Problem", "sample_problem", "pairs", "stieltjes", "rie_denoise", "gamp_rie", "AMPTrace", "run"]


def pairs(T: int) -> list[tuple[int, int]]:
    """Free entries ``(a, b)``, ``a <= b``, in the order used for the output vectors."""
    return [(a, b) for a in range(T) for b in range(a, T)]


def _weights(T: int) -> np.ndarray:
    return np.array([2.0 if a == b else 1.0 for a, b in pairs(T)])


@dataclass
class Problem:
    """One instance: tokens ``X`` (n, T, d), labels ``y``, teacher ``S`` (d, d)."""

    X: np.ndarray
    y: np.ndarray
    S: np.ndarray
    alpha: float
    rho: float
    activation: str


def _preacts(X: np.ndarray, M: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """``h_{μ,ab} = (x_aᵀ M x_b − δ_ab Tr M)/√d`` on the free pairs: shape (n, K)."""
    n, T, d = X.shape
    pr = pairs(T)
    out = np.empty((n, len(pr)))
    tr = np.trace(M)
    for s in range(0, n, chunk):
        Xc = X[s:s + chunk].astype(np.float64)
        H = np.einsum("nad,nbd->nab", Xc @ M, Xc)
        for k, (a, b) in enumerate(pr):
            out[s:s + chunk, k] = H[:, a, b] - (tr if a == b else 0.0)
    return out / np.sqrt(d)


def _backproject(X: np.ndarray, g: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """``Σ_{μ,k} g_{μk} A_{μk}`` (a symmetric d × d matrix)."""
    n, T, d = X.shape
    pr = pairs(T)
    out = np.zeros((d, d))
    diag = 0.0
    for s in range(0, n, chunk):
        Xc = X[s:s + chunk].astype(np.float64)
        G = np.zeros((Xc.shape[0], T, T))
        for k, (a, b) in enumerate(pr):
            if a == b:
                G[:, a, a] = g[s:s + chunk, k]
                diag += g[s:s + chunk, k].sum()
            else:
                G[:, a, b] = G[:, b, a] = g[s:s + chunk, k] / 2
        Y = np.einsum("nab,nbd->nad", G, Xc)
        out += Xc.reshape(-1, d).T @ Y.reshape(-1, d)
    out -= diag * np.eye(d)
    return (out + out.T) / (2 * np.sqrt(d))


def sample_problem(d: int, alpha: float, rho: float, T: int, activation: str,
                   rng: np.random.Generator) -> Problem:
    """Draw ``S* = WWᵀ/√(rd)`` and ``n = round(α d²)`` labelled samples of ``T`` tokens."""
    if activation not in ("softmax", "hardmax"):
        raise ValueError(f"activation must be 'softmax' or 'hardmax', got {activation!r}")
    if activation == "hardmax" and T != 2:
        raise ValueError("hardmax is implemented for T = 2")
    r = max(1, int(round(rho * d)))
    W = rng.standard_normal((d, r))
    S = W @ W.T / np.sqrt(r * d)
    n = int(round(alpha * d * d))
    X = rng.standard_normal((n, T, d))
    h = _preacts(X, S)
    H = np.zeros((n, T, T))
    for k, (a, b) in enumerate(pairs(T)):
        H[:, a, b] = H[:, b, a] = h[:, k]
    if activation == "softmax":
        z = H - H.max(axis=2, keepdims=True)
        y = np.exp(z) / np.exp(z).sum(axis=2, keepdims=True)
    else:
        y = (H == H.max(axis=2, keepdims=True)).astype(float)
    return Problem(X, y, S, alpha, rho if r == rho * d else r / d, activation)


def _log_ratio_matrix(T: int) -> np.ndarray:
    idx = {p: i for i, p in enumerate(pairs(T))}
    rows = []
    for a in range(T):
        for b in range(T - 1):
            row = np.zeros(len(idx))
            row[idx[(min(a, b), max(a, b))]] += 1
            row[idx[(min(a, T - 1), max(a, T - 1))]] -= 1
            rows.append(row)
    return np.array(rows)


def _g_softmax(y: np.ndarray, omega: np.ndarray, V: float) -> np.ndarray:
    T = y.shape[1]
    P = _log_ratio_matrix(T)
    C = np.diag(_weights(T))
    u = np.log(y[:, :, :T - 1]) - np.log(y[:, :, T - 1:])          # (n, T, T-1), rows a
    u = u.reshape(len(y), -1)
    Mp = np.linalg.pinv(P @ C @ P.T)
    return ((u - omega @ P.T) @ Mp @ P) / V


def _g_hardmax(y: np.ndarray, omega: np.ndarray, V: float, derivative: str) -> np.ndarray:
    s1 = np.where(y[:, 0, 0] > 0.5, 1.0, -1.0)
    s2 = np.where(y[:, 1, 1] > 0.5, 1.0, -1.0)
    sd = np.sqrt(3 * V)
    k1 = s1 * (omega[:, 0] - omega[:, 1]) / sd                         # pairs: 00, 01, 11
    k2 = s2 * (omega[:, 2] - omega[:, 1]) / sd
    r = s1 * s2 / 3
    q = np.sqrt(1 - r * r)
    Z = np.maximum(bvn_cdf(k1, k2, r), 1e-300)
    if derivative == "correct":
        d1 = np.exp(-k1**2 / 2) / np.sqrt(2 * np.pi) * special.ndtr((k2 - r * k1) / q)
        d2 = np.exp(-k2**2 / 2) / np.sqrt(2 * np.pi) * special.ndtr((k1 - r * k2) / q)
    elif derivative == "authors":
        d1 = d2 = np.exp(-(k1**2 - 2 * r * k1 * k2 + k2**2) / (2 * q * q)) / (2 * np.pi * q)
    else:
        raise ValueError(f"derivative must be 'correct' or 'authors', got {derivative!r}")
    g11 = s1 * d1 / (sd * Z)
    g22 = s2 * d2 / (sd * Z)
    return np.stack([g11, -(g11 + g22), g22], axis=1)


def stieltjes(lam: np.ndarray, rho: float, delta: float, empirical: np.ndarray | None = None) -> np.ndarray:
    r"""$G(\lambda+i0)$ of $\sqrt\rho\,\mathrm{MP}(1/\rho)\boxplus\mathrm{sc}(\Delta)$ from the spec's cubic;
    outside the bulk the real root nearest ``empirical`` (an empirical Hilbert transform)."""
    lam = np.asarray(lam, float)
    sa = np.sqrt(1 / rho)
    coeffs = np.stack([np.full_like(lam, sa * delta), -(sa * lam + delta),
                       lam + sa - 1 / sa, -np.ones_like(lam)], axis=-1)        # highest first
    mon = coeffs[:, 1:] / coeffs[:, :1]
    comp = np.zeros((lam.size, 3, 3))
    comp[:, 0, :] = -mon
    comp[:, 1, 0] = comp[:, 2, 1] = 1.0
    rts = np.linalg.eigvals(comp)
    im = np.abs(rts.imag)
    inside = im.max(axis=1) > 1e-9 * np.maximum(1.0, np.abs(rts).max(axis=1))
    G = rts[np.arange(lam.size), np.argmax(im, axis=1)]
    G = np.where(inside, G.real - 1j * np.abs(G.imag), G)
    if np.any(~inside):
        ref = np.zeros(lam.size) if empirical is None else empirical
        kk = np.argmin(np.abs(rts.real - ref[:, None]), axis=1)
        G = np.where(inside, G, rts[np.arange(lam.size), kk].real + 0j)
    return G


def rie_denoise(R: np.ndarray, rho: float, delta: float) -> tuple[np.ndarray, float]:
    """RIE of ``R = S* + √Δ GOE`` and the divergence of the spectral map."""
    lam, U = np.linalg.eigh((R + R.T) / 2)
    diff = lam[:, None] - lam[None, :]
    np.fill_diagonal(diff, np.inf)
    emp = (1.0 / diff).sum(axis=1) / lam.size
    h = stieltjes(lam, rho, delta, emp).real
    phi = lam - 2 * delta * h
    eps = 1e-5 * max(1.0, float(np.abs(lam).max()))
    dphi = 1 - 2 * delta * (stieltjes(lam + eps, rho, delta, emp).real
                            - stieltjes(lam - eps, rho, delta, emp).real) / (2 * eps)
    dl = lam[:, None] - lam[None, :]
    dp = phi[:, None] - phi[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(np.abs(dl) > 1e-12, dp / dl, (dphi[:, None] + dphi[None, :]) / 2)
    div = float(np.triu(dd, 1).sum() + dphi.sum())
    return (U * phi) @ U.T, div


@dataclass
class AMPTrace:
    """``mse[t] = ‖Ŝᵗ − S*‖²_F/d`` (t = 0: the prior mean √ρ I) and ``v[t]``, AMP's own estimate."""

    mse: list[float] = field(default_factory=list)
    v: list[float] = field(default_factory=list)
    delta: list[float] = field(default_factory=list)


def gamp_rie(prob: Problem, n_iter: int = 40, derivative: str = "correct", damping: float = 0.5,
             tol: float = 1e-6) -> AMPTrace:
    """Run GAMP-RIE (module docstring); stops early when ``|ΔŜ|²/d < tol``."""
    X, y, S = prob.X, prob.y, prob.S
    n, T, d = X.shape
    C = _weights(T)
    S_hat = np.sqrt(prob.rho) * np.eye(d)
    V = 1.0
    g_prev = np.zeros((n, len(C)))
    tr = AMPTrace()
    tr.mse.append(float(np.sum((S_hat - S) ** 2) / d))
    tr.v.append(V)
    if prob.activation == "softmax" and T == 1:   # a one-token softmax is constant: no information
        return tr
    for _ in range(n_iter):
        omega = _preacts(X, S_hat) - V * C * g_prev
        g = (_g_softmax(y, omega, V) if prob.activation == "softmax"
             else _g_hardmax(y, omega, V, derivative))
        A = float(np.sum(g * g * C)) / d
        if not (np.isfinite(A) and A > 0):     # a diverged (mismatched) run: stop, keep the trace
            break
        R = S_hat + _backproject(X, g) / A
        delta = d / (2 * A)
        S_new, div = rie_denoise(R, prob.rho, delta)
        V_new = 2 * delta * div / d**2
        change = float(np.sum((S_new - S_hat) ** 2) / d)
        S_hat = damping * S_hat + (1 - damping) * S_new
        V = max(damping * V + (1 - damping) * V_new, 1e-12)   # a mismatched g can drive V ≤ 0
        g_prev = g
        tr.mse.append(float(np.sum((S_hat - S) ** 2) / d))
        tr.v.append(V)
        tr.delta.append(delta)
        if change < tol or not np.isfinite(tr.mse[-1]):
            break
    return tr


def run(d: int = 60, alpha: float = 0.5, rho: float = 0.5, T: int = 2, activation: str = "softmax",
        derivative: str = "correct", seeds: Any = (0,), n_iter: int = 40, damping: float = 0.5
        ) -> dict[str, Any]:
    """GAMP-RIE on independent instances (one per seed): final ``mse`` per seed, mean and
    standard error, and the traces."""
    traces = []
    for s in seeds:
        prob = sample_problem(d, alpha, rho, T, activation, np.random.default_rng(s))
        traces.append(gamp_rie(prob, n_iter, derivative, damping))
    final = np.array([t.mse[-1] for t in traces])
    best = np.array([np.nanmin(t.mse[1:]) for t in traces])   # oracle-stopped (uses S*): a lower bound
    return {"mse": final, "best": best, "best_mean": float(best.mean()), "mean": float(final.mean()),
            "sem": float(final.std(ddof=1) / np.sqrt(len(final))) if len(final) > 1 else float("nan"),
            "traces": traces, "d": d, "alpha": alpha, "rho": rho, "T": T, "activation": activation,
            "derivative": derivative}
