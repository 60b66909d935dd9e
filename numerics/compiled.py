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
#: integrands`` (compensated summation), the minimisers ``Y[i, j]``, ``OK[i]`` (every node's prox
#: converged) and ``MULTI[i]`` (flagged nodes).
#:
#: **Orbits.** The nodes are visited by orbits ``j = b + k·nb`` (``k < g``, ``b0 <= b < b1``): a
#: rule closed under a group of ``g`` node maps stores each image block after the base block. The
#: global prox of orbit member ``k`` is *not* solved again where its channel buffer equals, to
#: ``ctol`` relative (round-off), an earlier member's transformed by one of the declared
#: symmetries ``s`` of the prox objective — ``c[a] = CS[s, a]·c'[CP[s, a]]`` for every ``a``, and
#: (where ``use_y0``) the Newton starts map the same way —
#: since ``M(T_s y; T_s c) = M(y; c)`` for those (the model declares them; its tests check the
#: invariance symbolically): its minimiser is the transformed one, ``y[a] = YS[s, a]·y'[YP[s, a]]``,
#: with the same convergence and multiple-minima flags. A node whose channel matches none is
#: solved from its starts, so the map is the same with or without orbits, to round-off.
#: (Closing a rule under a symmetry of the channel that holds only on a branch's invariant set,
#: e.g. θ = 0, halves the Newton work there and costs nothing elsewhere.)
#:
#: It runs without the GIL: :class:`NodeLoop` deals (row, block of orbits) tasks to threads and
#: adds the blocks' sums in a fixed order, so the result does not depend on the number of
#: threads.
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
def _same_channel(c, ref, CP, CS, s, ctol):  # c[a] == CS[s, a]·ref[CP[s, a]] to ctol (also for starts)
    for a in range(c.shape[0]):
        r = CS[s, a] * ref[CP[s, a]]
        if abs(c[a] - r) > ctol * max(1.0, abs(r)):
            return False
    return True


@_jit
def node_loop(n_starts, n_c, X, PAR, row_pt, row_rep, Z, W, Y0, use_y0, gtol, maxiter, g, nb, CP, CS, YP, YS,
              ctol, b0, b1, E, Y, OK, MULTI):
    n_i = E.shape[1]
    n_sym = CP.shape[0]
    C = _np.empty((g, n_c))
    YB = _np.empty((g, 2))
    OKB = _np.zeros(g, dtype=_np.bool_)
    FAR = _np.zeros(g, dtype=_np.bool_)
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
        for bb in range(b0, b1):
            for k in range(g):
                j = bb + k * nb
                z = Z[rep, j]
                c = C[k]
                node_channel(x, par, z, c)
                found = False
                for k2 in range(k):  # an earlier node of the orbit whose prox problem maps to this one
                    for s in range(n_sym):
                        if _same_channel(c, C[k2], CP, CS, s, ctol) and (not use_y0 or _same_channel(
                                Y0[i, j], Y0[i, bb + k2 * nb], YP, YS, s, ctol)):
                            b0_ = YS[s, 0] * YB[k2, YP[s, 0]]
                            b1_ = YS[s, 1] * YB[k2, YP[s, 1]]
                            bok = OKB[k2]
                            far = FAR[k2]
                            found = True
                            break
                    if found:
                        break
                if not found:
                    if use_y0:
                        b0_, b1_, bf, bok = _newton2(c, Y0[i, j, 0], Y0[i, j, 1], gtol, maxiter)
                        far = False
                    else:
                        b0_, b1_, bf, bok = 0.0, 0.0, math.inf, False
                        for kk in range(n_starts):
                            s0, s1 = node_start(c, kk)
                            y0, y1, f, ok = _newton2(c, s0, s1, gtol, maxiter)
                            ys0[kk] = y0
                            ys1[kk] = y1
                            oks[kk] = ok
                            if ok and f < bf:
                                b0_, b1_, bf, bok = y0, y1, f, True
                        if not bok:
                            b0_, b1_ = ys0[0], ys1[0]
                        far = False
                        for kk in range(n_starts):
                            if oks[kk] and max(abs(ys0[kk] - b0_), abs(ys1[kk] - b1_)) > 1e-6:
                                far = True
                YB[k, 0] = b0_
                YB[k, 1] = b1_
                OKB[k] = bok
                FAR[k] = far
                if far:
                    multi += 1
                if not bok:
                    ok_all = False
                node_integrands(b0_, b1_, x, par, z, c, out)
                w = W[rep, j]
                for kk in range(n_i):  # Neumaier's compensated sum: terms that cancel exactly (a rule
                    v = w * out[kk]    # closed under a symmetry) leave no round-off
                    t = acc[kk] + v
                    if abs(acc[kk]) >= abs(v):
                        comp[kk] += (acc[kk] - t) + v
                    else:
                        comp[kk] += (v - t) + acc[kk]
                    acc[kk] = t
                Y[i, j, 0] = b0_
                Y[i, j, 1] = b1_
        for kk in range(n_i):
            E[i, kk] = acc[kk] + comp[kk]
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
    block of orbits (:attr:`block` nodes) each -- are dealt to (the compiled loop runs without the GIL).

    ``orbit`` (``g``): the rule's nodes are orbits ``j = b + k·N/g`` of a group of ``g`` node maps
    (``N`` divisible by ``g``; otherwise, and for ``g = 1``, no orbits); ``symmetries``: the prox
    objective's symmetries as ``(c_perm, c_sign, y_perm, y_sign)`` — ``M(y'; c') = M(y; c)`` for
    ``c'[a] = c_sign[a]·c[c_perm[a]]``, ``y'[a] = y_sign[a]·y[y_perm[a]]`` — used to take an orbit
    member's minimiser from an earlier member's where their channels match to ``ctol`` (see
    :data:`LOOP_SOURCE`). Called by the driver as
    ``loop(x, pt, rep, nodes, weights, y0, gtol, maxiter) -> (E, y, prox_ok, multi)``."""

    #: nodes per task (a thread's unit of work; the sums of blocks are added in order)
    block = 4096
    #: relative distance under which two channel buffers are the same prox problem (round-off)
    ctol = 1e-13

    def __init__(self, module: Any, names: tuple[str, ...], n_channel: int, n_starts: int, par: Any,
                 threads: int | None = None, orbit: int = 1,
                 symmetries: Any = ()) -> None:
        import os

        self.module, self.names = module, tuple(names)
        self.n_channel, self.n_starts = int(n_channel), int(n_starts)
        self.par = np.ascontiguousarray(np.asarray(par, dtype=float))
        if threads is None:
            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.threads = max(1, int(threads))
        if int(orbit) < 1:
            raise ValueError(f"orbit must be an integer >= 1, got {orbit!r}")
        self.orbit = int(orbit)
        sym = list(symmetries)
        nc = self.n_channel
        self.CP = np.array([np.asarray(s[0], dtype=np.int64) for s in sym], dtype=np.int64).reshape(len(sym), nc)
        self.CS = np.array([np.asarray(s[1], dtype=float) for s in sym], dtype=float).reshape(len(sym), nc)
        self.YP = np.array([np.asarray(s[2], dtype=np.int64) for s in sym], dtype=np.int64).reshape(len(sym), 2)
        self.YS = np.array([np.asarray(s[3], dtype=float) for s in sym], dtype=float).reshape(len(sym), 2)
        for name, arr, n in (("c_perm", self.CP, nc), ("y_perm", self.YP, 2)):
            if arr.size and (arr.min() < 0 or arr.max() >= n):
                raise ValueError(f"symmetries: {name} entries must be in [0, {n}), got {arr.tolist()}")

    def _executor(self) -> Any:
        """This loop's worker threads, started on first use and kept for its later calls (a
        solve evaluates the map tens of times: a pool per call cost more than the small rules'
        loops); they end with the loop object."""
        if getattr(self, "_pool", None) is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="node-loop")
        return self._pool

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)

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
        g = self.orbit if (self.orbit > 1 and N % self.orbit == 0 and self.CP.shape[0]) else 1
        nbase = N // g
        B = max(1, self.block // g)  # orbits per task
        nb = -(-nbase // B)
        EB = np.empty((P, nb, len(self.names)))
        OKB = np.empty((P, nb), dtype=np.bool_)
        MB = np.empty((P, nb), dtype=np.int64)
        gt, mi = float(gtol), int(maxiter)

        def run(i: int, b: int) -> None:
            b0, b1 = b * B, min(nbase, (b + 1) * B)
            self.module.node_loop(self.n_starts, self.n_channel, X[i:i + 1], self.par, pt[i:i + 1], rep[i:i + 1], Z, W,
                                  Y0[i:i + 1] if use_y0 else Y0, use_y0, gt, mi, g, nbase, self.CP, self.CS,
                                  self.YP, self.YS, self.ctol, b0, b1,
                                  EB[i:i + 1, b], Y[i:i + 1], OKB[i:i + 1, b], MB[i:i + 1, b])

        tasks = [(i, b) for i in range(P) for b in range(nb)]
        nt = min(self.threads, len(tasks))
        if nt <= 1:
            for t in tasks:
                run(*t)
        else:
            import threading

            queue, lock = iter(tasks), threading.Lock()

            def worker() -> None:  # takes tasks until none is left (the blocks' sums land in place)
                while True:
                    with lock:
                        t = next(queue, None)
                    if t is None:
                        return
                    run(*t)

            for f in [self._executor().submit(worker) for _ in range(nt)]:
                f.result()
        E = EB.sum(axis=1)  # the blocks in a fixed order: independent of the number of threads
        OK = OKB.all(axis=1)
        MULTI = MB.sum(axis=1)
        return {nm: E[:, k] for k, nm in enumerate(self.names)}, Y, OK, MULTI
