r"""Pieces shared by the GAMP-RIE solvers on a symmetric matrix $S^*$ (``extensive_width_quadratic``,
``attention_indexed``): the instance record and the rotation-invariant denoiser.

Denoiser. $R=S^*+\sqrt\Delta\,Z$ with $Z$ a GOE matrix of semicircle variance 1 (off-diagonal
variance $1/d$, diagonal $2/d$) and a rotation-invariant prior; the Bayes estimator keeps the
eigenvectors of $R$ and maps each eigenvalue $\lambda\mapsto\varphi(\lambda)=\lambda-2\Delta\,\mathrm{Re}\,G(\lambda)$
(Bun, Allez, Bouchaud, Potters 2016), $G$ the Stieltjes transform of the spectrum of $R$.
For the prior $\mathrm{MP}(1/\kappa)$ (mean 1), with $c=1/\kappa$, Marchenko–Pastur obeys
$c\,wG^2-(w+c-1)G+1=0$ and free convolution with the semicircle is the subordination $w=z-\Delta G$:

$$-c\Delta G^3+(cz+\Delta)G^2-(z+c-1)G+1=0 .$$

A prior $s\cdot\mathrm{MP}(1/\kappa)$ is the same problem scaled: $R/s=S^*/s+\sqrt{\Delta/s^2}\,Z$, so
$\hat S=s\,\hat S_{\mathrm{MP}}(R/s;\Delta/s^2)$ with the same divergence (:func:`rie_denoise_scaled`).
The divergence of a spectral map in the Frobenius-isometric coordinates $(S_{ii},\sqrt2S_{i<j})$ is
$\sum_{i<j}(\varphi_i-\varphi_j)/(\lambda_i-\lambda_j)+\sum_i\varphi'(\lambda_i)$; by Tweedie's formula
(noise variance $2\Delta/d$ per coordinate) the posterior error per $d$ is $2\Delta\,\mathrm{div}/d^2$.

Written by hand, independently of the symbolic layer (no SymPy, no ``derive`` import).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Instance", "stieltjes_mp_sc", "empirical_hilbert", "rie_denoise", "rie_denoise_scaled"]


@dataclass
class Instance:
    """One finite-size instance: inputs ``X``, labels ``y``, teacher ``S`` (d, d), sample ratio
    ``alpha = n/d²``; each model's ``Problem`` adds its own parameters."""

    X: np.ndarray
    y: np.ndarray
    S: np.ndarray
    alpha: float


def stieltjes_mp_sc(lam: np.ndarray, kappa: float, delta_eff: float,
                    empirical: np.ndarray | None = None) -> np.ndarray:
    r"""$G(\lambda+i0^+)$ of $\mathrm{MP}(1/\kappa)\boxplus\mathrm{sc}(\Delta_{\rm eff})$ at real ``lam``.

    Inside the bulk the cubic has one complex-conjugate pair: the physical root is the one with
    negative imaginary part. Outside (finite-size eigenvalues beyond the edge) all roots are
    real: the root nearest to ``empirical`` (an empirical estimate of $\mathrm{Re}\,G$) is taken.
    """
    lam = np.asarray(lam, float)
    c = 1.0 / kappa
    coeffs = np.stack([np.full_like(lam, -c * delta_eff), c * lam + delta_eff,
                       -(lam + c - 1.0), np.ones_like(lam)], axis=-1)   # highest degree first
    mon = coeffs[:, 1:] / coeffs[:, :1]
    comp = np.zeros((lam.size, 3, 3))
    comp[:, 0, :] = -mon
    comp[:, 1, 0] = comp[:, 2, 1] = 1.0
    r = np.linalg.eigvals(comp)
    im = np.abs(r.imag)
    scale = np.maximum(1.0, np.abs(r).max(axis=1))
    inside = im.max(axis=1) > 1e-9 * scale
    k = np.argmax(im, axis=1)
    G = r[np.arange(lam.size), k]
    G = np.where(inside, G.real - 1j * np.abs(G.imag), G)
    if np.any(~inside):
        ref = np.zeros(lam.size) if empirical is None else np.asarray(empirical, float)
        kk = np.argmin(np.abs(r.real - ref[:, None]), axis=1)
        G = np.where(inside, G, r[np.arange(lam.size), kk].real + 0j)
    return G


def empirical_hilbert(lam: np.ndarray) -> np.ndarray:
    """``(1/d) Σ_{j≠i} 1/(λ_i − λ_j)``: only used to pick the real root outside the bulk."""
    diff = lam[:, None] - lam[None, :]
    np.fill_diagonal(diff, np.inf)
    return (1.0 / diff).sum(axis=1) / lam.size


def rie_denoise(R: np.ndarray, kappa: float, delta_eff: float) -> tuple[np.ndarray, float]:
    r"""Rotation-invariant estimator of $S^*\sim\mathrm{MP}(1/\kappa)$ from $R=S^*+\sqrt{\Delta_{\rm eff}}\,\mathrm{GOE}$
    and the divergence of the map (Frobenius-isometric coordinates of symmetric matrices)."""
    lam, U = np.linalg.eigh((R + R.T) / 2)
    emp = empirical_hilbert(lam)
    h = stieltjes_mp_sc(lam, kappa, delta_eff, emp).real
    phi = lam - 2 * delta_eff * h
    # φ'(λ) by central differences of the analytic branch (O(d) term of the divergence)
    eps = 1e-5 * max(1.0, float(np.abs(lam).max()))
    hp = stieltjes_mp_sc(lam + eps, kappa, delta_eff, emp).real
    hm = stieltjes_mp_sc(lam - eps, kappa, delta_eff, emp).real
    dphi = 1 - 2 * delta_eff * (hp - hm) / (2 * eps)
    dl = lam[:, None] - lam[None, :]
    dp = phi[:, None] - phi[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(np.abs(dl) > 1e-12, dp / dl, (dphi[:, None] + dphi[None, :]) / 2)
    div = float(np.triu(dd, 1).sum() + dphi.sum())
    S_hat = (U * phi) @ U.T
    return S_hat, div


def rie_denoise_scaled(R: np.ndarray, scale: float, kappa: float, delta: float
                       ) -> tuple[np.ndarray, float]:
    r"""The RIE for the prior ``scale``$\cdot\mathrm{MP}(1/\kappa)$ at noise $\Delta$:
    ``scale`` $\cdot$ :func:`rie_denoise` $(R/s,\kappa,\Delta/s^2)$; the divergence is unchanged."""
    S_hat, div = rie_denoise(np.asarray(R, float) / scale, kappa, delta / scale**2)
    return scale * S_hat, div
