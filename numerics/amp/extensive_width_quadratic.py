r"""GAMP-RIE for the extensive-width quadratic network at finite size.

Model (Maillard, Troiani, Martin, Krzakala, Zdeborová 2024, arXiv:2408.03733): $S^*=WW^\top/m$,
$W\in\mathbb R^{d\times m}$ i.i.d. $N(0,1)$, $m=\kappa d$ (spectrum $\mathrm{MP}(1/\kappa)$, mean 1);
$n=\alpha d^2$ samples $y_\mu=\operatorname{Tr}(Z_\mu S^*)+\sqrt\Delta\,\xi_\mu$ with
$Z_\mu=(x_\mu x_\mu^\top-I)/\sqrt d$, $x_\mu\sim N(0,I_d)$.

The output is linear in $S$, so this is a generalised linear model on the $d(d+1)/2$ free entries
of $S$ in the Frobenius-isometric coordinates $(S_{ii},\sqrt2 S_{i<j})$, in which every sensing
entry has variance $2/d$. Standard GAMP for the Gaussian channel with a non-separable
(rotation-invariant) denoiser then reads, with $\hat S^0=I$ (prior mean), $V^0=2/\kappa$,
$g^{-1}=0$:

* $\omega^t_\mu=\operatorname{Tr}(Z_\mu\hat S^t)-V^tg^{t-1}_\mu$,
  $g^t_\mu=(y_\mu-\omega^t_\mu)/(\Delta+V^t)$;
* $R^t=\hat S^t+\frac{d(\Delta+V^t)}{2n}\sum_\mu g^t_\mu Z_\mu$, which is $S^*$ plus GOE noise
  of semicircle variance $\Delta^t_{\rm eff}=(\Delta+V^t)/(4\alpha)$;
* $\hat S^{t+1}=f(R^t)$, the RIE: eigenvectors of $R^t$, eigenvalues
  $\lambda\mapsto\lambda-2\Delta_{\rm eff}\,\mathrm{Re}\,G(\lambda)$ with $G$ the Stieltjes transform of
  $\mathrm{MP}(1/\kappa)\boxplus\mathrm{sc}(\Delta_{\rm eff})$;
* $V^{t+1}=\frac{4\Delta_{\rm eff}}{d^2}\operatorname{div}f(R^t)$, the divergence of a spectral
  function $\sum_{i<j}\frac{\varphi_i-\varphi_j}{\lambda_i-\lambda_j}+\sum_i\varphi'(\lambda_i)$.

Its state evolution is $m^{t+1}=\mathrm{mmse}_{\rm RIE}((\Delta+2m^t)/(4\alpha))$, $m^0=1/\kappa$, with
$m^t=\|\hat S^t-S^*\|_F^2/d$ (the model's ``se_map``); $V^t$ estimates $2m^t$ from the data alone.

The Stieltjes transform and the RIE are :mod:`numerics.amp.common`'s, from the cubic written
by hand (independent of the SymPy derivation): with $c=1/\kappa$, MP obeys
$c\,wG^2-(w+c-1)G+1=0$; subordination $w=z-\Delta G$ gives
$-c\Delta G^3+(cz+\Delta)G^2-(z+c-1)G+1=0$. No SymPy, no ``derive`` import.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .common import Instance, rie_denoise, stieltjes_mp_sc

__all__ = ["Problem", "sample_problem", "stieltjes_mp_sc", "rie_denoise", "gamp_rie", "AMPTrace"]


@dataclass
class Problem(Instance):
    """One finite-size instance: inputs ``X`` (n, d), labels ``y`` (n,), teacher ``S`` (d, d)."""

    kappa: float
    delta: float


def _quadratic_form(X: np.ndarray, M: np.ndarray, chunk: int) -> np.ndarray:
    """``√d Tr(Z_μ M) = x_μᵀ M x_μ − Tr M`` for every row (chunked to bound memory). The
    multiple ``t I`` of the identity is split off and done in float64
    (``t(‖x‖² − d)``), so a low-precision ``X`` only carries the traceless part."""
    d = X.shape[1]
    t = float(np.trace(M)) / d
    Mf = (M - t * np.eye(d)).astype(X.dtype)
    out = np.empty(X.shape[0])
    for s in range(0, X.shape[0], chunk):
        Xc = X[s:s + chunk]
        sq = np.einsum("ij,ij->i", Xc, Xc, dtype=np.float64)
        out[s:s + chunk] = np.einsum("ij,ij->i", Xc @ Mf, Xc, dtype=np.float64) + t * (sq - d)
    return out


def _weighted_gram(X: np.ndarray, g: np.ndarray, chunk: int) -> np.ndarray:
    """``Σ_μ g_μ x_μ x_μᵀ`` (float64 accumulation over chunks)."""
    d = X.shape[1]
    out = np.zeros((d, d))
    for s in range(0, X.shape[0], chunk):
        Xc = X[s:s + chunk]
        out += ((Xc * g[s:s + chunk, None].astype(X.dtype)).T @ Xc).astype(np.float64)
    return out


def sample_problem(d: int, alpha: float, kappa: float, delta: float, rng: np.random.Generator,
                   dtype: type = np.float32, chunk: int = 20000) -> Problem:
    """Draw ``S* = WWᵀ/m`` and ``n = round(α d²)`` labelled Gaussian inputs."""
    if d < 2:
        raise ValueError(f"d must be >= 2, got {d}")
    for name, v in (("alpha", alpha), ("kappa", kappa)):
        if not v > 0:
            raise ValueError(f"{name} must be > 0, got {v}")
    if not delta >= 0:
        raise ValueError(f"delta must be >= 0, got {delta}")
    m = max(1, int(round(kappa * d)))
    W = rng.standard_normal((d, m))
    S = W @ W.T / m
    n = int(round(alpha * d * d))
    X = rng.standard_normal((n, d), dtype=np.float32).astype(dtype, copy=False)
    y = _quadratic_form(X, S, chunk) / np.sqrt(d)
    if delta > 0:
        y = y + np.sqrt(delta) * rng.standard_normal(n)
    return Problem(X, y, S, alpha, kappa, delta)


@dataclass
class AMPTrace:
    """Per-iteration record: ``mse[t] = ‖Ŝᵗ − S*‖²_F/d`` (t = 0 is the start Ŝ⁰ = I) and
    ``v_half[t] = Vᵗ/2``, AMP's own estimate of the same quantity."""

    mse: list[float] = field(default_factory=list)
    v_half: list[float] = field(default_factory=list)
    delta_eff: list[float] = field(default_factory=list)


def gamp_rie(prob: Problem, n_iter: int = 10, chunk: int = 20000) -> AMPTrace:
    """Run GAMP-RIE (module docstring) for ``n_iter`` iterations; returns the trace."""
    X, y, S = prob.X, prob.y, prob.S
    n, d = X.shape
    sd = np.sqrt(d)
    S_hat = np.eye(d)
    V = 2.0 / prob.kappa
    g_prev = np.zeros(n)
    tr = AMPTrace()
    tr.mse.append(float(np.sum((S_hat - S) ** 2) / d))
    tr.v_half.append(V / 2)
    for _ in range(n_iter):
        omega = _quadratic_form(X, S_hat, chunk) / sd - V * g_prev
        g = (y - omega) / (prob.delta + V)
        back = (_weighted_gram(X, g, chunk) - g.sum() * np.eye(d)) / sd
        R = S_hat + d * (prob.delta + V) / (2 * n) * back
        de = d * d * (prob.delta + V) / (4 * n)
        S_hat, div = rie_denoise(R, prob.kappa, de)
        V = 4 * de * div / d**2
        g_prev = g
        tr.mse.append(float(np.sum((S_hat - S) ** 2) / d))
        tr.v_half.append(V / 2)
        tr.delta_eff.append(de)
    return tr
