r"""Channel integrals of the two-layer tied-attention sequence multi-index model (L = 2 tokens).

Numeric only (no SymPy): deterministic quadrature of the output-channel expectations that enter
the Bayes-optimal state evolution and its linear stability, on any array namespace ``xp``
(NumPy, CuPy or ``torch`` with the same API subset).

The model (spec §B1): $A(z_1)=cI+\mathrm{softmax}_{\rm row}(z_1z_1^\top)$, $h=A(z_1)z_2$,
$y=\mathrm{softmax}_{\rm row}(hh^\top)$. For $L=2$, $y$ fixes $h$ up to a global sign, so for
a given $y$ the posterior over $(z_1,z_2)$ lives on $z_2=\pm A(z_1)^{-1}h$ with weight
$\phi(z_1)\,\phi_V(\pm A^{-1}h-\omega_2)/|\det A(z_1)|$ (layer 1 at $Q_{11}=0$: $\omega_1=0$,
$V_{11}=1$; layer 2: $\omega_2=\sqrt{q_{22}}\,\xi$, $V_{22}=1-q_{22}$).

The expectation over the label is an integral over $h\in\mathbb R^2$ against
$p(h\mid\omega_2)=\int dz_1\,\phi(z_1)\phi_V(A^{-1}h-\omega_2)/|\det A|$ (the same integrand),
so every quantity is a 2-D integral (over $h$) of ratios of 2-D integrals (over $z_1$), averaged
over $\omega_2$ by Gauss–Hermite. Both 2-D integrals use tensor midpoint rules on boxes;
:func:`channel_moments` reports the normalisation $\int p(h)\,dh$ as a check of the boxes.

Returned per $q_{22}$:

* ``f2`` $=\mathbb E\,\|g_{\rm out,2}\|^2$, $g_{\rm out,2}=(E[z_2\mid y,\omega_2]-\omega_2)/V_{22}$
  (so $\hat q_{22}=\alpha f_2$);
* ``lam1`` $=\mathbb E\,\|E[z_1z_1^\top\mid y,\omega_2]-I\|_F^2$ (layer-1 stability);
* ``lam2_0`` $=\mathbb E\,\|E[z_2z_2^\top\mid y]-I\|_F^2$ at $q_{22}=0$ (layer-2 stability of $Q=0$).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Grid", "attention_inverse", "channel_moments"]


@dataclass(frozen=True)
class Grid:
    """Midpoint rule on ``[-half, half]^2`` with ``n`` points per side."""

    half: float
    n: int

    def nodes(self) -> tuple[np.ndarray, np.ndarray, float]:
        h = 2 * self.half / self.n
        x = -self.half + h * (np.arange(self.n) + 0.5)
        X, Y = np.meshgrid(x, x, indexing="ij")
        return X.reshape(-1), Y.reshape(-1), h * h


def attention_inverse(z1a: Any, z1b: Any, c: float, xp: Any = np) -> tuple[Any, ...]:
    """Entries of $A(z_1)^{-1}$ and $|\\det A|$ for $A=cI+\\mathrm{softmax}_{\\rm row}(z_1z_1^\\top)$."""
    # row 1: [e^{a a}, e^{a b}] / sum -> diagonal weight s1 = 1/(1 + e^{a(b - a)})
    s1 = 1 / (1 + xp.exp(z1a * (z1b - z1a)))
    s2 = 1 / (1 + xp.exp(z1b * (z1a - z1b)))
    a11, a12, a21, a22 = c + s1, 1 - s1, 1 - s2, c + s2
    det = a11 * a22 - a12 * a21
    return a22 / det, -a12 / det, -a21 / det, a11 / det, xp.abs(det)


def channel_moments(c: float, q22: float, *, z_grid: Grid = Grid(7.0, 281),
                    h_grid: Grid = Grid(12.0, 241), n_omega: int = 12, chunk: int = 256,
                    xp: Any = np, progress: bool = False) -> dict[str, float]:
    """``f2``, ``lam1`` (and ``lam2`` from the same integrals) at skip ``c`` and overlap ``q22``."""
    za, zb, dz = (v if isinstance(v, float) else xp.asarray(v) for v in z_grid.nodes())
    ha_all, hb_all, dh = h_grid.nodes()
    i11, i12, i21, i22, adet = attention_inverse(za, zb, c, xp)
    log_pz = -(za**2 + zb**2) / 2 - np.log(2 * np.pi) - xp.log(adet)
    V = 1.0 - q22
    if q22 > 0:
        gx, gw = np.polynomial.hermite_e.hermegauss(n_omega)
        gw = gw / gw.sum()
        OX, OY = np.meshgrid(gx, gx, indexing="ij")
        omegas = np.stack([OX.reshape(-1), OY.reshape(-1)], 1) * np.sqrt(q22)
        oweights = np.outer(gw, gw).reshape(-1)
        if n_omega % 2 == 0:
            # the integrand is invariant under (h, ω) -> (-h, -ω): keep ω_1 > 0, double weights
            half = omegas[:, 0] > 0
            omegas, oweights = omegas[half], 2 * oweights[half]
    else:
        omegas, oweights = np.zeros((1, 2)), np.ones(1)
    acc = dict(norm=0.0, f2=0.0, lam1=0.0, lam2=0.0)
    it = range(0, ha_all.size, chunk)
    if progress:
        from numerics.progress import progress_bar
        it = progress_bar(it, desc=f"q22={q22:g}")
    for s in it:
        ha = xp.asarray(ha_all[s:s + chunk])[:, None]
        hb = xp.asarray(hb_all[s:s + chunk])[:, None]
        ua = i11[None, :] * ha + i12[None, :] * hb          # A^{-1} h, shape (H, Z)
        ub = i21[None, :] * ha + i22[None, :] * hb
        for (oa, ob), ow in zip(omegas, oweights):
            lp = -((ua - oa) ** 2 + (ub - ob) ** 2) / (2 * V) - np.log(2 * np.pi * V) + log_pz
            lm = -((ua + oa) ** 2 + (ub + ob) ** 2) / (2 * V) - np.log(2 * np.pi * V) + log_pz
            wp, wm = xp.exp(lp), xp.exp(lm)
            Zp = wp.sum(1) * dz                                  # p(h | ω)
            W = wp + wm
            Z = W.sum(1) * dz
            ok = Z > 1e-300
            Zs = xp.where(ok, Z, 1.0)
            # E[z2 | y, ω]
            m2a = ((wp - wm) * ua).sum(1) * dz / Zs
            m2b = ((wp - wm) * ub).sum(1) * dz / Zs
            ga, gb = (m2a - oa) / V, (m2b - ob) / V
            # E[z1 z1^T | y, ω] - I
            c11 = (W * za**2).sum(1) * dz / Zs - 1
            c12 = (W * za * zb).sum(1) * dz / Zs
            c22 = (W * zb**2).sum(1) * dz / Zs - 1
            # E[z2 z2^T | y, ω] - I (used at q22 = 0)
            d11 = (W * ua**2).sum(1) * dz / Zs - 1
            d12 = (W * ua * ub).sum(1) * dz / Zs
            d22 = (W * ub**2).sum(1) * dz / Zs - 1
            wgt = xp.where(ok, Zp, 0.0) * dh * ow
            acc["norm"] += float((wgt).sum())
            acc["f2"] += float((wgt * (ga**2 + gb**2)).sum())
            acc["lam1"] += float((wgt * (c11**2 + 2 * c12**2 + c22**2)).sum())
            acc["lam2"] += float((wgt * (d11**2 + 2 * d12**2 + d22**2)).sum())
    return acc
