#!/usr/bin/env python
r"""Benchmark of the ``icl-linear-attention`` model (Lu et al., spec ``icl_linear_attention.md``).

Run from the repository root::

    python benchmarks/bench_icl_linear_attention.py [--points N] [--backend numpy|cupy]
                                                   [--out FILE.md] [--sample 2000]

It builds an outer-product grid of about ``N`` (default 10^5) points over
(tau, alpha, kappa, lam) at rho = 0.01 and measures

(a) the generated, vectorised pipeline -- ``derive.solve`` (with the xarray packaging)
    and ``model.evaluate`` on flat arrays (without it) -- against per-point scalar loops
    in the style of the authors' code (``ridge_icl``: ``scipy.optimize.fsolve`` from 100
    initial guesses in [1e-4, 10], round to 6 decimals, smallest positive root;
    ``ridgeless_icl``/``ridgeless_idg``: closed forms with an ``if`` on tau < 1), and a
    leaner per-point ``scipy.optimize.brentq`` loop.  The scalar loops are timed on a
    random subsample and extrapolated per point.  Accuracy: all of them against the
    model's 30-digit mpmath pipeline (``model.evaluate_mp``) on a few dozen points.
(b) the generated pipeline against a hand-written NumPy implementation of the same
    formulas, the same root-finding algorithm as ``numerics.roots`` (bracket expanded x4
    only where needed; safeguarded Newton comparing with the step before last, log-space
    bisection, final tiny Newton correction, rtol = 1e-15; active-set compaction once
    fewer than half the working points are still iterating) and the same outputs
    (residual |f(eps)| and status codes included), on the same full grid.  Extra rows: a
    lean hand-written variant without residual and status, the generated kernels driven by
    the hand-written root loop (splits the gap between kernels and ``numerics.roots``), and
    the root finder's previous algorithm (whole array, no compaction).

Everything the scalar loops and the hand-written version compute is written here from
the spec's formulas (§2.1-§2.4); nothing is taken from ``derive`` (the "what-if" row
calls the model's generated kernels on purpose).  The script prints a
Markdown report (and writes it to ``--out``).  It is a script, not a test.

Timing: the vectorised variants run round-robin for ``--repeat`` rounds (default 15) after a
warm-up round, so that a change of machine load hits all of them alike; the report gives the
best and median wall time, the best process CPU time, and for (b) the median, quartiles and
range of the per-round ratio ``model.evaluate / hand-written`` (the headline), besides the
ratio of the best times and the CPU-time ratio. On a shared machine the ratio grows with the
load (the generated pipeline touches more memory per point), so read it with the load average
the report records at the start and at the end of the timed rounds.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime as _dt
import math
import os
import platform
import pstats
import re
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Any, Callable

import numpy as np
from scipy.optimize import brentq, fsolve

from _machine import cpu_name  # noqa: E402 - sibling module (scripts run from this folder)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:  # the package is normally installed (editable); otherwise use this checkout
    import derive  # noqa: F401
except ImportError:
    sys.path.insert(0, ROOT)

MODEL = "icl-linear-attention"
RHO = 0.01
RTOL = 1e-15  # the generated pipeline's root tolerance (derive/models/icl_linear_attention.py)
TARGET_SPEEDUP = 100.0  # (a): generated vs authors'-style per-point loop
TARGET_RATIO = 1.2  # (b): generated / hand-written
OBS = ("e_icl", "e_idg", "e_train", "eps")
# status codes, the values of numerics.results.Status (not imported: this file takes nothing
# from the pipeline it measures)
STATUS_OK, STATUS_MAXITER, STATUS_NO_BRACKET, STATUS_NONFINITE, STATUS_POLE = 0, 1, 2, 3, 4


# =============================================================================== grid
def build_grid(points: int) -> dict[str, np.ndarray]:
    """Axes of the benchmark grid; 20 x 10 x 10 x 50 = 10^5 points for ``points = 10^5``.

    tau: linspace in [0.1, 10] without tau = 1 exactly; alpha: log-spaced in [0.5, 100];
    kappa: log-spaced in [0.1, 10] plus inf; lam: 0 plus log-spaced in [1e-6, 10].
    Other sizes scale every axis by (points / 10^5)^(1/4).
    """
    s = (points / 1e5) ** 0.25
    n_tau, n_alpha, n_kappa, n_lam = (max(2, round(n * s)) for n in (20, 10, 10, 50))
    tau = np.linspace(0.1, 10.0, n_tau)
    tau = tau[tau != 1.0]
    return {
        "tau": tau,
        "alpha": np.geomspace(0.5, 100.0, n_alpha),
        "kappa": np.r_[np.geomspace(0.1, 10.0, n_kappa - 1), np.inf],
        "lam": np.r_[0.0, np.geomspace(1e-6, 10.0, n_lam - 1)],
    }


def flatten(axes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    mesh = np.meshgrid(axes["tau"], axes["alpha"], axes["kappa"], axes["lam"], indexing="ij")
    flat = {k: m.reshape(-1).copy() for k, m in zip(("tau", "alpha", "kappa", "lam"), mesh)}
    flat["rho"] = np.full(flat["tau"].size, RHO)
    return flat


# =============================================================================== timing
def best_of(fn: Callable[[], Any], repeat: int, sync: Callable[[], None] = lambda: None
            ) -> tuple[float, Any]:
    """timeit-style: one warm-up call, then the best wall time of ``repeat`` calls."""
    out = fn()
    sync()
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def best_of_interleaved(fns: dict[str, Callable[[], Any]], repeat: int,
                        sync: Callable[[], None] = lambda: None,
                        rounds: dict[str, dict[str, list[float]]] | None = None
                        ) -> tuple[dict[str, float], dict[str, Any]]:
    """``best_of`` for several functions, run round-robin (warm-up round first), so that a
    change in machine load during the run affects all of them alike.

    With ``rounds`` (a dict, filled here) every round's wall time and process CPU time are
    kept: ``rounds["wall"][name]``, ``rounds["cpu"][name]`` (lists of ``repeat`` floats), so
    the report can give the spread and per-round ratios of functions timed side by side."""
    outs = {}
    for k, fn in fns.items():
        outs[k] = fn()
        sync()
    best = {k: math.inf for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            c0 = time.process_time()
            t0 = time.perf_counter()
            outs[k] = fn()
            sync()
            dt = time.perf_counter() - t0
            cpu[k].append(time.process_time() - c0)
            wall[k].append(dt)
            best[k] = min(best[k], dt)
    if rounds is not None:
        rounds.update(wall=wall, cpu=cpu)
    return best, outs


def ratio_stats(num: list[float], den: list[float]) -> dict[str, float]:
    """Per-round ratios ``num[i]/den[i]`` of two functions timed in the same rounds:
    median, quartiles and extremes; and the ratio of their minima (best of each)."""
    r = np.asarray(num) / np.asarray(den)
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "min": float(r.min()),
            "max": float(r.max()), "best": min(num) / min(den)}


def cold_start_times() -> dict[str, float]:
    """First-call costs, each in a fresh interpreter: import; first evaluate with an empty
    kernel cache (SymPy derivation + lowering + code generation + compile); first evaluate
    with the on-disk cache filled (SymPy derivation + lowering + hashing + compile)."""
    code = (
        "import time; t0 = time.perf_counter()\n"
        "import numpy as np, derive\n"
        "from numerics.backend import get_backend\n"
        "t1 = time.perf_counter()\n"
        f"m = derive.models.get({MODEL!r})\n"
        "p = dict(tau=np.array([0.5, 2.0]), alpha=np.array([10.0, 10.0]),"
        " kappa=np.array([0.5, 0.5]), rho=np.array([0.01, 0.01]), lam=np.array([0.0, 0.1]))\n"
        "m.evaluate(p, get_backend('numpy'))\n"
        "t2 = time.perf_counter()\n"
        "print(t1 - t0, t2 - t1)\n"
    )
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, ATTN_THEORY_CACHE=tmp,
                   PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
        for label in ("empty cache", "disk cache"):
            r = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                               capture_output=True, text=True, check=True)
            t_imp, t_first = map(float, r.stdout.split()[-2:])
            out["import"] = t_imp
            out[label] = t_first
    return out


# =============================================================================== (a) authors' style
# Written from the spec (§2.1-§2.4, §3) in the style of the authors' theory code:
# plain functions on Python/NumPy scalars, one call per grid point.
def _a_M(x, kappa):
    """M_kappa(x), the closed form as the authors write it (spec §2.1)."""
    b = x + 1 - 1 / kappa
    return 2 / (b + np.sqrt(b**2 + 4 * x / kappa))


def _a_Mp(x, kappa):
    """M'_kappa(x), the authors' second form (spec §2.1)."""
    b = x + 1 - 1 / kappa
    return -1 / 2 * _a_M(x, kappa) ** 2 * (1 + (x + 1 + 1 / kappa) / np.sqrt(b**2 + 4 * x / kappa))


def _a_eps_equation(eps, q, tau, kappa, lam):
    return 1 - tau + tau * lam / eps - eps * _a_M(eps + q, kappa)


def authors_point(tau, alpha, kappa, rho, lam) -> tuple[float, float, float, float]:
    """(e_icl, e_idg, e_train, eps) at one point, authors' style.

    lam > 0: eps by fsolve from 100 guesses linspace(1e-4, 10, 100), positive solutions
    rounded to 6 decimals, smallest one (spec §3 ``ridge_icl``); then §2.3 (the authors
    have no ridge-IDG function; -tau*c_e from the same quantities is used).
    lam = 0: the closed forms of §2.4 with an ``if`` on tau < 1.  At kappa = inf the
    authors' ``k_star`` is NaN; its limit k* = 1 is used there (spec §2.1).
    """
    q = (1 + rho) / alpha
    if lam > 0:
        sols = []
        for guess in np.linspace(0.0001, 10, 100):
            s = fsolve(_a_eps_equation, guess, args=(q, tau, kappa, lam))
            if s[0] > 0:
                sols.append(s[0])
        if not sols:
            return (math.nan,) * 4
        eps = np.unique(np.round(sols, 6))[0]
        nu = q + eps
        M, Mp = _a_M(nu, kappa), _a_Mp(nu, kappa)
        c_e = ((rho + nu - nu**2 * M - eps * (1 - 2 * nu * M - nu**2 * Mp))
               / (1 - 2 * eps * M - eps**2 * Mp - tau))
        e_icl = (q + 1) * (1 - 2 * nu * M - nu**2 * Mp - c_e * (M + eps * Mp)) - 2 * (1 - nu * M) + 1 + rho
        e_idg = -tau * c_e
        e_train = (lam / eps) ** 2 * e_idg if eps > 0 else math.inf
        return float(e_icl), float(e_idg), float(e_train), float(eps)
    m_star = _a_M(q, kappa)
    mu_star = q * _a_M(q, kappa / tau)
    sig2 = rho + q * (1 - q * m_star)
    if tau < 1:
        eps = (1 - tau) * q / (tau * mu_star)
        e_icl = (tau * (1 + q) / (1 - tau) * (1 - tau * (1 - mu_star) ** 2 - (q - rho) / q * mu_star)
                 - 2 * tau * (1 - mu_star) + rho + 1)
        c = 1 / (1 - kappa / (1 + kappa * eps / (1 - tau)) ** 2) if math.isfinite(kappa) else 1.0
        e_idg = tau * ((q + eps) ** 2 / eps
                       + (rho + q - 2 * q * (1 - tau) * (q / eps + 1)) / (1 - tau - c * (1 - tau) ** 2))
        e_train = 0.0
    else:
        eps = 0.0
        k_star = (1 - kappa * (m_star / (kappa + m_star)) ** 2) ** -1 if math.isfinite(kappa) else 1.0
        e_icl = ((k_star - 1 / (tau - 1)) * (1 + q) * (q * m_star) ** 2
                 + (3 - 2 * tau) / (tau - 1) * m_star * q**2
                 + ((1 + rho) / (tau - 1) * m_star + 1) * q + rho * m_star / (tau - 1) + rho)
        e_idg = tau / (tau - 1) * sig2
        e_train = (tau - 1) / tau * sig2
    return float(e_icl), float(e_idg), float(e_train), float(eps)


# =============================================================================== (a') lean scalar loop
def _s_M(x: float, kinv: float) -> float:
    """M_kappa(x) (kinv = 1/kappa) without cancellation for either sign of b."""
    b = x + 1.0 - kinv
    s = math.sqrt(b * b + 4.0 * x * kinv)
    return 2.0 / (b + s) if b >= 0 else (s - b) / (2.0 * x * kinv)


def _s_f(eps: float, q: float, tau: float, kinv: float, lam: float) -> float:
    return eps * _s_M(q + eps, kinv) + tau - 1.0 - tau * lam / eps


def brentq_point(tau, alpha, kappa, rho, lam) -> tuple[float, float, float, float]:
    """(e_icl, e_idg, e_train, eps) at one point: ``math`` scalars, eps by brentq on the
    monotone f of §2.2 in the bracket [lam, tau lam/(tau-1) or lam+1] (expanded x4),
    rtol = 4 machine epsilons (brentq's floor), closed-form eps0 at lam = 0."""
    kinv = 1.0 / kappa
    q = (1.0 + rho) / alpha
    if lam > 0:
        lo = lam
        hi = tau * lam / (tau - 1.0) if tau > 1 else lam + 1.0
        while _s_f(hi, q, tau, kinv, lam) <= 0:
            lo, hi = hi, 4.0 * hi
        eps = brentq(_s_f, lo, hi, args=(q, tau, kinv, lam), xtol=1e-300, rtol=4 * np.finfo(float).eps,
                     maxiter=400)
        r = lam / eps
    elif tau < 1:
        eps = (1.0 - tau) / (tau * _s_M(q, kinv * tau))
        r = 0.0
    else:
        eps, r = 0.0, (tau - 1.0) / tau
    nu = q + eps
    M = _s_M(nu, kinv)
    Mp = -M * M * (1.0 + M * kinv) / (1.0 + nu * M * M * kinv)
    D = 1.0 - 2.0 * eps * M - eps * eps * Mp
    N = rho + nu - nu * nu * M - eps * (1.0 - 2.0 * nu * M - nu * nu * Mp)
    e_idg = tau * N / (tau - D)
    e_icl = (1.0 + rho) - 2.0 * (1.0 - nu * M) + (1.0 + q) * (
        1.0 - 2.0 * nu * M - nu * nu * Mp + N / (tau - D) * (M + eps * Mp))
    return e_icl, e_idg, r * r * e_idg, eps


def run_pointwise(fn: Callable[..., tuple], flat: dict[str, np.ndarray], idx: np.ndarray
                  ) -> tuple[float, dict[str, np.ndarray]]:
    """A plain Python loop over the points ``idx``; returns (seconds, results)."""
    cols = [flat[k][idx].tolist() for k in ("tau", "alpha", "kappa", "rho", "lam")]
    res = []
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        for t, a, k, rh, lm in zip(*cols):
            try:
                res.append(fn(t, a, k, rh, lm))
            except (ValueError, ZeroDivisionError, RuntimeError):
                res.append((math.nan,) * 4)
        elapsed = time.perf_counter() - t0
    arr = np.array(res, dtype=float).reshape(-1, 4)
    return elapsed, {k: arr[:, i] for i, k in enumerate(OBS)}


# =============================================================================== (b) hand-written
def solve_eps(xp: Any, f: Callable, f_fp: Callable, tau: Any, lam: Any, args: tuple,
              maxiter: int = 200) -> tuple[Any, Any, Any]:
    """The generated pipeline's root-finding algorithm for eps (lam > 0), written out by hand:
    ``numerics.roots.expand_bracket`` followed by ``numerics.roots.bracketed_root(...,
    log_space=True, rtol=RTOL)`` as of this commit, same iterates, same tolerances.

    * Bracket [lam, tau lam/(tau-1) (tau > 1) | lam + 1]; while f(hi) <= 0: lo <- hi where
      f(hi) < 0, hi <- 4 hi, at most 60 times, evaluating f only where that is needed.
    * x0 = sqrt(lo hi); safeguarded Newton ("rtsafe"): the Newton point is taken where it
      lies strictly inside the bracket and |f/f'| <= 1/2 of the step before last, otherwise
      the geometric midpoint.
    * A point converges when f = 0, or |f/f'| <= RTOL x (that last Newton correction is then
      taken), or its step or its bracket is <= RTOL x_new.  A non-finite f stops it (NaN).
    * Each point's result is recorded when it stops; the working set is compacted (index
      gathers) once fewer than half of its points are still iterating, stopped points ride
      along until then (as ``numerics.roots`` does on NumPy).

    Written for this f: increasing, lo < hi and eps > 0, so no orientation or sign logic.
    ``f(e, *args)`` and ``f_fp(e, *args) -> (f, f')`` are vectorised.  Returns eps (NaN
    where not converged), iterations and status codes (``numerics.results.Status`` values).
    """
    lo = xp.array(lam, dtype=float)
    hi = xp.where(tau > 1, tau * lam / (tau - 1.0), lam + 1.0)
    f_hi = f(hi, *args)
    need = xp.nonzero(~(f_hi > 0))[0]
    for _ in range(60):
        if need.size == 0:
            break
        h = hi[need]
        lo[need] = xp.where(f_hi[need] < 0, h, lo[need])
        h = 4.0 * h
        hi[need] = h
        fh = f(h, *(a[need] for a in args))
        f_hi[need] = fh
        need = need[~(fh > 0)]
    f_lo = f(lo, *args)
    ok = xp.isfinite(f_lo) & xp.isfinite(f_hi) & (f_lo <= 0) & (f_hi > 0)
    eps = xp.full(lam.shape, xp.nan)
    iters = xp.zeros(lam.shape, dtype=xp.int64)
    status = xp.where(ok, STATUS_OK, STATUS_NO_BRACKET).astype(xp.int8)
    exact = ok & (f_lo == 0)
    eps[exact] = lo[exact]
    idx = xp.nonzero(ok & ~exact)[0]
    lo, hi = lo[idx], hi[idx]
    x = xp.sqrt(lo * hi)
    args = tuple(a[idx] for a in args)
    dx = dx_old = hi - lo
    live = None  # None: every point of the working set is still iterating
    n_live = idx.size
    for it in range(maxiter):
        if n_live == 0:
            break
        fx, dfx = f_fp(x, *args)
        neg = fx < 0
        lo = xp.where(neg, x, lo)
        hi = xp.where(neg, hi, x)
        step = fx / dfx
        newton = x - step
        a_step = xp.abs(step)
        use = (newton > lo) & (newton < hi) & (a_step <= 0.5 * dx_old)
        x_new = xp.where(use, newton, xp.sqrt(lo * hi))
        tiny = a_step <= RTOL * x
        d = xp.abs(x_new - x)
        tol = RTOL * x_new
        fin = xp.isfinite(fx)
        stop = ~fin | (fx == 0) | tiny | (d <= tol) | (hi - lo <= tol)
        x = xp.where(tiny, newton, x_new)  # f = 0 gives step 0, so tiny and newton = x
        dx_old, dx = dx, d
        if live is not None:
            stop &= live
        n_stop = int(xp.count_nonzero(stop))
        if n_stop == 0:
            continue
        # record the points that stop now; they ride along until the next compaction
        e = xp.nonzero(stop)[0]
        g, fin_e = idx[e], fin[e]
        eps[g] = xp.where(fin_e, x[e], xp.nan)
        iters[g] = it + fin_e
        status[g] = xp.where(fin_e, STATUS_OK, STATUS_NONFINITE)
        n_live -= n_stop
        keep = ~stop if live is None else live & ~stop
        if n_live < 0.5 * keep.size:  # compact once fewer than half are still iterating
            k = xp.nonzero(keep)[0]
            idx, x, lo, hi, dx, dx_old = idx[k], x[k], lo[k], hi[k], dx[k], dx_old[k]
            args = tuple(a[k] for a in args)
            live = None
        else:
            live = keep
    if n_live:
        g = idx if live is None else idx[live]
        iters[g] = maxiter
        status[g] = STATUS_MAXITER
    return eps, iters, status


def solve_eps_previous(xp: Any, f: Callable, f_fp: Callable, tau: Any, lam: Any, args: tuple,
                       maxiter: int = 200) -> tuple[Any, Any]:
    """The *previous* ``bracketed_root`` algorithm (before its rewrite), by hand: the whole
    array iterated with ``where`` until the slowest point converges (converged points
    frozen), the safeguard comparing with the last step, no final Newton correction, and the
    bracket expanded by evaluating f on the whole array."""
    lo = lam
    hi = xp.where(tau > 1, tau * lam / (tau - 1.0), lam + 1.0)
    f_hi = f(hi, *args)
    for _ in range(60):
        need = ~(f_hi > 0)
        if not bool(need.any()):
            break
        lo = xp.where(need & (f_hi < 0), hi, lo)
        hi = xp.where(need, 4.0 * hi, hi)
        f_hi = xp.where(need, f(hi, *args), f_hi)
    f_lo = f(lo, *args)
    ok = xp.isfinite(f_lo) & xp.isfinite(f_hi) & (f_lo <= 0) & (f_hi > 0)
    x = xp.sqrt(lo * hi)
    dx_old = hi - lo
    iters = xp.zeros(x.shape, dtype=xp.int64)
    active = ok.copy()
    done = xp.zeros(x.shape, dtype=bool)
    for _ in range(maxiter):
        if not bool(active.any()):
            break
        fx, dfx = f_fp(x, *args)
        active &= xp.isfinite(fx)
        hit = active & (fx == 0)
        neg = fx < 0
        lo = xp.where(active & neg, x, lo)
        hi = xp.where(active & ~neg, x, hi)
        bis = xp.sqrt(lo * hi)
        newton = x - fx / dfx
        use = (newton > lo) & (newton < hi) & (xp.abs(newton - x) < 0.5 * dx_old)
        x_new = xp.where(use, newton, bis)
        step = xp.abs(x_new - x)
        tol = RTOL * xp.abs(x_new)
        conv = active & (hit | (step <= tol) | (xp.abs(hi - lo) <= tol))
        x = xp.where(active & ~hit, x_new, x)
        dx_old = xp.where(active, step, dx_old)
        iters += active
        done |= conv
        active &= ~conv
    return xp.where(done, x, xp.nan), iters


class HandWritten:
    """The formulas of spec §2.1-§2.3 written by hand for whole arrays (the stable M with
    ``xp.where``, both forms computed everywhere; f and f' share M; q and 1/kappa computed
    once), with the generated pipeline's root-finding algorithm (:func:`solve_eps`), or,
    with ``previous=True``, the root finder's previous algorithm (:func:`solve_eps_previous`).

    ``evaluate`` returns what ``model.evaluate`` returns: the observables (NaN where not
    converged), eps, q, nu, M, M', D, N, and per point ``converged``, ``iterations``,
    ``residual`` = |f(eps)| and ``status``.  With ``lean=True`` it skips the residual and
    the status codes (an extra variant: the least a hand-written script would compute).
    """

    def __init__(self, xp: Any, previous: bool = False, lean: bool = False) -> None:
        self.xp = xp
        self.solve = solve_eps_previous if previous else solve_eps
        self.lean = lean

    def M(self, x, kinv):
        xp = self.xp
        b = x + 1.0 - kinv
        s = xp.sqrt(b * b + 4.0 * x * kinv)
        # 2/(b+s) never cancels for b >= 0; the conjugate form (s-b)/(2x/kappa) for b < 0
        return xp.where(b >= 0, 2.0 / (b + s), (s - b) / (2.0 * x * kinv))

    def f(self, e, q, tau, kinv, lam):
        """f(eps) = eps M(q+eps) - 1 + tau - tau lam/eps (§2.2)."""
        return e * self.M(q + e, kinv) + tau - 1.0 - tau * lam / e

    def f_fp(self, e, q, tau, kinv, lam):
        """f and f' = M + eps M' + tau lam/eps^2, sharing M and M'."""
        nu = q + e
        M = self.M(nu, kinv)
        Mp = -M * M * (1.0 + M * kinv) / (1.0 + nu * M * M * kinv)
        tl = tau * lam
        return e * M + tau - 1.0 - tl / e, M + e * Mp + tl / (e * e)

    def evaluate(self, p: dict[str, Any]) -> dict[str, Any]:
        xp = self.xp
        tau, alpha, kappa, rho, lam = (p[k] for k in ("tau", "alpha", "kappa", "rho", "lam"))
        kinv = 1.0 / kappa
        q = (1.0 + rho) / alpha
        ridge = lam > 0
        eps = xp.where(tau < 1, (1.0 - tau) / (tau * self.M(q, kinv * tau)), 0.0)  # §2.2, lam = 0
        r = xp.where(tau < 1, 0.0, (tau - 1.0) / tau)  # lim lam/eps (§2.2)
        iters = xp.zeros(tau.shape, dtype=xp.int64)
        status = xp.zeros(tau.shape, dtype=xp.int8)
        residual = xp.zeros(tau.shape)
        if bool(ridge.any()):
            i = xp.nonzero(ridge)[0]
            args = (q[i], tau[i], kinv[i], lam[i])
            out = self.solve(xp, self.f, self.f_fp, tau[i], lam[i], args)
            e_r, it_r = out[0], out[1]
            eps[i] = e_r
            r[i] = lam[i] / e_r
            iters[i] = it_r
            if not self.lean:
                status[i] = out[2] if len(out) > 2 else xp.where(xp.isnan(e_r), STATUS_MAXITER, 0)
                residual[i] = xp.abs(self.f(e_r, *args))
        pole = ~ridge & (tau == 1)
        eps = xp.where(pole, xp.nan, eps)  # the pole (spec §2.5)
        nu = q + eps
        M = self.M(nu, kinv)
        Mp = -M * M * (1.0 + M * kinv) / (1.0 + nu * M * M * kinv)
        D = 1.0 - 2.0 * eps * M - eps * eps * Mp
        N = rho + nu - nu * nu * M - eps * (1.0 - 2.0 * nu * M - nu * nu * Mp)
        g = N / (tau - D)
        e_idg = tau * g
        e_icl = (1.0 + rho) - 2.0 * (1.0 - nu * M) + (1.0 + q) * (
            1.0 - 2.0 * nu * M - nu * nu * Mp + g * (M + eps * Mp))
        e_train = r * r * e_idg
        ok = xp.isfinite(e_icl) & xp.isfinite(e_idg) & xp.isfinite(e_train)
        if self.lean:
            out = {k: xp.where(ok, v, xp.nan) for k, v in
                   (("e_icl", e_icl), ("e_idg", e_idg), ("e_train", e_train), ("eps", eps))}
            out.update(converged=ok, iterations=iters)
            return out
        status = xp.where(pole, STATUS_POLE, status)
        status = xp.where((status == STATUS_OK) & ~ok, STATUS_NONFINITE, status)
        conv = status == STATUS_OK
        out = {k: xp.where(conv, v, xp.nan) for k, v in
               (("e_icl", e_icl), ("e_idg", e_idg), ("e_train", e_train), ("eps", eps),
                ("q", q), ("nu", nu), ("M", M), ("Mp", Mp), ("D", D), ("N", N))}
        out.update(converged=conv, iterations=iters, residual=residual, status=status)
        return out


def generated_kernels_hand_loop(model: Any, p: dict[str, Any], be: Any) -> dict[str, Any]:
    """What-if: the model's *generated* kernels (f, fused f/f', observables), driven by the
    hand-written root loop :func:`solve_eps` instead of ``numerics.roots`` (everything else
    as in ``model.evaluate``, minus its residual and status bookkeeping).  Same algorithm,
    so this separates the cost of the generated kernels from that of the generic loop."""
    xp, sp_ = be.xp, be.special
    fk, fdfk = model.kernel("eps_residual"), model.kernel("eps_residual_fdf")
    t, a, k, rh, lm = (p[n] for n in ("tau", "alpha", "kappa", "rho", "lam"))
    ridge = lm > 0
    eps = xp.zeros(t.shape)
    rl = ~ridge
    if bool(rl.any()):
        eps[rl] = model.kernel("eps_ridgeless")(xp, sp_, t[rl], a[rl], k[rl], rh[rl])["eps"]
    if bool(ridge.any()):
        args = tuple(v[ridge] for v in (t, a, k, rh, lm))

        def f(e, *q):
            return fk(xp, sp_, e, *q)["f"]

        def f_fp(e, *q):
            o = fdfk(xp, sp_, e, *q)
            return o["f"], o["fprime"]

        eps[ridge] = solve_eps(xp, f, f_fp, args[0], args[4], args)[0]
    out = dict(model.kernel("observables")(xp, sp_, t, a, k, rh, lm, eps))
    out["eps"] = eps
    return out


# =============================================================================== accuracy helpers
def rel_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| / |b| (0 where both are 0; inf where exactly one is non-finite)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    with np.errstate(all="ignore"):
        d = np.abs(a - b) / np.abs(b)
    d = np.where((a == b), 0.0, d)
    return np.where(np.isfinite(a) == np.isfinite(b), np.where(np.isfinite(a), d, 0.0), np.inf)


def fmt_e(x: float) -> str:
    if not np.isfinite(x):
        return str(x)
    return f"{x:.1e}" if x != 0 else "0"


def fmt_t(sec: float) -> str:
    if sec >= 100:
        return f"{sec:.0f} s"
    if sec >= 1:
        return f"{sec:.2f} s"
    if sec >= 1e-3:
        return f"{sec * 1e3:.1f} ms"
    return f"{sec * 1e6:.1f} µs"


# =============================================================================== profile
def profile_generated(model: Any, params: dict[str, Any], backend: Any) -> dict[str, float]:
    """cProfile one ``model.evaluate`` and attribute its time (seconds, cumulative)."""
    import numerics.roots as roots_mod

    prof = cProfile.Profile()
    prof.enable()
    model.evaluate(params, backend)
    prof.disable()
    st = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    roots_file = os.path.abspath(roots_mod.__file__)

    def ct(pattern: str) -> float:
        return sum(v[3] for (_, _, name), v in st.items() if re.fullmatch(pattern, name))

    def tt(pattern: str) -> float:
        return sum(v[2] for (_, _, name), v in st.items() if re.fullmatch(pattern, name))

    def calls(pattern: str) -> int:
        return sum(v[1] for (_, _, name), v in st.items() if re.fullmatch(pattern, name))

    out: dict[str, float] = {"total": ct("evaluate")}
    for k in ("icl_eps_residual", "icl_eps_residual_fdf"):
        total = ct(k)
        helpers = ct(rf"_{k}_pw\d+")
        branches = ct(rf"_{k}_pw\d+_b\d+")
        out[f"{k}: calls"] = calls(k)
        out[f"{k}: total"] = total
        out[f"{k}: Piecewise helper (mask, count, gather/scatter)"] = helpers - branches
        out[f"{k}: Piecewise branch arithmetic"] = branches
        out[f"{k}: rest of kernel (q, f, f')"] = total - helpers
    out["numerics.roots: own bookkeeping (bracket, where, compares, gathers)"] = sum(
        v[2] for (f, _, name), v in st.items() if os.path.abspath(f) == roots_file)
    out["expand_bracket (incl. its f calls)"] = ct("expand_bracket")
    out["eps_bracket kernel"] = ct("icl_eps_bracket")
    out["eps_ridgeless kernel"] = ct("icl_eps_ridgeless")
    out["observables kernel"] = ct("icl_observables")
    return out


def lane_counts(model: Any, params: dict[str, Any], backend: Any) -> dict[str, list[int]]:
    """Sizes of the arrays the f and fused f/f' kernels are called on in one ``evaluate``
    (by wrapping the compiled kernel functions for one call; restored afterwards)."""
    sizes: dict[str, list[int]] = {"eps_residual": [], "eps_residual_fdf": []}
    saved = {}
    for name in sizes:
        k = model.kernel(name)
        fn = k.function
        saved[name] = fn

        def wrapped(*a: Any, _fn: Callable = fn, _name: str = name) -> Any:
            sizes[_name].append(int(np.size(a[2])))
            return _fn(*a)

        k._fn[0] = wrapped
    try:
        model.evaluate(params, backend)
    finally:
        for name, fn in saved.items():
            model.kernel(name)._fn[0] = fn
    return sizes


def profile_hand(hw: "HandWritten", params: dict[str, Any]) -> dict[str, float]:
    """cProfile one hand-written ``evaluate``: f/f' arithmetic vs root-loop bookkeeping."""
    prof = cProfile.Profile()
    with np.errstate(all="ignore"):
        prof.enable()
        hw.evaluate(params)
        prof.disable()
    st = pstats.Stats(prof).stats

    def ct(name: str) -> float:
        return sum(v[3] for (f, _, fn), v in st.items() if fn == name and f == __file__)

    def tt(name: str) -> float:
        return sum(v[2] for (f, _, fn), v in st.items() if fn == name and f == __file__)

    return {"total": ct("evaluate"), "f_fp": ct("f_fp"), "f": ct("f"), "loop": tt("solve_eps")}


def integer_powers(model: Any, size: int, xp: Any, sync: Callable[[], None]) -> dict[str, Any]:
    """Integer powers other than 2 in the generated xp sources, and what ``a**3`` costs."""
    found = {}
    for name in ("eps_residual", "eps_residual_fdf", "eps_bracket", "eps_ridgeless", "observables"):
        src = "\n".join(ln for ln in model.kernel(name).source.splitlines()
                        if not ln.lstrip().startswith(("#", '"""')))
        pows = sorted(set(re.findall(r"\*\*(\d+)\b", src)) - {"2"})
        if pows:
            found[name] = ", ".join(f"**{p_}" for p_ in pows)
    if not found:
        return {}
    a = xp.asarray(np.random.default_rng(0).uniform(0.5, 2.0, size))
    t_pow, _ = best_of(lambda: a**3, 5, sync)
    t_mul, _ = best_of(lambda: a * a * a, 5, sync)
    return {"found": found, "pow3": t_pow, "mul3": t_mul}


# =============================================================================== main
def machine_info(backend_name: str) -> list[str]:
    import scipy

    cpu = cpu_name()
    lines = [
        f"- date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {platform.platform()}; CPU: {cpu}; {os.cpu_count()} logical CPUs",
        f"- Python {platform.python_version()}, NumPy {np.__version__}, SciPy {scipy.__version__}",
        f"- backend of the generated kernel: {backend_name}",
    ]
    if backend_name == "cupy":
        import cupy  # type: ignore[import-not-found]

        dev = cupy.cuda.runtime.getDeviceProperties(0)
        lines.append(f"- GPU: {dev['name'].decode() if isinstance(dev['name'], bytes) else dev['name']}, "
                     f"CuPy {cupy.__version__}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=100_000, help="grid size (default 10^5)")
    ap.add_argument("--backend", default="numpy", choices=("numpy", "cupy"),
                    help="backend of the generated kernel (scalar loops are NumPy/Python)")
    ap.add_argument("--out", help="also write the Markdown report to this file")
    ap.add_argument("--sample", type=int, default=2000,
                    help="points timed with the per-point scalar loops (0: skip them)")
    ap.add_argument("--mp-points", type=int, default=50,
                    help="points checked against model.evaluate_mp at 30 digits")
    ap.add_argument("--repeat", type=int, default=15,
                    help="timed rounds after warm-up (best of, and per-round ratios)")
    ap.add_argument("--seed", type=int, default=20240517)
    ap.add_argument("--no-cold", action="store_true",
                    help="skip the first-call (code generation) timings in fresh interpreters")
    args = ap.parse_args(argv)
    if args.repeat < 3:
        ap.error("--repeat must be >= 3")

    from numerics.backend import BackendUnavailableError, get_backend

    try:
        be = get_backend(args.backend)
    except BackendUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import derive

    model = derive.models.get(MODEL)
    np_be = get_backend("numpy")
    xp = be.xp
    rng = np.random.default_rng(args.seed)
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    axes = build_grid(args.points)
    flat = flatten(axes)
    n = flat["tau"].size
    n_ridge = int((flat["lam"] > 0).sum())
    dev_flat = {k: be.asarray(v) for k, v in flat.items()}

    # ---- first call (code generation), then warm timings --------------------------------
    cold = {} if args.no_cold else cold_start_times()
    t0 = time.perf_counter()
    model.evaluate({k: v[:4] for k, v in dev_flat.items()}, be)
    be.synchronize()
    first_in_process = time.perf_counter() - t0
    log(f"[bench] grid {n} points; timing generated and hand-written (interleaved)")

    solve_kw = dict(tau=axes["tau"], alpha=axes["alpha"], kappa=axes["kappa"], lam=axes["lam"], rho=RHO)
    hw = HandWritten(xp)
    hwl = HandWritten(xp, lean=True)
    hwp = HandWritten(xp, previous=True)
    rounds: dict[str, dict[str, list[float]]] = {}
    with np.errstate(all="ignore"):
        times, outs = best_of_interleaved({
            "evaluate": lambda: model.evaluate(dev_flat, be),
            "solve": lambda: derive.solve(MODEL, backend=be, progress=False, **solve_kw),
            "hand": lambda: hw.evaluate(dev_flat),
            "hand_lean": lambda: hwl.evaluate(dev_flat),
            "hand_prev": lambda: hwp.evaluate(dev_flat),
            "gen_hand_loop": lambda: generated_kernels_hand_loop(model, dev_flat, be),
        }, args.repeat, be.synchronize, rounds)
    load_end = (", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg")
                else "n/a")
    r_wall = ratio_stats(rounds["wall"]["evaluate"], rounds["wall"]["hand"])
    r_cpu = ratio_stats(rounds["cpu"]["evaluate"], rounds["cpu"]["hand"])
    t_eval, t_solve, t_hand, t_handl, t_handp, t_gl = (
        times[k] for k in ("evaluate", "solve", "hand", "hand_lean", "hand_prev", "gen_hand_loop"))
    gen = {k: be.to_numpy(v) for k, v in outs["evaluate"].items()}
    ds = outs["solve"]
    for k in OBS:  # derive.solve and model.evaluate are the same pipeline
        assert np.array_equal(ds[k].values.reshape(-1), gen[k], equal_nan=True), k
    hand, handp, genl = outs["hand"], outs["hand_prev"], outs["gen_hand_loop"]
    hand = {k: be.to_numpy(v) for k, v in hand.items()}
    handp = {k: be.to_numpy(v) for k, v in handp.items()}
    genl = {k: be.to_numpy(v) for k, v in genl.items()}

    log("[bench] profiling the generated pipeline")
    prof = profile_generated(model, dev_flat, be)
    powers = integer_powers(model, n_ridge, xp, be.synchronize)
    prof_h = profile_hand(hw, dev_flat)
    lanes = lane_counts(model, dev_flat, be)

    # ---- per-point scalar loops on a subsample --------------------------------------------
    m = min(args.sample, n)
    idx = np.sort(rng.choice(n, size=m, replace=False)) if m else np.zeros(0, dtype=int)
    if m:
        log(f"[bench] per-point loops on {m} points (authors' style takes ~10 ms per ridge point)")
        t_brent, brent = run_pointwise(brentq_point, flat, idx)
        t_auth, auth = run_pointwise(authors_point, flat, idx)

    # ---- accuracy against mpmath ----------------------------------------------------------
    k_mp = min(args.mp_points, n)
    ridge_idx = np.flatnonzero(flat["lam"] > 0)
    rl_idx = np.flatnonzero(flat["lam"] == 0)
    n_rl = min(len(rl_idx), max(1, k_mp // 5)) if k_mp else 0
    mp_idx = np.sort(np.r_[rng.choice(ridge_idx, size=k_mp - n_rl, replace=False),
                           rng.choice(rl_idx, size=n_rl, replace=False)]).astype(int)
    log(f"[bench] {len(mp_idx)} points in mpmath (30 digits)")
    ref = {k: np.empty(len(mp_idx)) for k in OBS}
    for j, i in enumerate(mp_idx):
        pt = {k: float(flat[k][i]) for k in ("tau", "alpha", "kappa", "rho", "lam")}
        r = model.evaluate_mp(pt, dps=30)
        for k in OBS:
            ref[k][j] = float(r[k])
    _, auth_mp = run_pointwise(authors_point, flat, mp_idx)
    worst = None
    if m:
        d_icl = rel_diff(auth["e_icl"], gen["e_icl"][idx])
        j = int(np.nanargmax(np.where(np.isfinite(d_icl), d_icl, -1.0)))
        i = int(idx[j])
        if d_icl[j] > 1e-6:
            pt = {k: float(flat[k][i]) for k in ("tau", "alpha", "kappa", "rho", "lam")}
            r = model.evaluate_mp(pt, dps=30)
            q_ = (1 + pt["rho"]) / pt["alpha"]
            res = lambda e: abs(_s_f(e, q_, pt["tau"], 1 / pt["kappa"], pt["lam"]))  # noqa: E731
            worst = dict(pt, eps_gen=gen["eps"][i], eps_auth=auth["eps"][j],
                         f_gen=res(gen["eps"][i]), f_auth=res(auth["eps"][j]),
                         e_gen=gen["e_icl"][i], e_auth=auth["e_icl"][j],
                         e_mp=float(r["e_icl"]), eps_mp=float(r["eps"]))
    _, brent_mp = run_pointwise(brentq_point, flat, mp_idx)

    # ---- report ---------------------------------------------------------------------------
    us = lambda sec, count: sec / count * 1e6  # noqa: E731
    L: list[str] = []
    L.append("## icl-linear-attention: generated kernel vs per-point and hand-written code\n")
    L += machine_info(be.name)
    L.append(f"- grid: tau {len(axes['tau'])} (linspace [0.1, 10], tau = 1 excluded) × alpha "
             f"{len(axes['alpha'])} (log [0.5, 100]) × kappa {len(axes['kappa'])} (log [0.1, 10] "
             f"+ inf) × lam {len(axes['lam'])} (0 + log [1e-6, 10]), rho = {RHO}: **{n} points** "
             f"({n_ridge} with lam > 0, root-found; {n - n_ridge} ridgeless, closed form)")
    L.append(f"- timings: {args.repeat} rounds after one warm-up call, the vectorised variants run "
             f"round-robin (interleaved); times below are the best (minimum) wall clock, ratio (b) "
             f"is the median over rounds of the per-round ratio; load average at start {load}, "
             f"at the end of the timed rounds {load_end}"
             + ("; CuPy timings synchronised" if be.name == "cupy" else ""))
    L.append("")
    L.append("### Timings\n")
    L.append("| code | points run | time | per point | note |")
    L.append("|---|---:|---:|---:|---|")
    spread = lambda k: (f"median {fmt_t(float(np.median(rounds['wall'][k])))}, max "  # noqa: E731
                        f"{fmt_t(max(rounds['wall'][k]))}; CPU best "
                        f"{fmt_t(min(rounds['cpu'][k]))}")
    L.append(f"| `derive.solve` (generated pipeline + grid + xarray) | {n} | {fmt_t(t_solve)} | "
             f"{us(t_solve, n):.2f} µs | {be.name} |")
    L.append(f"| `model.evaluate` (generated pipeline, flat arrays) | {n} | {fmt_t(t_eval)} | "
             f"{us(t_eval, n):.2f} µs | {be.name}; {spread('evaluate')} |")
    L.append(f"| hand-written (same formulas, same algorithm, same outputs) | {n} | "
             f"{fmt_t(t_hand)} | {us(t_hand, n):.2f} µs | {be.name}; the baseline of (b); "
             f"{spread('hand')} |")
    L.append(f"| hand-written, lean: no residual, no status codes (extra) | {n} | {fmt_t(t_handl)} | "
             f"{us(t_handl, n):.2f} µs | {be.name} |")
    L.append(f"| what-if: generated kernels + hand-written root loop (extra) | {n} | {fmt_t(t_gl)} | "
             f"{us(t_gl, n):.2f} µs | {be.name}; `model.kernel(...)` driven by `solve_eps`; "
             "no residual, no status |")
    L.append(f"| hand-written, previous root algorithm (extra) | {n} | {fmt_t(t_handp)} | "
             f"{us(t_handp, n):.2f} µs | {be.name}; whole array with `where`, no compaction |")
    if m:
        L.append(f"| per-point loop, authors' style (fsolve × 100 guesses) | {m} (random subsample) | "
                 f"{fmt_t(t_auth)} | {us(t_auth, m):.0f} µs | extrapolated to the grid: "
                 f"{fmt_t(t_auth / m * n)} |")
        L.append(f"| per-point loop, brentq (lean scalar baseline) | {m} (same subsample) | "
                 f"{fmt_t(t_brent)} | {us(t_brent, m):.1f} µs | extrapolated to the grid: "
                 f"{fmt_t(t_brent / m * n)} |")
    if cold:
        L.append(f"\nFirst call, not included above (fresh interpreter): `import derive` "
                 f"{fmt_t(cold['import'])}; first `evaluate` with an **empty kernel cache** "
                 f"(SymPy derivation + lowering + code generation + compile) "
                 f"{fmt_t(cold['empty cache'])}; with the **on-disk cache filled** (SymPy "
                 f"derivation + lowering + hashing + compile, no generation) "
                 f"{fmt_t(cold['disk cache'])}.")
    L.append(f"{'' if cold else chr(10)}In this process, the first (warm-up) `evaluate` took "
             f"{fmt_t(first_in_process)}.")
    L.append("")

    L.append("### Ratios\n")
    L.append("| comparison | ratio | target | |")
    L.append("|---|---:|---:|---|")
    if m:
        sp_eval = (t_auth / m) / (t_eval / n)
        sp_solve = (t_auth / m) / (t_solve / n)
        L.append(f"| authors' style per point / `model.evaluate` per point | {sp_eval:,.0f}× | "
                 f"≥ {TARGET_SPEEDUP:.0f}× | {'PASS' if sp_eval >= TARGET_SPEEDUP else 'FAIL'} |")
        L.append(f"| authors' style per point / `derive.solve` per point | {sp_solve:,.0f}× | "
                 f"≥ {TARGET_SPEEDUP:.0f}× | {'PASS' if sp_solve >= TARGET_SPEEDUP else 'FAIL'} |")
        L.append(f"| brentq loop per point / `model.evaluate` per point | "
                 f"{(t_brent / m) / (t_eval / n):,.0f}× | – | |")
        L.append(f"<!-- headline: authors' style per point / generated pipeline: {sp_eval:,.0f}× -->")
    ratio = r_wall["median"]
    L.append(f"<!-- headline: generated / hand-written: {ratio:.2f}× (target ≤ {TARGET_RATIO}×; "
             f"median of {args.repeat} interleaved rounds, quartiles {r_wall['q1']:.2f}–"
             f"{r_wall['q3']:.2f}) -->")
    L.append(f"| `model.evaluate` / hand-written (median of the per-round ratios; quartiles "
             f"{r_wall['q1']:.2f}–{r_wall['q3']:.2f}, range {r_wall['min']:.2f}–{r_wall['max']:.2f}) "
             f"| {ratio:.2f}× | ≤ {TARGET_RATIO}× | {'PASS' if ratio <= TARGET_RATIO else 'FAIL'} |")
    L.append(f"| the same, best / best (wall) | {r_wall['best']:.2f}× | – | |")
    L.append(f"| the same, process CPU time: median of per-round ratios (best / best) | "
             f"{r_cpu['median']:.2f}× ({r_cpu['best']:.2f}×) | – | less sensitive to load than wall time |")
    L.append(f"| `derive.solve` / hand-written | {t_solve / t_hand:.2f}× | – | |")
    L.append(f"| `model.evaluate` / hand-written, lean | {t_eval / t_handl:.2f}× | – | |")
    L.append(f"| generated kernels + hand-written loop / hand-written, lean | {t_gl / t_handl:.2f}× "
             "| – | the generated kernels' share |")
    L.append(f"| `model.evaluate` / generated kernels + hand-written loop | {t_eval / t_gl:.2f}× | – "
             "| `numerics.roots` + `evaluate`'s own work (residual, status) |")
    L.append("")

    L.append("### Accuracy\n")
    conv_g = gen["converged"].astype(bool)
    conv_h = hand["converged"].astype(bool)
    L.append(f"Generated pipeline: {int(conv_g.sum())}/{n} points converged; "
             f"hand-written: {int(conv_h.sum())}/{n}.  Root-finder iterations (lam > 0): "
             f"mean {gen['iterations'][flat['lam'] > 0].mean():.2f}, max {int(gen['iterations'].max())}, "
             f"{int((gen['iterations'] > 20).sum())} points need > 20. Same iteration count "
             f"as the hand-written version at {np.mean(gen['iterations'] == hand['iterations']):.1%} "
             f"of the points (the formulas round differently); same status codes: "
             f"{'yes' if np.array_equal(gen['status'], hand['status']) else 'NO'}; generated kernels "
             f"driven by the hand-written loop reproduce `model.evaluate` bit for bit: "
             f"{'yes' if all(np.array_equal(gen[k], genl[k], equal_nan=True) for k in OBS) else 'NO'}."
             "\n")
    both = conv_g & conv_h
    L.append("| comparison | points | " + " | ".join(f"max rel. diff {k}" for k in OBS) + " |")
    L.append("|---|---:|" + "---:|" * len(OBS))
    L.append(f"| generated vs hand-written (full grid) | {int(both.sum())} | "
             + " | ".join(fmt_e(rel_diff(gen[k][both], hand[k][both]).max()) for k in OBS) + " |")
    L.append(f"| generated vs what-if generated kernels + hand-written loop (full grid) | "
             f"{int(both.sum())} | "
             + " | ".join(fmt_e(rel_diff(gen[k][both], genl[k][both]).max()) for k in OBS) + " |")
    L.append(f"| generated vs hand-written, previous algorithm (full grid) | {int(both.sum())} | "
             + " | ".join(fmt_e(rel_diff(gen[k][both], handp[k][both]).max()) for k in OBS) + " |")
    if m:
        g_s = {k: gen[k][idx] for k in OBS}
        L.append(f"| generated vs authors' style (subsample) | {m} | "
                 + " | ".join(fmt_e(np.nanmax(rel_diff(auth[k], g_s[k]))) for k in OBS) + " |")
        L.append(f"| generated vs brentq loop (subsample) | {m} | "
                 + " | ".join(fmt_e(np.nanmax(rel_diff(brent[k], g_s[k]))) for k in OBS) + " |")
        med = {k: np.nanmedian(rel_diff(auth[k], g_s[k])) for k in OBS}
        L.append(f"\nMedian relative difference generated vs authors' style on the subsample: "
                 + ", ".join(f"{k} {fmt_e(v)}" for k, v in med.items()) + ".")
        bad = int(np.sum(~np.isfinite(auth["e_icl"])))
        if bad:
            L.append(f"The authors'-style loop returned a non-finite e_icl at {bad} of {m} points.")
        d_icl = rel_diff(auth["e_icl"], g_s["e_icl"])
        L.append(f"e_icl differs by > 1e-6 at {int((d_icl > 1e-6).sum())}, by > 1e-4 at "
                 f"{int((d_icl > 1e-4).sum())} and by > 1e-2 at {int((d_icl > 1e-2).sum())} of "
                 f"the {m} points.")
        if worst is not None:
            L.append(f"Worst point: tau = {worst['tau']:.4g}, alpha = {worst['alpha']:.4g}, "
                     f"kappa = {worst['kappa']:.4g}, lam = {worst['lam']:.3g}: eps = "
                     f"{worst['eps_gen']:.6g} (generated; residual |f| = {worst['f_gen']:.1e}) vs "
                     f"{worst['eps_auth']:.6g} (authors' style; |f| = {worst['f_auth']:.1e}); "
                     f"e_icl = {worst['e_gen']:.8g} vs {worst['e_auth']:.8g}; mpmath (30 digits) "
                     f"e_icl = {worst['e_mp']:.8g}, eps = {worst['eps_mp']:.6g}. "
                     + ("The authors'-style eps is not a root: no fsolve start (all ≥ 1e-4) "
                        "reached the small root, and a non-converged iterate was kept (fsolve's "
                        "exit flag is not checked)." if worst["f_auth"] > 1e-8 else
                        "The authors'-style eps is the root rounded to 6 decimals."))
    L.append("")
    if len(mp_idx):
        L.append(f"Against `model.evaluate_mp` at 30 digits on {len(mp_idx)} random grid points "
                 f"({len(mp_idx) - n_rl} with lam > 0, {n_rl} ridgeless): max (median) relative error\n")
        L.append("| code | " + " | ".join(OBS) + " |")
        L.append("|---|" + "---:|" * len(OBS))
        rows = [("generated (`model.evaluate`)", {k: gen[k][mp_idx] for k in OBS}),
                ("hand-written", {k: hand[k][mp_idx] for k in OBS}),
                ("authors' style (fsolve, rounded)", auth_mp),
                ("brentq loop", brent_mp)]
        errs = {}
        for name, vals in rows:
            e = {k: rel_diff(vals[k], ref[k]) for k in OBS}
            errs[name] = e
            L.append(f"| {name} | " + " | ".join(f"{fmt_e(e[k].max())} ({fmt_e(np.median(e[k]))})"
                                                  for k in OBS) + " |")
        ours = errs["generated (`model.evaluate`)"]
        theirs = errs["authors' style (fsolve, rounded)"]
        at_least = all(ours[k].max() <= theirs[k].max() for k in ("e_icl", "e_idg", "eps"))
        L.append(f"\nGenerated at least as accurate as the authors' style (max error, e_icl/e_idg/eps): "
                 f"**{'yes' if at_least else 'NO'}**.")
        L.append("")

    L.append("### Where the generated pipeline spends its time (cProfile of one `model.evaluate`)\n")
    total = prof["total"]
    L.append(f"Profiled total {fmt_t(total)} (profiler overhead included); "
             f"`derive.solve` − `model.evaluate` (meshgrid, validation, xarray) = "
             f"{fmt_t(max(t_solve - t_eval, 0.0))}.\n")
    L.append("| part | time | share |")
    L.append("|---|---:|---:|")
    for k, v in prof.items():
        if k == "total" or k.endswith(": calls"):
            continue
        L.append(f"| {k} | {fmt_t(v)} | {100 * v / total:.0f}% |")
    L.append(f"\nFor comparison, the hand-written version under the same profiler: total "
             f"{fmt_t(prof_h['total'])}; f and f' together (one call, shared M) "
             f"{fmt_t(prof_h['f_fp'])}; f alone (bracket, f(lo), residual) {fmt_t(prof_h['f'])}; "
             f"root-loop bookkeeping (bracket expansion included) {fmt_t(prof_h['loop'])}.")
    it = gen["iterations"][flat["lam"] > 0]
    if it.size and it.max() > 0:
        f_sizes, fdf_sizes = lanes["eps_residual"], lanes["eps_residual_fdf"]
        full_f = sum(1 for v in f_sizes if v == n_ridge)
        L.append(f"\nKernel calls in one `evaluate`: f {len(f_sizes)}× ({full_f} on all {n_ridge} "
                 f"ridge points: the first bracket end, f(lo) and f(hi) in `bracketed_root`, the "
                 f"residual |f(eps)|; the other {len(f_sizes) - full_f} only on the points whose "
                 f"bracket is still growing: {', '.join(map(str, f_sizes[1:len(f_sizes) - 3]))}); "
                 f"fused f/f' {len(fdf_sizes)}× on {sum(fdf_sizes)} points in all "
                 f"(working-set sizes {', '.join(map(str, fdf_sizes[:12]))}"
                 f"{', ...' if len(fdf_sizes) > 12 else ''}). Useful lane-iterations / evaluated "
                 f"= {it.sum()}/{sum(fdf_sizes)} = {it.sum() / max(sum(fdf_sizes), 1):.0%}; "
                 f"iterations per point: mean {it.mean():.2f}, max {it.max()}. The hand-written "
                 f"version evaluates f on all ridge points twice (the first bracket end and f(lo); it "
                 f"reuses f(hi) from the expansion), plus once for its residual.")
    if powers:
        L.append("\nInteger powers other than 2 in the generated sources (NumPy evaluates `a**3` "
                 "with its generic `pow` loop, while `a**2` is special-cased to `square`): "
                 + "; ".join(f"`{k}`: {v}" for k, v in powers["found"].items())
                 + f". On this backend ({be.name}), on {n_ridge} floats, `a**3` takes "
                 f"{fmt_t(powers['pow3'])} vs {fmt_t(powers['mul3'])} for `a*a*a`.")
    L.append("")
    report = "\n".join(L)
    print(report)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
