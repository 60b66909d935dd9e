r"""Batched interacting-particle integrators on the sphere and in Euclidean space.

Generic machinery for systems $\dot X=F(X)$ with $X$ of shape ``(B, n, d)`` (B independent
systems of n particles in $\mathbb R^d$): fixed-step Euler/Heun/RK4 with renormalisation
after each full step (or, for Euler, the exponential map
$x\leftarrow\cos(h|v|)x+\sin(h|v|)v/|v|$), an adaptive Dormand–Prince 5(4) integrator with a
global step over the batch, and diagnostics at checkpoints: Gram matrices, the fraction of
pairs with $\langle x_i,x_j\rangle>1-\delta$, cluster counts (connected components of the
thresholded Gram matrix), and the exact $W_2$ distance between two empirical measures
with equal weights (optimal assignment).

Every function takes the array module ``xp`` (NumPy or CuPy) or infers it from a
:class:`numerics.backend.Backend`. No SymPy here: the velocity ``field`` is any callable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .checks import one_of

__all__ = ["Trajectory", "normalize", "tangent_project", "step", "integrate",
           "integrate_adaptive", "gram", "pair_fraction", "cluster_count", "w2_empirical",
           "uniform_sphere"]

Field = Callable[[Any], Any]

#: Butcher tableaux of the fixed-step methods (a, b, c)
_TABLEAUX = {
    "euler": ((), (1.0,), (0.0,)),
    "heun": (((1.0,),), (0.5, 0.5), (0.0, 1.0)),
    "rk4": (((0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 1 / 3, 1 / 3, 1 / 6),
            (0.0, 0.5, 0.5, 1.0)),
}
METHODS = tuple(_TABLEAUX)


def _xp(a: Any) -> Any:
    """The array module of ``a`` (CuPy for a CuPy array, NumPy otherwise); no import attempt
    unless ``a`` comes from CuPy."""
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy  # type: ignore[import-not-found]

        return cupy
    return np


def normalize(X: Any) -> Any:
    """Rows of ``X`` scaled to unit norm (last axis)."""
    xp = _xp(X)
    return X / xp.linalg.norm(X, axis=-1, keepdims=True)


def tangent_project(X: Any, U: Any) -> Any:
    r"""$\mathbf P_xu=u-\langle x,u\rangle x$ row-wise (``X`` unit rows)."""
    return U - (U * X).sum(-1, keepdims=True) * X


def uniform_sphere(rng: Any, shape: tuple[int, ...]) -> Any:
    """i.i.d. uniform points on the unit sphere, ``shape = (..., d)`` (normalised Gaussians)."""
    return normalize(rng.standard_normal(shape))


def _stages(field: Field, X: Any, h: float, A: Sequence[Sequence[float]]) -> list[Any]:
    r"""Stage slopes $k_1=F(X)$, $k_{i+1}=F\big(X+h\sum_{j\le i}a_{ij}k_j\big)$ of an explicit
    Runge–Kutta tableau with rows ``A`` (zero coefficients skipped)."""
    ks = [field(X)]
    for row in A:
        Y = X
        for aij, kj in zip(row, ks):
            if aij:
                Y = Y + (h * aij) * kj
        ks.append(field(Y))
    return ks


def step(field: Field, X: Any, h: float, method: str = "rk4", manifold: str = "sphere",
         retraction: str = "project") -> Any:
    """One step of ``method`` ("euler", "heun", "rk4"). On the sphere the full step is
    renormalised (``retraction="project"``), or for Euler moved along the geodesic
    (``retraction="exp"``); ``manifold="euclidean"`` leaves it as is."""
    one_of("method", method, METHODS)
    one_of("manifold", manifold, ("sphere", "euclidean"))
    one_of("retraction", retraction, ("project", "exp"))
    if retraction == "exp" and (method != "euler" or manifold != "sphere"):
        raise ValueError("retraction='exp' is the geodesic (projected) Euler step: it needs "
                         "method='euler' and manifold='sphere' (it would lower the order of RK)")
    A, bw, _c = _TABLEAUX[method]
    ks = _stages(field, X, h, A)
    if retraction == "exp":
        xp = _xp(X)
        v = tangent_project(X, ks[0])
        nv = xp.linalg.norm(v, axis=-1, keepdims=True)
        safe = xp.where(nv > 0, nv, 1.0)
        return xp.cos(h * nv) * X + xp.sin(h * nv) * v / safe
    inc = sum((h * bj) * kj for bj, kj in zip(bw, ks) if bj)
    Xn = X + inc
    return normalize(Xn) if manifold == "sphere" else Xn


@dataclass
class Trajectory:
    """States at the checkpoint times; ``steps`` accepted, ``rejected`` (adaptive only)."""

    times: np.ndarray
    states: list
    steps: int = 0
    rejected: int = 0
    converged: bool = True
    info: dict = field(default_factory=dict)


def integrate(field: Field, X0: Any, *, T: float, h: float, method: str = "rk4",
              manifold: str = "sphere", retraction: str = "project",
              checkpoints: Sequence[float] | None = None,
              callback: Callable[[float, Any], Any] | None = None,
              progress: bool = False) -> Trajectory:
    """Fixed-step integration from 0 to ``T``; states kept at ``checkpoints`` (rounded to
    the step grid; default: only ``T``). ``callback(t, X)`` at checkpoints, if given, is
    stored instead of the state (e.g. a diagnostic, to keep memory small)."""
    if not (h > 0 and math.isfinite(h)):
        raise ValueError(f"step h must be positive and finite, got {h!r}")
    if not (T >= 0):
        raise ValueError(f"horizon T must be >= 0, got {T!r}")
    nsteps = int(round(T / h))
    cps = sorted(set(int(round(c / h)) for c in (checkpoints if checkpoints is not None else [T])))
    if cps and (cps[0] < 0 or cps[-1] > nsteps):
        raise ValueError(f"checkpoints must lie in [0, T={T}]")
    want = set(cps)
    X = X0
    times, states = [], []

    def record(k: int, X: Any) -> None:
        times.append(k * h)
        states.append(callback(k * h, X) if callback else X)

    if 0 in want:
        record(0, X)
    it = range(1, nsteps + 1)
    if progress:
        from .progress import progress_bar

        it = progress_bar(it, desc="integrate", unit="step")
    for k in it:
        X = step(field, X, h, method, manifold, retraction)
        if k in want:
            record(k, X)
    return Trajectory(np.asarray(times), states, steps=nsteps)


# Dormand–Prince 5(4) tableau
_DP_A = ((1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
         (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
         (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
         (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_DP_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


def integrate_adaptive(field: Field, X0: Any, *, T: float, rtol: float = 1e-8,
                       atol: float = 1e-10, h0: float = 1e-2, manifold: str = "sphere",
                       checkpoints: Sequence[float] | None = None, max_steps: int = 100_000,
                       h_max: float = math.inf) -> Trajectory:
    r"""Dormand–Prince 5(4) with one step size for the whole batch (error: max over the
    batch of the RMS of $(y_5-y_4)/(\mathrm{atol}+\mathrm{rtol}|y|)$), renormalised after each
    accepted step on the sphere; steps land exactly on ``checkpoints``. ``converged`` is
    False if ``max_steps`` was exhausted (states then stop early)."""
    if T < 0:
        raise ValueError(f"horizon T must be >= 0, got {T!r}")
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got {rtol!r}, {atol!r}")
    xp = _xp(X0)
    cps = sorted(set(float(c) for c in (checkpoints if checkpoints is not None else [T])))
    t, h, X = 0.0, min(h0, h_max), X0
    times, states = [], []
    steps = rejected = 0
    hs: list[float] = []
    for tc in cps:
        while t < tc - 1e-14 * max(1.0, tc):
            if steps + rejected >= max_steps:
                return Trajectory(np.asarray(times), states, steps, rejected, False,
                                  {"h": np.asarray(hs)})
            hh = min(h, tc - t)
            ks = _stages(field, X, hh, _DP_A)
            y5 = X + hh * sum(bj * kj for bj, kj in zip(_DP_B5, ks) if bj)
            y4 = X + hh * sum(bj * kj for bj, kj in zip(_DP_B4, ks) if bj)
            sc = atol + rtol * xp.maximum(xp.abs(X), xp.abs(y5))
            err = float(xp.max(xp.sqrt(xp.mean(((y5 - y4) / sc) ** 2, axis=(-2, -1)))))
            if err <= 1.0:
                t += hh
                X = normalize(y5) if manifold == "sphere" else y5
                steps += 1
                hs.append(hh)
            else:
                rejected += 1
            fac = 0.9 * (1.0 / err) ** 0.2 if err > 0 and math.isfinite(err) else 5.0
            h = min(h_max, hh * min(5.0, max(0.2, fac)))
        times.append(tc)
        states.append(X)
    return Trajectory(np.asarray(times), states, steps, rejected, True, {"h": np.asarray(hs)})


def gram(X: Any) -> Any:
    r"""$G_{ij}=\langle x_i,x_j\rangle$ per system, shape (B, n, n)."""
    xp = _xp(X)
    return xp.matmul(X, xp.swapaxes(X, -1, -2))


def pair_fraction(X: Any, threshold: float = 0.999) -> Any:
    r"""Fraction of ordered pairs $i\ne j$ with $\langle x_i,x_j\rangle>$ ``threshold``, per system."""
    G = gram(X)
    n = G.shape[-1]
    xp = _xp(X)
    hits = (G > threshold).sum(axis=(-2, -1)) - (xp.diagonal(G, axis1=-2, axis2=-1)
                                                  > threshold).sum(-1)
    return hits / (n * (n - 1))


def cluster_count(X: Any, threshold: float = 0.999) -> Any:
    r"""Number of connected components of the graph $\langle x_i,x_j\rangle>$ ``threshold``
    per system: transitive closure by repeated squaring of the adjacency ($\lceil\log_2n\rceil$
    boolean products), then $\sum_i1/|C(i)|$."""
    xp = _xp(X)
    G = gram(X)
    n = G.shape[-1]
    R = (G > threshold) | xp.eye(n, dtype=bool)
    for _ in range(max(1, math.ceil(math.log2(max(n, 2))))):
        Rf = R.astype(xp.float64)
        R2 = xp.matmul(Rf, Rf) > 0
        if bool(xp.all(R2 == R)):
            break
        R = R2
    sizes = R.sum(-1)
    return xp.rint((1.0 / sizes).sum(-1)).astype(xp.int64)


def w2_empirical(x: np.ndarray, y: np.ndarray) -> float:
    r"""Exact $W_2$ between $\frac1n\sum\delta_{x_i}$ and $\frac1n\sum\delta_{y_j}$
    (equal sizes): optimal assignment of the squared-distance cost (Hungarian algorithm)."""
    from scipy.optimize import linear_sum_assignment

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
    C = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    r, c = linear_sum_assignment(C)
    return float(np.sqrt(C[r, c].mean()))
