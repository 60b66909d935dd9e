r"""Channel expectations of the two-layer tied-attention sequence multi-index model (L = 2 tokens).

Numeric only (no SymPy, no formula of the model): every formula is a generated kernel of
:class:`derive.models.sequence_multi_index.SequenceMultiIndex` passed in as ``kern`` (a mapping
``program name -> callable(xp, special, *inputs) -> dict``). This module orders the calls and
forms self-normalised posterior averages.

The model (spec §B1): $A(z_1)=cI+\mathrm{softmax}_{\rm row}(z_1z_1^\top)$, $h=A(z_1)z_2$,
$y=\mathrm{softmax}_{\rm row}(hh^\top)$. For $L=2$, $y$ fixes $h$ up to a global sign, so the
posterior over $(z_1,z_2)$ given $(y,\omega)$ lives on $z_2=\pm A(z_1)^{-1}h$ with weight
$N(z_1;\omega_1,V_1)\,N(\pm A^{-1}h;\omega_2,V_2)/\det A(z_1)$ (``branch_logweights``), an
integral over $z_1\in\mathbb R^2$ done by a tensor midpoint rule on $z_1=\omega_1+\sqrt{V_1}\,t$,
$t\in[-b,b]^2$ (spectrally accurate: the integrand is smooth and decays like the prior).

Two outer averages:

* :func:`lambdas_at_zero` — at $Q=0$ the label average is an integral over $h$ against
  $p(h)$, done by a second midpoint rule (deterministic; the normalisation $\int p(h)dh$ is
  returned as a check). Gives $\lambda_\ell=\mathbb E\|E[z_\ell z_\ell^\top|y]-I\|_F^2$.
* :func:`teacher_moments` — for $Q={\rm diag}(Q_{11},Q_{22})$ the average over
  $(\omega,y)$ is taken over the teacher itself: $\omega_\ell=\sqrt{Q_{\ell\ell}}\xi_\ell$,
  $z^*_\ell=\omega_\ell+\sqrt{V_\ell}u_\ell$, $h=A(z_1^*)z_2^*$, with
  $(\xi_1,\xi_2,u_1,u_2)\sim N(0,I_8)$ on randomised (scrambled Sobol') points — replicas give
  the error bar (:func:`rqmc_moments`). The former tensor Gauss–Hermite rule over $\omega_2$
  converged slowly (its integrand has a hole of width $\sqrt{V_{22}}$ at $\omega_2=0$, where
  the sign of $h$ is ambiguous): 4, 8, 12 nodes gave $f_2=5.530, 5.138, 5.024$ at
  $q_{22}=0.7$; this rule gives $4.940\pm0.005$ (independent Monte Carlo $4.929\pm0.026$).

Per sample: $g_{\rm out,\ell}=(E[z_\ell|y,\omega]-\omega_\ell)/V_\ell$, $f_\ell=\mathbb E\|g_{\rm
out,\ell}\|^2$ (so $\hat Q_{\ell\ell}=\alpha f_\ell$), and at $Q_{11}=0$
$\Lambda_1=\mathbb E\|E[z_1z_1^\top|y,\omega_2]-I\|_F^2$ (layer-1 stability on the layer-2 branch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
from scipy import special

from numerics.quadrature import sobol_normal

__all__ = ["Grid", "lambdas_at_zero", "teacher_moments", "rqmc_moments", "MOMENTS"]

Kernels = Mapping[str, Callable[..., dict]]

#: observables returned per sample by :func:`teacher_moments`.
MOMENTS = ("f1", "f2", "lam1")


@dataclass(frozen=True)
class Grid:
    """Midpoint rule on ``[-half, half]^2`` with ``n`` points per side."""

    half: float
    n: int

    def nodes(self, half_plane: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, y, log_weight)``; ``half_plane`` keeps ``x ≥ 0`` for integrands even under
        ``(x, y) → (−x, −y)`` (weight 2, and 1 on the line ``x = 0`` when ``n`` is odd)."""
        h = 2 * self.half / self.n
        x = -self.half + h * (np.arange(self.n) + 0.5)
        X, Y = np.meshgrid(x, x, indexing="ij")
        X, Y = X.reshape(-1), Y.reshape(-1)
        logw = np.full(X.size, 2 * np.log(h))
        if half_plane:
            on = np.abs(X) < 1e-12 * h
            keep = (X > 0) | on
            logw = logw + np.where(on, 0.0, np.log(2.0))
            X, Y, logw = X[keep], Y[keep], logw[keep]
        return X, Y, logw


def _posterior_sums(lp: Any, lm: Any, xp: Any = np) -> tuple[Any, Any, Any, Any]:
    """Max-shifted weights of the two sign branches, ``(wp, wm, W = wp + wm, log scale)``."""
    mx = xp.maximum(lp.max(axis=1, keepdims=True), lm.max(axis=1, keepdims=True))
    wp, wm = xp.exp(lp - mx), xp.exp(lm - mx)
    return wp, wm, wp + wm, mx[:, 0]


def lambdas_at_zero(kern: Kernels, c: float, *, z_grid: Grid = Grid(7.0, 101),
                    h_grid: Grid = Grid(12.0, 81), chunk: int = 256) -> dict[str, float]:
    r"""$\lambda_1,\lambda_2$ at $Q=0$ and $\int p(h)\,dh$ (two nested midpoint rules)."""
    ta, tb, logwz = z_grid.nodes()
    inv = kern["attention_inverse"](np, special, ta, tb, c)
    ha_all, hb_all, logwh = h_grid.nodes()
    acc = dict(norm=0.0, lam1=0.0, lam2=0.0)
    for s in range(0, ha_all.size, chunk):
        ha, hb = ha_all[s:s + chunk, None], hb_all[s:s + chunk, None]
        br = kern["branch_logweights"](np, special, ta, tb, inv["log_det"], inv["i_11"], inv["i_12"],
                                       inv["i_21"], inv["i_22"], ha, hb, 0.0, 0.0, 1.0)
        lp = br["log_w_plus"] + logwz
        ua, ub = br["u_a"], br["u_b"]
        mx = lp.max(axis=1, keepdims=True)       # ω = 0: both branches carry the same weight
        W = np.exp(lp - mx)
        mx = mx[:, 0]
        Z = 2 * W.sum(1)
        ph = 0.5 * Z * np.exp(mx)                  # p(h) = ∫ φ(z1) φ(A⁻¹h)/det A dz1
        m = {k: 2 * (W * v).sum(1) / Z for k, v in
             dict(taa=ta * ta, tab=ta * tb, tbb=tb * tb, uaa=ua * ua, uab=ua * ub, ubb=ub * ub).items()}
        wh = ph * np.exp(logwh[s:s + chunk])
        zero = np.zeros_like(m["taa"])
        g1 = kern["channel_moments"](np, special, zero, zero, m["taa"], m["tab"], m["tbb"],
                                     zero, zero, 0.0, 0.0, 1.0, 1.0)
        g2 = kern["channel_moments"](np, special, zero, zero, m["uaa"], m["uab"], m["ubb"],
                                     zero, zero, 0.0, 0.0, 1.0, 1.0)
        acc["norm"] += float(wh.sum())
        acc["lam1"] += float((wh * g1["Lambda_1"]).sum())   # ‖E[z z^T|y] − I‖²_F, layer 1
        acc["lam2"] += float((wh * g2["Lambda_1"]).sum())   # the same norm for layer 2
    return acc


def teacher_moments(kern: Kernels, c: float, Q11: float, Q22: float, X: np.ndarray, *,
                    z_grid: Grid = Grid(6.5, 81), chunk: int = 64) -> dict[str, np.ndarray]:
    r"""Per-teacher-sample ``f1``, ``f2``, ``lam1`` (``||g_out,ℓ||²`` and
    ``||E[z1 z1ᵀ|y,ω] − I||²``) at $Q={\rm diag}(Q_{11},Q_{22})$.

    ``X``: standard normal points of shape ``(N, 8)`` = $(\xi_1,\xi_2,u_1,u_2)$ (the first two
    columns are ignored when $Q_{11}=0$). The inner $z_1$ rule is ``z_grid`` in the prior's
    scale; at $Q_{11}=0$ the $z_1\to-z_1$ symmetry halves it."""
    tc = kern["teacher"](np, special, *(X[:, j] for j in range(8)), Q11, Q22)
    V1, V2 = float(tc["V_1"]), float(tc["V_2"])
    w1 = np.stack([tc["omega_1a"], tc["omega_1b"]], 1)
    w2 = np.stack([tc["omega_2a"], tc["omega_2b"]], 1)
    h = kern["label_index"](np, special, tc["z_1a"], tc["z_1b"], tc["z_2a"], tc["z_2b"], c)
    ha_all, hb_all = h["h_a"], h["h_b"]
    fixed = Q11 == 0.0
    ta, tb, logwz = z_grid.nodes(half_plane=fixed)
    if fixed:
        inv = kern["attention_inverse"](np, special, ta, tb, c)
    N = X.shape[0]
    out = {k: np.empty(N) for k in MOMENTS}
    for s in range(0, N, chunk):
        sl = slice(s, s + chunk)
        ha, hb = ha_all[sl, None], hb_all[sl, None]
        if not fixed:   # z1 = ω1 + √V1 t: a grid per sample
            zg = kern["prior_scale"](np, special, ta, tb, w1[sl, 0:1], w1[sl, 1:2], V1)
            inv = kern["attention_inverse"](np, special, zg["z_1a"], zg["z_1b"], c)
        br = kern["branch_logweights"](np, special, ta, tb, inv["log_det"], inv["i_11"], inv["i_12"],
                                       inv["i_21"], inv["i_22"], ha, hb, w2[sl, 0:1], w2[sl, 1:2], V2)
        wp, wm, W, _ = _posterior_sums(br["log_w_plus"] + logwz, br["log_w_minus"] + logwz)
        Z = W.sum(1)
        ua, ub, d = br["u_a"], br["u_b"], wp - wm
        e = {"t_a": (W * ta).sum(1) / Z, "t_b": (W * tb).sum(1) / Z,
             "tt_aa": (W * ta * ta).sum(1) / Z, "tt_ab": (W * ta * tb).sum(1) / Z,
             "tt_bb": (W * tb * tb).sum(1) / Z,
             "m2_a": (d * ua).sum(1) / Z, "m2_b": (d * ub).sum(1) / Z}
        g = kern["channel_moments"](np, special, e["t_a"], e["t_b"], e["tt_aa"], e["tt_ab"], e["tt_bb"],
                                    e["m2_a"], e["m2_b"], w2[sl, 0], w2[sl, 1], V1, V2)
        out["f1"][sl], out["f2"][sl], out["lam1"][sl] = g["f_1"], g["f_2"], g["Lambda_1"]
    return out


def rqmc_moments(kern: Kernels, c: float, Q11: float, Q22: float, *, n: int = 4096,
                 replicas: int = 8, seed: int = 0, z_grid: Grid = Grid(6.5, 81)
                 ) -> dict[str, np.ndarray]:
    """Replica means ``(replicas,)`` of ``f1``, ``f2``, ``lam1`` over ``replicas`` independent
    scrambled Sobol' rules of ``n`` points each (seeds ``seed … seed + replicas − 1``): the mean
    over replicas is the estimate, their spread / √replicas its error. The same seeds give the
    same points at every ``(Q11, Q22)`` (common random numbers: the map is deterministic)."""
    reps = {k: np.empty(replicas) for k in MOMENTS}
    for r in range(replicas):
        X = sobol_normal(n, 8, seed=seed + r).nodes
        m = teacher_moments(kern, c, Q11, Q22, X, z_grid=z_grid)
        for k in MOMENTS:
            reps[k][r] = m[k].mean()
    return reps
