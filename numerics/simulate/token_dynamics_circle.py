r"""Self-attention dynamics on the circle ($d=2$), written in angles: an independent simulator.

With $x_i=(\cos\theta_i,\sin\theta_i)$, $t_i=(-\sin\theta_i,\cos\theta_i)$, $B=Q^\top K=I$ and
value matrix $V$, the SA (softmax-normalised) dynamics of GLPR is exactly

$$\dot\theta_i=\Big\langle t_i,\;V\,\frac{\sum_jw_je^{\beta\cos(\theta_j-\theta_i)}x_j}
{\sum_kw_ke^{\beta\cos(\theta_k-\theta_i)}}\Big\rangle ,$$

with particle weights $w_j$ (equal weights $1/n$ for tokens; the masses of collapsed clusters
for the reduced system; quadrature weights for the mean-field limit). For $V=I$ the numerator
reduces to $\sum_jw_je^{\beta\cos(\theta_j-\theta_i)}\sin(\theta_j-\theta_i)$.

Three evaluations of the same field:

* :func:`circle_field` -- direct $O(n^2)$ per system, batched ``(B, n)``, row-max shifted;
* :func:`circle_field_fft` -- mean-field evaluation for $n\gg10^3$: the weights are deposited
  on an $M$-point periodic grid (linear interpolation) and the two convolutions with
  $e^{\beta(\cos\phi-1)}(\cos\phi,\sin\phi)$ and $e^{\beta(\cos\phi-1)}$ are done by FFT;
* :func:`reduced_merge_times` -- $K$ weighted point masses (collapsed clusters) integrated with
  an implicit adaptive method up to astronomically long times, merging two masses when they
  come within ``merge_tol``: the clocks of the metastable plateaus.

No SymPy and no use of the symbolic layer: this is a check, not the thing checked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["circle_field", "circle_field_fft", "clusters_on_circle", "CircleClusters",
           "reduced_merge_times", "w2_to_two_atoms", "quantile_angles"]


def _v_parts(V: np.ndarray | None) -> tuple[float, float, float, float]:
    r"""$V=aI+bJ+S$ with $S$ symmetric traceless, $S=r\,[[\cos\psi,\sin\psi],[\sin\psi,-\cos\psi]]$.
    Then $\langle t_i,Vx_j\rangle=a\sin(\theta_j-\theta_i)+b\cos(\theta_j-\theta_i)
    +r\sin(\psi-\theta_i-\theta_j)$, which has no cancellation when the field is tiny."""
    if V is None:
        return 1.0, 0.0, 0.0, 0.0
    V = np.asarray(V, float)
    a, b = (V[0, 0] + V[1, 1]) / 2, (V[1, 0] - V[0, 1]) / 2
    c, e = (V[0, 0] - V[1, 1]) / 2, (V[0, 1] + V[1, 0]) / 2
    return a, b, math.hypot(c, e), math.atan2(e, c)


def circle_field(theta: np.ndarray, beta: Any, weights: np.ndarray | None = None,
                 V: np.ndarray | None = None) -> np.ndarray:
    r"""$\dot\theta$ of SA on the circle, ``theta`` ``(..., n)``, ``beta`` scalar or ``(...)``.

    Computed as $\sum_jA_{ij}\langle t_i,Vx_j\rangle$ with the row-max-shifted softmax $A$ and the
    angle form of $\langle t_i,Vx_j\rangle$ (:func:`_v_parts`): the self term vanishes exactly,
    so fields as small as $e^{-\beta(1-\cos\Delta)}\sim10^{-30}$ keep full relative precision
    (the vector form $\langle t_i,Vm_i\rangle$ loses them to cancellation at $10^{-16}$)."""
    th = np.asarray(theta, float)
    b = np.asarray(beta, float)
    b = b.reshape(b.shape + (1,) * (th.ndim + 1 - b.ndim)) if b.ndim else b
    D = th[..., None, :] - th[..., :, None]               # [i, j] = θ_j − θ_i
    L = b * np.cos(D)
    if weights is not None:
        w = np.asarray(weights, float)
        L = L + np.log(np.where(w > 0, w, np.finfo(float).tiny))[..., None, :]
    L -= L.max(-1, keepdims=True)
    A = np.exp(L)
    A /= A.sum(-1, keepdims=True)
    a, bb, r, psi = _v_parts(V)
    G = a * np.sin(D)
    if bb:
        G = G + bb * np.cos(D)
    if r:
        G = G + r * np.sin(psi - th[..., :, None] - th[..., None, :])
    return (A * G).sum(-1)


def circle_field_fft(theta: np.ndarray, weights: np.ndarray, beta: float, V: np.ndarray | None = None,
                     M: int = 8192) -> np.ndarray:
    r"""Mean-field $\dot\theta$ for one system of many weighted particles (``theta``, ``weights``
    of shape ``(n,)``, weights summing to 1): deposit on an ``M``-point grid, convolve by FFT with
    $k(\phi)=e^{\beta(\cos\phi-1)}$ and $k(\phi)(\cos\phi,\sin\phi)$, interpolate back.

    Error: the deposition/interpolation error is $O((2\pi/M)^2\beta)$ relative (the kernel's width
    is $1/\sqrt\beta$, which must span many cells: ``M`` $\gg 2\pi\sqrt\beta$)."""
    th = np.mod(np.asarray(theta, float), 2 * math.pi)
    w = np.asarray(weights, float)
    h = 2 * math.pi / M
    u = th / h
    i0 = np.floor(u).astype(np.int64) % M
    f = u - np.floor(u)
    rho = np.bincount(i0, weights=w * (1 - f), minlength=M) + np.bincount((i0 + 1) % M, weights=w * f,
                                                                         minlength=M)
    phi = np.arange(M) * h
    k = np.exp(beta * (np.cos(phi) - 1.0))
    R = np.fft.rfft(rho)

    def conv(kernel: np.ndarray) -> np.ndarray:
        # (k * ρ)(θ_i) = Σ_j ρ_j k(θ_i − θ_j): circular convolution
        return np.fft.irfft(R * np.fft.rfft(kernel), n=M)

    den, num_c, num_s = conv(k), conv(k * np.cos(phi)), conv(k * np.sin(phi))

    def at(g: np.ndarray) -> np.ndarray:
        return g[i0] * (1 - f) + g[(i0 + 1) % M] * f

    d, c, s = at(den), at(num_c), at(num_s)
    # c = Σ_j ρ_j k(Δ) cos Δ, s = Σ_j ρ_j k(Δ) sin Δ with Δ = θ_i − θ_j; in the angle form of
    # ⟨t_i, V x_j⟩ (see _v_parts): sin(θ_j − θ_i) = −sin Δ, cos(θ_j − θ_i) = cos Δ and
    # sin(ψ − θ_i − θ_j) = sin(ψ − 2θ_i) cos Δ + cos(ψ − 2θ_i) sin Δ
    a, b, r, psi = _v_parts(V)
    out = -a * s + b * c
    if r:
        out = out + r * (np.sin(psi - 2 * th) * c + np.cos(psi - 2 * th) * s)
    return out / d


@dataclass(frozen=True)
class CircleClusters:
    """Clusters of points on the circle separated by gaps larger than ``gap``."""

    count: int
    centres: np.ndarray     #: circular means (radians)
    weights: np.ndarray     #: fraction of the points in each cluster
    diameters: np.ndarray   #: angular extent of each cluster (radians)
    min_separation: float   #: smallest angle between two cluster centres (inf for one cluster)


def clusters_on_circle(theta: np.ndarray, gap: float = 0.05) -> CircleClusters:
    """Split sorted angles wherever two neighbours are more than ``gap`` apart (circularly)."""
    th = np.sort(np.mod(np.asarray(theta, float), 2 * math.pi))
    n = th.size
    gaps = np.diff(np.concatenate([th, th[:1] + 2 * math.pi]))
    cuts = np.flatnonzero(gaps > gap)
    if cuts.size == 0:
        ext = 2 * math.pi - gaps.max()
        c = math.atan2(np.sin(th).mean(), np.cos(th).mean())
        return CircleClusters(1, np.array([c]), np.array([1.0]), np.array([ext]), math.inf)
    start = (cuts[-1] + 1) % n
    order = np.roll(np.arange(n), -start)
    lab = np.zeros(n, dtype=int)
    cur = 0
    for k in range(1, n):
        if gaps[order[k - 1]] > gap:
            cur += 1
        lab[k] = cur
    ths = th[order]
    K = cur + 1
    centres, wts, diams = np.empty(K), np.empty(K), np.empty(K)
    for k in range(K):
        a = ths[lab == k]
        centres[k] = math.atan2(np.sin(a).mean(), np.cos(a).mean())
        wts[k] = a.size / n
        diams[k] = np.mod(a[-1] - a[0], 2 * math.pi)
    if K == 1:
        sep = math.inf
    else:
        cs = np.sort(np.mod(centres, 2 * math.pi))
        sep = float(np.min(np.diff(np.concatenate([cs, cs[:1] + 2 * math.pi]))))
    return CircleClusters(K, centres, wts, diams, sep)


def reduced_merge_times(centres: np.ndarray, weights: np.ndarray, beta: float, t0: float = 0.0,
                        merge_tol: float = 1e-3, t_max: float = 1e60, rtol: float = 1e-10
                        ) -> list[tuple[float, int]]:
    r"""Merger times of $K$ weighted point masses under SA on the circle ($V=I$).

    Integrates $\dot\phi_k=\sum_lw_le^{\beta\cos(\phi_l-\phi_k)}\sin(\phi_l-\phi_k)/
    \sum_lw_le^{\beta\cos(\phi_l-\phi_k)}$ with SciPy's implicit Radau method directly in
    $t$: on a plateau the field is nearly constant and exponentially small, so the adaptive step
    grows geometrically and an exponentially long plateau costs a number of steps that grows
    only like its logarithm; merging the closest pair once it is within ``merge_tol`` (the
    pair's weights add, the new centre is their weighted circular mean). Returns
    ``[(t, K_after), ...]`` until one mass is left or ``t_max``."""
    from scipy.integrate import solve_ivp

    phi = np.asarray(centres, float).copy()
    w = np.asarray(weights, float).copy()
    t = float(t0)
    out: list[tuple[float, int]] = []
    while phi.size > 1 and t < t_max:
        def rhs(_: float, p: np.ndarray, w=w) -> np.ndarray:
            return circle_field(p, beta, weights=w)

        def closest(p: np.ndarray) -> float:
            cs = np.sort(np.mod(p, 2 * math.pi))
            return float(np.min(np.diff(np.concatenate([cs, cs[:1] + 2 * math.pi]))))

        def event(_: float, p: np.ndarray) -> float:
            return closest(p) - merge_tol

        event.terminal = True  # type: ignore[attr-defined]
        event.direction = -1   # type: ignore[attr-defined]
        # the final approach of a pair takes O(1) time after a plateau of length e^{βc}: the
        # clock restarts from 0 whenever the step would fall below the spacing of floats at t
        hit = None
        for _ in range(64):
            sol = solve_ivp(rhs, (0.0, t_max - t), phi, method="Radau", rtol=rtol, atol=1e-13,
                            events=event, first_step=1e-3)
            if sol.t_events[0].size:
                hit = float(sol.t_events[0][0])
                phi = sol.y_events[0][0]
                break
            if sol.status == 0 or sol.t[-1] <= 0.0:   # reached t_max, or no progress at all
                t = t + float(sol.t[-1])
                break
            t, phi = t + float(sol.t[-1]), sol.y[:, -1]
        if hit is None:
            break
        t = t + hit
        # merge the closest pair
        order = np.argsort(np.mod(phi, 2 * math.pi))
        ps = np.mod(phi[order], 2 * math.pi)
        gaps = np.diff(np.concatenate([ps, ps[:1] + 2 * math.pi]))
        k = int(np.argmin(gaps))
        a, b = order[k], order[(k + 1) % phi.size]
        wa, wb = w[a], w[b]
        c = math.atan2(wa * math.sin(phi[a]) + wb * math.sin(phi[b]),
                       wa * math.cos(phi[a]) + wb * math.cos(phi[b]))
        keep = np.ones(phi.size, bool)
        keep[b] = False
        phi[a], w[a] = c, wa + wb
        phi, w = phi[keep], w[keep]
        out.append((t, int(phi.size)))
    return out


def quantile_angles(density: Any, n: int, grid: int = 1 << 16) -> np.ndarray:
    r"""$n$ angles $\theta_j=F^{-1}((j+\frac12)/n)$ of a density on $[0,2\pi)$ (a deterministic,
    equal-weight discretisation of the mean-field initial condition)."""
    phi = (np.arange(grid) + 0.5) * (2 * math.pi / grid)
    p = np.asarray(density(phi), float)
    if np.any(p < 0) or not np.all(np.isfinite(p)):
        raise ValueError("density must be finite and non-negative")
    F = np.concatenate([[0.0], np.cumsum(p)])
    F /= F[-1]
    edges = np.arange(grid + 1) * (2 * math.pi / grid)
    return np.interp((np.arange(n) + 0.5) / n, F, edges)


def w2_to_two_atoms(theta: np.ndarray, weights: np.ndarray, p: float, axis: np.ndarray | None = None
                    ) -> float:
    r"""Exact $W_2$ (chordal distance in $\mathbb R^2$) between $\sum_jw_j\delta_{x_j}$ and
    $p\,\delta_{v}+(1-p)\,\delta_{-v}$ ($v$ = ``axis``, default $e_1$).

    $|x-v|^2-|x+v|^2=-4\langle x,v\rangle$, so the optimal plan sends the mass $p$ with the
    largest $\langle x,v\rangle$ to $v$ (the cost is submodular along that order); the particle
    at the split is divided."""
    v = np.array([1.0, 0.0]) if axis is None else np.asarray(axis, float) / np.linalg.norm(axis)
    x = np.stack([np.cos(theta), np.sin(theta)], -1)
    proj = x @ v
    order = np.argsort(-proj)
    w = np.asarray(weights, float)[order]
    w = w / w.sum()
    pr = proj[order]
    cum = np.cumsum(w)
    to_v = np.clip(p - (cum - w), 0.0, w)     # mass of each particle sent to v
    to_minus = w - to_v
    cost = to_v * (2 - 2 * pr) + to_minus * (2 + 2 * pr)
    return float(math.sqrt(max(cost.sum(), 0.0)))
