r"""Compiled per-node loops (Numba): the expectation step of :mod:`numerics.saddle` without
array temporaries.

The replica saddle point of a model whose channel needs a proximal step spends its time in
one loop: for every quadrature node, the channel, a multi-start Newton minimisation of a
two-variable objective, the integrands at the minimiser, and their weighted sum. On arrays
(NumPy) every elementary operation of that loop allocates a temporary of the full batch; here
the loop is compiled once (Numba, cached on disk) and each node stays in registers.

Nothing here knows a model. The loop (:data:`LOOP_SOURCE`) calls four compiled functions of
the module it is linked into, all generated or linked from the model's SymPy programs
(``derive.codegen``'s ``numba`` target, :mod:`derive.codegen.link`):

- ``channel(x, par, z, c)``: the node's channel quantities into ``c`` (state ``x``, per-point
  parameters ``par``, Gaussian node ``z``);
- ``start(c, k) -> (y0, y1)``: the ``k``-th deterministic Newton start;
- ``fgh(y0, y1, c) -> (f, g0, g1, H00, H01, H11)``: objective, gradient, Hessian;
- ``integrands(y0, y1, x, par, z, c, out)``: the integrands at the minimiser into ``out``.

The Newton iteration is :func:`numerics.prox.newton_minimize` for two variables, step for step
(shifted Hessian, step cap, Armijo with round-off slack, halvings, the stall rule), and the
choice among starts is :func:`numerics.prox.minimize_multistart`'s (lowest converged value;
starts whose minimiser differs from the kept one by more than ``1e-6`` counted): the compiled
and the array paths give the same minimisers to round-off (tested).

Numba is optional: :func:`available` says whether it imports; without it the array path runs.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["available", "jit", "jit_nocache", "expit", "logaddexp", "ndtr", "sign", "LOOP_SOURCE", "NodeLoop"]

try:  # pragma: no cover - exercised where Numba is installed
    import numba as _numba

    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    _numba = None
    _HAVE_NUMBA = False


def available() -> bool:
    """Whether Numba imports (the compiled path is used only then)."""
    return _HAVE_NUMBA


if _HAVE_NUMBA:
    #: the decorator of every compiled function (generated kernels included): no fast-math (the
    #: results must equal the array path's to round-off), cached on disk next to the source
    jit = _numba.njit(cache=True, fastmath=False, error_model="numpy", nogil=True)
    #: the same without the disk cache (a module with no file: the kernel cache is unusable)
    jit_nocache = _numba.njit(cache=False, fastmath=False, error_model="numpy", nogil=True)
else:  # pragma: no cover
    def jit(f):  # type: ignore[no-redef]
        return f

    jit_nocache = jit



# ---------------------------------------------------------------- scalar special functions
@jit
def expit(x: float) -> float:
    """1/(1 + e^{-x}) without overflow at either end."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@jit
def logaddexp(a: float, b: float) -> float:
    """log(e^a + e^b) without overflow."""
    m = max(a, b)
    if math.isinf(m):
        return m
    return m + math.log1p(math.exp(-abs(a - b)))


@jit
def ndtr(x: float) -> float:
    """Standard normal CDF, 0.5·erfc(−x/√2) (relative accuracy in the lower tail)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@jit
def sign(x: float) -> float:
    if x > 0.0:
        return 1.0
    if x < 0.0:
        return -1.0
    return 0.0 * x


# ---------------------------------------------------------------- the per-node loop (source)
#: The generic per-node loop, as source text appended to every linked module (by
#: :func:`derive.codegen.link.module_source`), where ``node_channel``, ``node_start``,
#: ``node_fgh`` and ``node_integrands`` are that module's compiled functions. It is text, not a
#: function taking those four as arguments, because Numba cannot cache on disk a function that
#: receives compiled functions as arguments (their types differ in every process): compiling the
#: loop costs seconds, loading it from the cache a fraction of one.
#:
#: ``_newton2`` is :func:`numerics.prox.newton_minimize` for ``k = 2``, step for step (δ = 1e-8
#: shift of the Hessian, step cap 10·max(1, ‖y‖_∞), Armijo 1e-4 with 8ε·max(1, |f|) slack, at most
#: 40 halvings, the stall rule); ``node_loop`` picks among the starts as
#: :func:`numerics.prox.minimize_multistart` does (the lowest converged value, the first of equal
#: ones; the first start's result where none converges; starts whose minimiser differs from the
#: kept one by more than 1e-6 flag the node). For every row ``i`` (a grid point and replica) and
#: node ``j`` of its rule: the channel at ``Z[row_rep[i], j]``, the global prox (from
#: ``Y0[i, j]`` only where ``use_y0``), the integrands there, ``E[i] = Σ_j W[row_rep[i], j] ·
#: integrands`` (compensated summation), the minimisers ``Y[i, j]``, ``OK[i]`` (every node's prox converged) and
#: ``MULTI[i]`` (flagged nodes), over the nodes ``j0 <= j < j1`` (``Y0``, ``Y`` hold those
#: nodes only). It runs without the GIL: :class:`NodeLoop` deals (row, block of nodes) tasks to
#: threads and adds the blocks' sums in a fixed order, so the result does not depend on the
#: number of threads.
LOOP_SOURCE = '''
import numpy as _np


@_jit
def _newton2(c, y0, y1, gtol, maxiter):
    delta = 1e-8
    eps8 = 8.0 * 2.220446049250313e-16
    f, g0, g1, a, b, cc = node_fgh(y0, y1, c)
    if not (math.isfinite(f) and math.isfinite(g0) and math.isfinite(g1)):
        return y0, y1, f, False
    if max(abs(g0), abs(g1)) <= gtol:
        return y0, y1, f, True
    for _ in range(maxiter):
        scale = max(1.0, max(max(abs(a), abs(cc)), abs(b)))
        lam = 0.5 * (a + cc) - math.sqrt(0.25 * (a - cc) ** 2 + b * b)
        mu = abs(lam) + delta * scale if lam < delta * scale else 0.0
        aa = a + mu
        c2 = cc + mu
        det = aa * c2 - b * b
        p0 = -(c2 * g0 - b * g1) / det
        p1 = -(aa * g1 - b * g0) / det
        cap = 10.0 * max(1.0, max(abs(y0), abs(y1)))
        size = max(abs(p0), abs(p1))
        r = min(1.0, cap / max(size, 1e-300))
        p0 *= r
        p1 *= r
        slope = g0 * p0 + g1 * p1
        slack = eps8 * max(1.0, abs(f))
        t = 1.0
        accepted = False
        for _h in range(40):
            z0 = y0 + t * p0
            z1 = y1 + t * p1
            fc, h0, h1, ha, hb, hc = node_fgh(z0, z1, c)
            if math.isfinite(fc) and fc <= f + 1e-4 * t * slope + slack:
                y0, y1, f, g0, g1, a, b, cc = z0, z1, fc, h0, h1, ha, hb, hc
                accepted = True
                break
            t *= 0.5
        gn = max(abs(g0), abs(g1))
        if gn <= gtol:
            return y0, y1, f, True
        if not accepted:  # no decrease possible: at a minimum to round-off, or stuck
            return y0, y1, f, gn <= 1e3 * gtol * max(1.0, abs(f))
    return y0, y1, f, False


@_jit
def node_loop(n_starts, n_c, X, PAR, row_pt, row_rep, Z, W, Y0, use_y0, gtol, maxiter, j0, j1, E, Y, OK, MULTI):
    n_i = E.shape[1]
    c = _np.empty(n_c)
    out = _np.empty(n_i)
    acc = _np.empty(n_i)
    comp = _np.empty(n_i)
    ys0 = _np.empty(n_starts)
    ys1 = _np.empty(n_starts)
    oks = _np.zeros(n_starts, dtype=_np.bool_)
    for i in range(X.shape[0]):
        x = X[i]
        par = PAR[row_pt[i]]
        rep = row_rep[i]
        acc[:] = 0.0
        comp[:] = 0.0
        ok_all = True
        multi = 0
        for j in range(j0, j1):
            z = Z[rep, j]
            node_channel(x, par, z, c)
            if use_y0:
                b0, b1, bf, bok = _newton2(c, Y0[i, j - j0, 0], Y0[i, j - j0, 1], gtol, maxiter)
            else:
                b0, b1, bf, bok = 0.0, 0.0, math.inf, False
                for k in range(n_starts):
                    s0, s1 = node_start(c, k)
                    y0, y1, f, ok = _newton2(c, s0, s1, gtol, maxiter)
                    ys0[k] = y0
                    ys1[k] = y1
                    oks[k] = ok
                    if ok and f < bf:
                        b0, b1, bf, bok = y0, y1, f, True
                if not bok:
                    b0, b1 = ys0[0], ys1[0]
                far = 0
                for k in range(n_starts):
                    if oks[k] and max(abs(ys0[k] - b0), abs(ys1[k] - b1)) > 1e-6:
                        far += 1
                if far > 0:
                    multi += 1
            if not bok:
                ok_all = False
            node_integrands(b0, b1, x, par, z, c, out)
            w = W[rep, j]
            for k in range(n_i):  # Neumaier's compensated sum: terms that cancel exactly (a rule
                v = w * out[k]    # closed under a symmetry) leave no round-off
                t = acc[k] + v
                if abs(acc[k]) >= abs(v):
                    comp[k] += (acc[k] - t) + v
                else:
                    comp[k] += (v - t) + acc[k]
                acc[k] = t
            Y[i, j - j0, 0] = b0
            Y[i, j - j0, 1] = b1
        for k in range(n_i):
            E[i, k] = acc[k] + comp[k]
        OK[i] = ok_all
        MULTI[i] = multi
'''


class NodeLoop:
    """The expectation step of :class:`numerics.saddle.SaddleDriver` as one compiled loop
    (:data:`LOOP_SOURCE`), for a problem whose prox has two variables.

    ``module`` (from :func:`derive.codegen.link.load_module`) defines ``node_channel``, ``node_start``, ``node_fgh``,
    ``node_integrands`` and ``node_loop``; ``names`` are the integrands in the order
    ``node_integrands`` writes them; ``n_channel`` the length of the channel buffer; ``par`` the
    per-point parameters ``(P, n_par)`` the channel reads; ``threads`` (default: the cores this
    process may use) the threads that the tasks -- one row (a grid point and replica) and one
    block of :attr:`block` nodes each -- are dealt to (the compiled loop runs without the GIL). Called by the driver as
    ``loop(x, pt, rep, nodes, weights, y0, gtol, maxiter) -> (E, y, prox_ok, multi)``."""

    #: nodes per task (a thread's unit of work; the sums of blocks are added in order)
    block = 4096

    def __init__(self, module: Any, names: tuple[str, ...], n_channel: int, n_starts: int, par: Any,
                 threads: int | None = None) -> None:
        import os

        self.module, self.names = module, tuple(names)
        self.n_channel, self.n_starts = int(n_channel), int(n_starts)
        self.par = np.ascontiguousarray(np.asarray(par, dtype=float))
        if threads is None:
            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.threads = max(1, int(threads))

    def __call__(self, x: Any, pt: Any, rep: Any, nodes: Any, weights: Any, y0: Any, gtol: float,
                 maxiter: int) -> tuple[dict[str, Any], Any, Any, Any]:
        P = x.shape[0]
        N = nodes.shape[1]
        Y = np.empty((P, N, 2))
        use_y0 = y0 is not None
        X = np.ascontiguousarray(x, dtype=float)
        pt = np.ascontiguousarray(pt, dtype=np.int64)
        rep = np.ascontiguousarray(rep, dtype=np.int64)
        Z = np.ascontiguousarray(nodes, dtype=float)
        W = np.ascontiguousarray(weights, dtype=float)
        Y0 = np.ascontiguousarray(y0, dtype=float).reshape(P, N, 2) if use_y0 else np.empty((P, 1, 2))
        B = self.block
        nb = -(-N // B)
        EB = np.empty((P, nb, len(self.names)))
        OKB = np.empty((P, nb), dtype=np.bool_)
        MB = np.empty((P, nb), dtype=np.int64)
        gt, mi = float(gtol), int(maxiter)

        def run(i: int, b: int) -> None:
            j0, j1 = b * B, min(N, (b + 1) * B)
            self.module.node_loop(self.n_starts, self.n_channel, X[i:i + 1], self.par, pt[i:i + 1], rep[i:i + 1], Z, W,
                                  Y0[i:i + 1, j0:j1] if use_y0 else Y0, use_y0, gt, mi, j0, j1,
                                  EB[i:i + 1, b], Y[i:i + 1, j0:j1], OKB[i:i + 1, b], MB[i:i + 1, b])

        tasks = [(i, b) for i in range(P) for b in range(nb)]
        nt = min(self.threads, len(tasks))
        if nt <= 1:
            for t in tasks:
                run(*t)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=nt) as pool:
                for f in [pool.submit(run, *t) for t in tasks]:
                    f.result()
        E = EB.sum(axis=1)  # the blocks in a fixed order: independent of the number of threads
        OK = OKB.all(axis=1)
        MULTI = MB.sum(axis=1)
        return {nm: E[:, k] for k, nm in enumerate(self.names)}, Y, OK, MULTI
