"""Monte Carlo check of the two-layer tied-attention thresholds (independent of the quadrature).

Teachers ``(z1, z2) ~ N(0, I_2)²`` produce ``y = softmax(h hᵀ)``, ``h = (cI + softmax(z1 z1ᵀ)) z2``
computed with explicit softmax matrices. ``h`` is recovered from ``y`` up to sign through the
logits, and the posterior moments ``E[z_ℓ z_ℓᵀ | y]`` are estimated by self-normalised importance
sampling with proposals ``z1 ~ N(0, I_2)`` and ``z2 = ±A(z1)⁻¹h`` (batched ``numpy.linalg``),
weight ``φ(z2)/|det A(z1)|``. Returns ``λ_ℓ = E‖E[z_ℓ z_ℓᵀ|y] − I‖_F²`` with standard errors.

Different algorithm (random sampling, linear solves, logit inversion) and different code from
``derive.models._bayes_smi`` (tensor quadrature with closed-form 2×2 inverses).
"""
from __future__ import annotations

import numpy as np

__all__ = ["softmax_rows", "attention", "labels", "recover_h", "lambdas_mc", "branch_moments_mc"]


def softmax_rows(S: np.ndarray) -> np.ndarray:
    S = S - S.max(axis=-1, keepdims=True)
    E = np.exp(S)
    return E / E.sum(axis=-1, keepdims=True)


def attention(z1: np.ndarray, c: float) -> np.ndarray:
    """``cI + softmax_row(z1 z1ᵀ)`` for a batch ``z1`` of shape ``(n, 2)``."""
    return c * np.eye(2) + softmax_rows(z1[:, :, None] * z1[:, None, :])


def labels(z1: np.ndarray, z2: np.ndarray, c: float) -> np.ndarray:
    h = np.einsum("nij,nj->ni", attention(z1, c), z2)
    return softmax_rows(h[:, :, None] * h[:, None, :])


def recover_h(y: np.ndarray) -> np.ndarray:
    """``h`` up to a global sign from ``y`` (L = 2): the logit differences give
    ``h1(h2 − h1)`` and ``h2(h1 − h2)``."""
    u = np.log(y[:, 0, 1] / y[:, 0, 0])   # h1 h2 - h1²
    v = np.log(y[:, 1, 0] / y[:, 1, 1])   # h1 h2 - h2²
    gap = np.sqrt(np.maximum(-(u + v), 1e-300))   # |h2 - h1|
    return np.stack([u / gap, -v / gap], axis=1)  # = sign(h2 - h1) * (h1, h2)


def lambdas_mc(c: float, n_teachers: int = 2000, n_proposals: int = 8000, seed: int = 0,
               chunk: int = 50) -> dict[str, float]:
    """λ₁, λ₂ (layer 1, layer 2 at Q = 0) with standard errors over teachers."""
    rng = np.random.default_rng(seed)
    z1s, z2s = rng.standard_normal((n_teachers, 2)), rng.standard_normal((n_teachers, 2))
    h = recover_h(labels(z1s, z2s, c))
    prop = rng.standard_normal((n_proposals, 2))
    A = attention(prop, c)
    Ainv = np.linalg.inv(A)
    adet = np.abs(np.linalg.det(A))
    vals = {1: [], 2: []}
    for s in range(0, n_teachers, chunk):
        hh = h[s:s + chunk]
        z2 = np.einsum("mij,nj->nmi", Ainv, hh)               # (n, m, 2), the + branch
        logw = -0.5 * (z2**2).sum(-1) - np.log(adet)[None, :]
        w = np.exp(logw - logw.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        M2 = np.einsum("nm,nmi,nmj->nij", w, z2, z2)          # ± give the same z2 z2ᵀ
        M1 = np.einsum("nm,mi,mj->nij", w, prop, prop)
        for k, M in ((1, M1), (2, M2)):
            vals[k].append(((M - np.eye(2)) ** 2).sum(axis=(1, 2)))
    out = {}
    for k in (1, 2):
        v = np.concatenate(vals[k])
        out[f"lam{k}"] = float(v.mean())
        out[f"lam{k}_se"] = float(v.std(ddof=1) / np.sqrt(v.size))
    return out


def branch_moments_mc(c: float, q22: float, n_teachers: int = 4000, n_proposals: int = 20000,
                      seed: int = 0, chunk: int = 20) -> dict[str, float]:
    """On the layer-2 branch (Q₁₁ = 0, Q₂₂ = q22): ``f2 = E‖g_out,2‖²`` and
    ``lam1 = E‖E[z1 z1ᵀ|y, ω2] − I‖²`` with standard errors, by plain Monte Carlo over teachers
    (``ω2 = √q ξ``, ``z2 = ω2 + √(1−q) u``, labels through explicit softmax matrices, ``h``
    recovered from the logits) and self-normalised importance sampling over ``z1`` proposals
    from the prior (weights ``φ_V(±A⁻¹h − ω2)/|det A|``, both signs). Biased by O(1/ESS) when
    ``1 − q22`` is small: meant for moderate ``q22``."""
    rng = np.random.default_rng(seed)
    V = 1.0 - q22
    z1s = rng.standard_normal((n_teachers, 2))
    om = np.sqrt(q22) * rng.standard_normal((n_teachers, 2))
    z2s = om + np.sqrt(V) * rng.standard_normal((n_teachers, 2))
    h = recover_h(labels(z1s, z2s, c))
    prop = rng.standard_normal((n_proposals, 2))
    A = attention(prop, c)
    Ainv = np.linalg.inv(A)
    ladet = np.log(np.abs(np.linalg.det(A)))
    f2, l1 = [], []
    for s in range(0, n_teachers, chunk):
        hh, oo = h[s:s + chunk], om[s:s + chunk]
        u = np.einsum("mij,nj->nmi", Ainv, hh)                        # (n, m, 2)
        lp = -((u - oo[:, None, :]) ** 2).sum(-1) / (2 * V) - ladet[None, :]
        lm = -((u + oo[:, None, :]) ** 2).sum(-1) / (2 * V) - ladet[None, :]
        mx = np.maximum(lp.max(1, keepdims=True), lm.max(1, keepdims=True))
        wp, wm = np.exp(lp - mx), np.exp(lm - mx)
        Z = (wp + wm).sum(1, keepdims=True)
        m2 = np.einsum("nm,nmi->ni", (wp - wm) / Z, u)
        M1 = np.einsum("nm,mi,mj->nij", (wp + wm) / Z, prop, prop)
        f2.append((((m2 - oo) / V) ** 2).sum(-1))
        l1.append(((M1 - np.eye(2)) ** 2).sum(axis=(1, 2)))
    out = {}
    for k, v in (("f2", np.concatenate(f2)), ("lam1", np.concatenate(l1))):
        out[k], out[k + "_se"] = float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))
    return out
