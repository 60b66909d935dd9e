"""Benchmark: the (α, ω) phase diagram of positional-semantic, both branches.

Ours: ``derive.solve("positional-semantic", alpha=30 values, omega=20 values, branch=...)``
(batched over the whole grid; symmetrized QMC; batched Newton prox; Anderson; converged to an
undamped residual of 1e-10).

Reference style (the authors' notebook, re-implemented here for timing only): per grid point,
damped iteration (0.8 on the old value) until the *damped* step of (q, m, θ) is below 1e-4;
every conjugate is its own nested 2-D × 2-D cubature (4 × 4 Gauss–Hermite per 2-D, the size of
the degree-7 rule they use), with one ``scipy.optimize.minimize`` prox per node started at 0.
It is run to its own stopping rule at a few grid points and its time per point is multiplied
by the grid size: running it on the grid would take days.

Accuracy: the max relative error (over q, m, V) of each scheme's converged fixed point against
an accurate one x* (ours at 16384 QMC points, 4 scrambles averaged).

    python benchmarks/bench_positional_semantic.py [--grid 30x20] [--n-quad 2048] [--ref-points 2]
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from scipy import optimize

SIGMA, LAM = 0.5, 0.01
A = np.array([[0.6, 0.4], [0.4, 0.6]])


# ----------------------------------------------------------------- the reference-style solver
def _sm(u: np.ndarray) -> np.ndarray:
    s = np.outer(u, u)
    s = s - s.max(axis=1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)


def _rule2(n: int = 4):
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    X, Y = np.meshgrid(x, x, indexing="ij")
    W = np.outer(w, w)
    return np.stack([X.ravel(), Y.ravel()], 1), W.ravel()


def reference_style_map(alpha: float, omega: float, x) -> tuple[tuple[float, ...], float]:
    """One undamped update of (q, m, V, θ), the notebook's way; returns it and the seconds taken."""
    nodes, weights = _rule2()
    rho = SIGMA**2
    q, m, V, th = x
    t0 = time.perf_counter()

    def prox(xi, w):
        h = np.sqrt(q) * xi + np.array([m, -m])
        Vs = np.sqrt(rho - th**2 / q)
        T = (1 - omega) * _sm(Vs * w + th / np.sqrt(q) * xi) + omega * A

        def M(x):
            S = _sm(x)
            return np.sum((x - h) ** 2) / V + SIGMA**2 * np.trace(S @ S.T) - 2 * SIGMA**2 * np.trace(T @ S.T)
        return optimize.minimize(M, np.zeros(2)).x, h, Vs

    def hat(kind):
        tot = 0.0
        for xi, wx in zip(nodes, weights):  # outer (ξ)
            inner = 0.0
            for w, ww in zip(nodes, weights):  # inner (w): a fresh prox for every conjugate
                xs, h, Vs = prox(xi, w)
                r = xs - h
                val = {"m": (r[0] - r[1]) / V, "q": (r @ r) / V**2, "th": (r @ w) / (V * Vs),
                       "V": -(r @ xi) / (V * np.sqrt(q))}[kind]
                inner += ww * val
            tot += wx * inner
        return alpha * tot

    qh, mh, thh = hat("q"), hat("m"), hat("th")
    Vh = hat("V") + th * thh / q
    den = LAM + Vh * SIGMA**2
    new = (SIGMA**2 * (qh * SIGMA**2 + mh**2 + thh**2 * SIGMA**2 * rho) / den**2, mh / den,
           SIGMA**2 / den, SIGMA**2 * thh * rho / den)
    return new, time.perf_counter() - t0


def reference_style_point(alpha: float, omega: float, init, *, tol: float = 1e-4, max_iter: int = 150):
    """The notebook's damped loop (0.8 on the old value; stop when the damped step of (q, m, θ)
    is below ``tol``; V unchecked) built on :func:`reference_style_map`."""
    x = tuple(init)
    t0 = time.perf_counter()
    for it in range(1, max_iter + 1):
        new, _ = reference_style_map(alpha, omega, x)
        damped = tuple(0.2 * a + 0.8 * b for a, b in zip(new, x))
        if max(abs(damped[i] - x[i]) for i in (0, 1, 3)) < tol:
            return x, it, time.perf_counter() - t0
        x = damped
    return x, max_iter, time.perf_counter() - t0


# ----------------------------------------------------------------- main
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="30x20")
    ap.add_argument("--n-quad", type=int, default=2048,
                    help="QMC points, or Gauss-Hermite nodes per variable with --quadrature gauss-hermite")
    ap.add_argument("--quadrature", default="qmc", choices=("qmc", "gauss-hermite"),
                    help="gauss-hermite with --n-quad 4 is exactly the reference style's rule")
    ap.add_argument("--ref-points", type=int, default=2)
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--out", default=None, help="also write the report (Markdown) here")
    a = ap.parse_args(argv)
    lines: list[str] = []

    def emit(*args) -> None:
        """The report goes to stdout and to ``--out``."""
        text = " ".join(str(x) for x in args)
        lines.append(text)
        print(text, flush=True)
    import derive
    from derivations.positional_semantic import solve_pairs
    from derive.models.positional_semantic import BRANCH_INIT

    na, nw = (int(v) for v in a.grid.split("x"))
    alphas = np.linspace(0.2, 2.5, na)
    omegas = np.linspace(0.05, 0.6, nw)
    emit(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}; "
          f"numpy {np.__version__}; date {time.strftime('%Y-%m-%d')}")
    timings = {}
    for branch in ("positional", "semantic"):
        t = time.perf_counter()
        ds = derive.solve("positional-semantic", alpha=alphas, omega=omegas, sigma=SIGMA, lam=LAM,
                          branch=branch, n_quad=a.n_quad, quadrature=a.quadrature, backend=a.backend)
        timings[branch] = time.perf_counter() - t
        emit(f"ours [{branch}]: {na}x{nw} grid in {timings[branch]:.1f} s; "
              f"{int(ds.converged.sum())}/{ds.converged.size} converged (undamped residual <= 1e-10)")
    ours_total = sum(timings.values())

    # reference style, run to its own stopping rule at a few points; accuracy of both = distance
    # of the converged fixed point to an accurate one x* (ours at 16384 QMC points, 4 scrambles)
    pts = [(1.0, 0.3), (1.8, 0.3), (0.6, 0.3)][: a.ref_points]
    ref_secs, rows = [], []
    for al, om in pts:
        accs = [solve_pairs([al], om, "positional", n_quad=16384, seed=s) for s in range(4)]
        xs = [np.mean([float(r[k][0]) for r in accs]) for k in ("q", "m", "v", "theta")]
        spread = max(np.std([float(r[k][0]) for r in accs], ddof=1) / abs(xs[i]) / 2
                     for i, k in enumerate(("q", "m", "v")))
        xr, it, sec = reference_style_point(al, om, BRANCH_INIT["positional"])
        ref_secs.append(sec)
        ours = solve_pairs([al], om, "positional", n_quad=a.n_quad, quadrature=a.quadrature)
        xo = [float(ours[k][0]) for k in ("q", "m", "v")]
        rel = lambda v: max(abs(v[i] - xs[i]) / abs(xs[i]) for i in range(3))  # noqa: E731
        rows.append((al, om, it, sec, rel(xr), rel(xo), spread))
    per_point_ref = float(np.mean(ref_secs))
    grid_ref = per_point_ref * na * nw * 2
    emit("\n| point (α, ω) | reference-style iterations | seconds | its error vs x* | our error vs x* "
         "(%s, n_quad = %d) | x* standard error |" % (a.quadrature, a.n_quad))
    emit("|---|---|---|---|---|---|")
    for al, om, it, sec, er, eo, sp in rows:
        emit(f"| ({al}, {om}) | {it} | {sec:.0f} | {er:.2e} | {eo:.2e} | {sp:.1e} |")
    emit("\n(errors: max relative error over q, m, V of the converged fixed point)")
    emit(f"\nreference style: {per_point_ref:.0f} s per point -> {grid_ref / 3600:.1f} h for the "
         f"{na}x{nw} grid, both branches (extrapolated from the points above)")
    emit(f"ours: {ours_total:.1f} s for the whole grid, both branches -> ratio {grid_ref / ours_total:.0f}x "
         f"(target >= 30x)")
    emit(f"<!-- headline: {na}x{nw} grid, both branches, {a.quadrature} {a.n_quad}: "
         f"{grid_ref / ours_total:.0f}× vs the reference style (target ≥ 30×) -->")
    if a.out:
        from pathlib import Path

        Path(a.out).write_text("## positional-semantic: 30x20 phase diagram, both branches\n\n" + "\n".join(lines) + "\n")

if __name__ == "__main__":
    main()
