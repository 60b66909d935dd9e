#!/usr/bin/env python
r"""Benchmark of the ``token-dynamics`` velocity kernels (spec ``token_dynamics.md`` §5).

Run from the repository root::

    python benchmarks/bench_token_dynamics.py [--backend numpy|cupy] [--out FILE.md] [--repeat R]

Measures one evaluation of the SA velocity field $\dot X$ for a batch of B systems of n tokens
in $\mathbb R^d$ (O(B n² d)):

(a) the kernel generated from the SymPy tensor program (``model.velocity_kernel``), identity
    and general (Q, K, V) weights;
(b) a hand-written batched NumPy implementation (``numerics.simulate.token_dynamics.velocity_batch``:
    matmul, max-shifted softmax, projection);
(b') the headline (issue 12): a hand-written *in-place* max-shifted softmax (:func:`hand_inplace`,
    one n x n buffer) at n = 2048, d = 16 -- targets: generated / hand ≤ 1.2 in time and a peak
    of ≤ 1.5 n² doubles (``tracemalloc``; NumPy reports its buffers to it);
(c) a per-particle loop in the authors' style (``velocity_loop``: Python loops over i and j),
    timed on one system and extrapolated to the batch;
(d) with ``--backend cupy`` (and a CUDA device) the generated kernel on CuPy vs NumPy,
    including n ≥ 4096 (target ≥ 10×).

The per-particle loop and the hand-written batch are written from the papers' definitions,
not from ``derive``. Prints a Markdown report (and writes it to ``--out``). Not a test.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any, Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    import derive  # noqa: F401
except ImportError:
    sys.path.insert(0, ROOT)

import scipy.special  # noqa: E402

import derive  # noqa: E402,F811
from numerics.backend import BackendUnavailableError, get_backend  # noqa: E402
from numerics.simulate.token_dynamics import velocity_batch, velocity_loop  # noqa: E402

def hand_inplace(X: np.ndarray, beta: np.ndarray) -> np.ndarray:
    r"""SA velocity, identity weights, on the sphere, written by hand with one $n\times n$ buffer:
    $P=\beta XX^\top$, $P\leftarrow e^{P-\max_jP}$, rows normalised in place, $U=PX$,
    $v=U-\langle U,x_i\rangle x_i$."""
    P = X @ np.swapaxes(X, -1, -2)
    P *= beta[:, None, None]
    P -= P.max(-1, keepdims=True)
    np.exp(P, out=P)
    P /= P.sum(-1, keepdims=True)
    U = P @ X
    U -= (U * X).sum(-1, keepdims=True) * X
    return U


def peak_doubles(fn: Callable[[], Any]) -> float:
    """Peak traced allocation of one call of ``fn``, in doubles."""
    import tracemalloc

    fn()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1] / 8
    finally:
        tracemalloc.stop()


def interleaved(fa: Callable[[], Any], fb: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Best-of times of two functions measured alternately (fair on a shared, noisy machine)."""
    fa()
    fb()
    ta = tb = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fa()
        ta = min(ta, time.perf_counter() - t0)
        t0 = time.perf_counter()
        fb()
        tb = min(tb, time.perf_counter() - t0)
    return ta, tb


def headline(repeat: int) -> list[str]:
    """Generated SA velocity vs :func:`hand_inplace` at n = 2048, d = 16 (and n = 4096)."""
    m = derive.models.get("token-dynamics")
    k = m.velocity_kernel("SA")
    S = scipy.special
    rng = np.random.default_rng(1)
    lines = ["## Generated SA velocity vs a hand-written in-place softmax", "",
             "Identity weights, B = 1, β = 2; best of "
             f"{max(repeat, 7)} alternating runs; peak = tracemalloc peak of one call in units of n² doubles.",
             "", "| n | d | generated (ms) | hand in-place (ms) | gen/hand | peak gen (n²) | peak hand (n²) "
             "| max abs diff |", "|---|---|---|---|---|---|---|---|"]
    for n, d in [(2048, 16), (4096, 16)]:
        X = rng.standard_normal((1, n, d))
        X /= np.linalg.norm(X, axis=-1, keepdims=True)
        beta = np.array([2.0])
        tg, th = interleaved(lambda: k(np, S, X, beta), lambda: hand_inplace(X, beta), max(repeat, 7))
        pg = peak_doubles(lambda: k(np, S, X, beta)) / n**2
        ph = peak_doubles(lambda: hand_inplace(X, beta)) / n**2
        diff = float(np.abs(k(np, S, X, beta)["v"] - hand_inplace(X, beta)).max())
        lines.append(f"| {n} | {d} | {tg * 1e3:.4g} | {th * 1e3:.4g} | {tg / th:.2f} | {pg:.3f} | "
                     f"{ph:.3f} | {diff:.1e} |")
        if n == 2048:
            lines.append(f"<!-- headline: SA velocity n=2048 d=16: generated/hand in-place {tg / th:.2f}× "
                         f"(target ≤ 1.2), peak {pg:.2f} n² doubles (target ≤ 1.5) -->")
    return lines + [""]


SIZES = [(256, 32, 64), (64, 128, 128), (8, 512, 64), (1, 2048, 64), (1, 4096, 64)]


def best_of(fn: Callable[[], Any], repeat: int, sync: Callable[[], None] = lambda: None) -> float:
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def run(backend: str, repeat: int) -> list[str]:
    m = derive.models.get("token-dynamics")
    lines = ["## token-dynamics: SA velocity field, one evaluation", "",
             f"NumPy {np.__version__}, {platform.processor() or platform.machine()}, "
             f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; best of "
             f"{repeat}.", "",
             "| weights | B | n | d | generated (ms) | hand batch (ms) | gen/hand | loop (ms, extrap.) "
             "| loop/gen | max abs diff |", "|---|---|---|---|---|---|---|---|---|---|"]
    rng = np.random.default_rng(0)
    S = scipy.special
    ratios: list[float] = []
    loops: list[float] = []
    for B, n, d in SIZES:
        X = rng.standard_normal((B, n, d))
        X /= np.linalg.norm(X, axis=-1, keepdims=True)
        beta = np.full(B, 2.0)
        Q, K, V = (rng.standard_normal((d, d)) / np.sqrt(d) for _ in range(3))
        for w in ("identity", "general"):
            k = m.velocity_kernel("SA", w)
            args = (Q, K, V) if w == "general" else ()
            hargs = dict(Q=Q, K=K, V=V) if w == "general" else {}
            tg = best_of(lambda: k(np, S, X, beta, *args), repeat)
            th = best_of(lambda: velocity_batch(X, beta, "SA", **hargs), repeat)
            diff = float(np.abs(k(np, S, X, beta, *args)["v"]
                                - velocity_batch(X, beta, "SA", **hargs)).max())
            if n <= 128:
                t0 = time.perf_counter()
                velocity_loop(X[0], 2.0, "SA", **hargs)
                tl = (time.perf_counter() - t0) * B
                loop = f"{tl * 1e3:.4g} | {tl / tg:.0f}×"
            else:
                loop = "– | –"
            lines.append(f"| {w} | {B} | {n} | {d} | {tg * 1e3:.4g} | {th * 1e3:.4g} | "
                         f"{tg / th:.2f} | {loop} | {diff:.1e} |")
            ratios.append(tg / th)
            if n <= 128:
                loops.append(tl / tg)
    lines.append(f"<!-- headline: generated / hand-written batch: {min(ratios):.2f}–{max(ratios):.2f}× -->")
    if loops:
        lines.append(f"<!-- headline: per-token Python loop / generated: {min(loops):.0f}–{max(loops):.0f}× -->")
    if backend == "cupy":
        try:
            cu = get_backend("cupy")
        except BackendUnavailableError as exc:
            lines += ["", f"CuPy: not measured ({exc})."]
            return lines
        lines += ["", "### CuPy vs NumPy (generated kernel, identity weights)", "",
                  "| B | n | d | NumPy (ms) | CuPy (ms) | speed-up |", "|---|---|---|---|---|---|"]
        k = m.velocity_kernel("SA")
        for B, n, d in [(64, 128, 128), (1, 4096, 64), (4, 4096, 128), (1, 8192, 64)]:
            X = rng.standard_normal((B, n, d))
            X /= np.linalg.norm(X, axis=-1, keepdims=True)
            beta = np.full(B, 2.0)
            tn = best_of(lambda: k(np, S, X, beta), repeat)
            Xc, bc = cu.asarray(X), cu.asarray(beta)
            tc = best_of(lambda: k(cu.xp, cu.special, Xc, bc), repeat, cu.synchronize)
            lines.append(f"| {B} | {n} | {d} | {tn * 1e3:.4g} | {tc * 1e3:.4g} | {tn / tc:.1f}× |")
            lines.append(f"<!-- headline: CuPy vs NumPy (B={B}, n={n}, d={d}): {tn / tc:.1f}× -->")
    else:
        lines += ["", "CuPy: not measured (run with `--backend cupy` on a CUDA machine)."]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="numpy", choices=("numpy", "cupy"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args(argv)
    text = "\n".join(headline(a.repeat) + run(a.backend, a.repeat)) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
