#!/usr/bin/env python
r"""Benchmark of the ``sparse-token`` model (Barnfield, Cui, Lu; spec ``sparse_token.md``).

Run from the repository root::

    python benchmarks/bench_sparse_token.py [--points N] [--sample 40]

Measures, on a grid of ``N`` points (alpha0 x theta x L at the alignment figure's other
parameters):

(a) the batched generated pipeline (``model.evaluate`` on flat arrays: Gauss–Hermite
    expectations, max-detector root, pooled-capacity Newton) against a per-point scalar
    loop written here from the spec's formulas with SciPy (``quad`` for the four
    expectations, ``brentq`` for the threshold, ``minimize`` (BFGS) for the capacity),
    timed on a random subsample and extrapolated per point; and the largest deviation
    between the two;
(b) the trained-readout fixed point (``numerics.prox`` + ``numerics.fixed_point``) per
    alpha1 point for the pooled baseline and for attention (Monte Carlo over the tokens).

It prints a Markdown table; it is a script, not a test.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy import integrate, optimize
from scipy.special import expit, ndtr

import derive
from numerics.backend import get_backend


def grid(n: int) -> dict[str, np.ndarray]:
    k = max(2, round(n ** (1 / 3)))
    a0, th, L = np.meshgrid(np.logspace(-1, 1, k), np.linspace(1, 8, k),
                            np.round(np.logspace(1, 3, k)), indexing="ij")
    size = a0.size
    return dict(L=L.ravel(), R=np.full(size, 3.0), pi=np.full(size, 0.2), theta=th.ravel(),
                beta=np.ones(size), eta_w=np.full(size, 0.5), eta_q=np.full(size, 0.5),
                alpha0=a0.ravel(), b1=np.zeros(size), loss=np.zeros(size))


def scalar_point(p: dict[str, float]) -> dict[str, float]:
    """Spec §2.2, §3.2, §3.4 in plain SciPy, one point (logistic loss)."""
    L, R, pi, th, beta, ew, eq, a0, b1 = (p[k] for k in ("L", "R", "pi", "theta", "beta",
                                                          "eta_w", "eta_q", "alpha0", "b1"))
    dl = lambda y, z: -y * expit(-y * z)  # noqa: E731
    cp, cm = dl(1, b1), dl(-1, b1)
    m1 = -ew * pi * cp * th * R / L
    u2 = ew**2 * (pi * cp**2 + (1 - pi) * cm**2) / (a0 * L)
    s1 = math.sqrt((m1**2 + u2) / L)
    mup = b1 + m1 * th * R / L - ew * cp / (a0 * L)
    mum = b1 - ew * cm / (a0 * L)
    npdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    E = lambda f: integrate.quad(lambda z: f(z) * npdf(z), -np.inf, np.inf, epsabs=1e-13)[0]  # noqa: E731
    hp, hm = E(lambda z: dl(1, mup + s1 * z)), E(lambda z: dl(-1, mum + s1 * z))
    hp2, hm2 = E(lambda z: dl(1, mup + s1 * z)**2), E(lambda z: dl(-1, mum + s1 * z)**2)
    hbar = pi * hp + (1 - pi) * hm
    A = m1 * ((L - 1) * hbar + th**2 * R * (1 - R / L) * pi * hp)
    B2 = ((L - 1) * hbar)**2 * u2
    C = (pi * hp2 * (th**2 * m1**2 * R * (1 - R / L) + (L - 1) * (m1**2 + u2))
         + (1 - pi) * hm2 * (L - 1) * (m1**2 + u2)) / a0
    s_q = -A / math.sqrt(A * A + B2 + C)
    # max detector: minimise E(b) directly
    Phi = ndtr

    def emax(b: float) -> float:
        return pi * Phi(b - th)**R * Phi(b)**(L - R) + (1 - pi) * (1 - Phi(b)**L)

    res = optimize.minimize_scalar(emax, bounds=(-8, th + 10), method="bounded",
                                   options=dict(xatol=1e-10))
    # pooled capacity
    mu = th * R / math.sqrt(L)
    F = lambda a: (1 + a * a) * Phi(-a) - a * npdf(a)  # noqa: E731
    J = lambda x: (math.log(pi * F(x[1] + math.tanh(x[0]) * mu) + (1 - pi) * F(-x[1]))  # noqa: E731
                   + 2 * math.log(math.cosh(x[0])))
    cap = optimize.minimize(J, np.array([0.3, 0.0]), method="BFGS", options=dict(gtol=1e-10))
    return dict(s_q=s_q, e_attn_max=res.fun, alpha_pool=math.exp(-cap.fun))


class _Tee:
    """Write to several streams (the terminal and the report of ``--out``)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for s in self.streams:
            s.write(text)

    def flush(self):
        for s in self.streams:
            s.flush()


def main(argv=None) -> None:
    import contextlib
    import io
    import sys

    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=8000)
    ap.add_argument("--sample", type=int, default=40)
    ap.add_argument("--sep-d", type=int, nargs="*", default=[200, 400])
    ap.add_argument("--out", help="also write the report to this Markdown file")
    ap.add_argument("--backend", default="numpy", choices=("numpy",),
                    help="the per-point loops and the LP are CPU-only; numpy only")
    args = ap.parse_args(argv)
    buf = io.StringIO()
    with contextlib.redirect_stdout(_Tee(sys.stdout, buf)):
        _run(args)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(buf.getvalue())


def _run(args) -> None:
    m = derive.models.get("sparse-token")
    be = get_backend("numpy")
    g = grid(args.points)
    n = g["L"].size
    flat = {k: be.asarray(v) for k, v in g.items()}
    m.evaluate({k: v[:4] for k, v in flat.items()}, be)  # kernels generated / cached
    t = time.perf_counter()
    out = m.evaluate(flat, be)
    t_batch = time.perf_counter() - t
    print(f"batched: {t_batch:.2f} s", flush=True)
    rng = np.random.default_rng(0)
    idx = rng.choice(n, size=min(args.sample, n), replace=False)
    t = time.perf_counter()
    ref = [scalar_point({k: float(v[i]) for k, v in g.items()}) for i in idx]
    t_loop = (time.perf_counter() - t) / len(idx) * n
    print(f"loop (extrapolated): {t_loop:.1f} s", flush=True)
    dev = {k: max(abs(float(out[k][i]) - r[k]) / max(1e-300, abs(r[k]))
                  for i, r in zip(idx, ref)) for k in ("s_q", "e_attn_max", "alpha_pool")}
    readout_errors = derive.models.get("sparse-token").trained_readout  # public API

    al = np.logspace(-0.5, 1, 6)
    t = time.perf_counter()
    readout_errors(L=10, R=1, pi=0.5, theta=5.0, alpha1=al, lam=1e-4, loss=1)
    t_gm = (time.perf_counter() - t) / al.size
    t = time.perf_counter()
    readout_errors(L=10, R=1, pi=0.5, theta=5.0, alpha1=al, lam=1e-4, loss=1, beta_q=1.0,
                   s_q=0.9, n_mc=1000)
    t_att = (time.perf_counter() - t) / al.size - t_gm
    print(f"# sparse-token benchmark ({n} grid points, {int(out['converged'].sum())} converged)\n")
    print("| what | time | ratio |")
    print("|---|---|---|")
    print(f"| batched generated pipeline (`model.evaluate`) | {t_batch:.3f} s | 1 |")
    print(f"| per-point SciPy loop (quad x4, bounded minimise, BFGS), extrapolated | {t_loop:.1f} s | "
          f"{t_loop / t_batch:.0f}x slower |")
    print(f"<!-- headline: per-point SciPy loop / batched generated pipeline: {t_loop / t_batch:.0f}× -->")
    print(f"| readout fixed point, pooled + vectorised, per alpha1 point | {t_gm * 1e3:.0f} ms | |")
    print(f"| readout fixed point, attention (1000 MC samples/class, GH 24), per alpha1 point | "
          f"{t_att:.2f} s | |")
    print("\nlargest relative deviation, pipeline vs SciPy loop on the subsample: "
          + ", ".join(f"{k} {v:.1e}" for k, v in dev.items()))
    bench_separability(args.sep_d)


def bench_separability(dims: list[int], reps: int = 3) -> None:
    """Exact separability test: NNLS with certificates vs the max-margin LP (HiGHS), pooled
    features at alpha = alpha*_pool (the hardest instances), same data, CPU seconds."""
    from numerics.simulate import sparse_token as sim

    print("\n| separability test, pooled, alpha = 2.84 (L=4, theta=3) | d | LP (HiGHS) | NNLS | ratio | agree |")
    print("|---|---|---|---|---|---|")
    for d in dims:
        t_lp = t_nn = 0.0
        agree = 0
        for r in range(reps):
            X, y = sim.sample(int(2.84 * d), d, 4, 1, 0.5, 3.0, np.random.default_rng([r, d]))
            F = sim.pooled_features(X)
            t = time.process_time()
            a = sim.separable(F, y)
            t_lp += time.process_time() - t
            t = time.process_time()
            b, _ = sim.separable_nnls(F, y, lp_fallback=False)
            t_nn += time.process_time() - t
            agree += a == b
        print(f"| | {d} | {t_lp / reps:.2f} s | {t_nn / reps:.3f} s | {t_lp / t_nn:.0f}x | "
              f"{agree}/{reps} |", flush=True)
        print(f"<!-- headline: separability d = {d}: LP / NNLS {t_lp / t_nn:.0f}×, agree {agree}/{reps} -->")


if __name__ == "__main__":
    main()
