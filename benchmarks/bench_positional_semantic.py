"""Benchmark: positional-semantic on the shared saddle-point driver — accuracy, speed, phase diagram.

Report: one (α, ω) point on both branches at default settings (``quad_rtol = 1e-3``: the QMC
rule refined until every relative error bar is below 1e-3), and with 8 scrambling seeds; the same fixed-rule point on the
compiled and the array engine; a refinement study against an independent reference refined to
2.5e-4; the semantic θ from several starts; the phase diagram by continuation (``--pd-grid
100x50 --pd-workers 2``: the paper's grid, measured).

The reference-style solver below (the authors' notebook re-implemented, kept for comparisons):

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

    python benchmarks/bench_positional_semantic.py [--pd-grid 100x50] [--pd-workers 2] [--pd-n-quad 1024]

Only the public API is used: the model's ``solve_pairs`` and ``phase_diagram``.
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
OBS = ("q", "m", "v", "theta", "mse", "phi")


def _model():
    import derive

    return derive.models.get("positional-semantic")


def _point(al: float, om: float, branch: str, **opts):
    """One branch at one point through the model's public API (σ = 0.5, λ = 0.01)."""
    return _model().solve_pairs([al], om, branch, sigma=SIGMA, lam=LAM, **opts)


def refinement(emit, al: float = 1.0, om: float = 0.3, sizes=(4096,), replicas: int = 4,
               reference_rtol: float = 2.5e-4) -> dict:
    """Refinement study at one point: the default settings (``quad_rtol = 1e-3``: the rule refined
    until every relative error bar is below it) and fixed rules of ``sizes`` points × ``replicas``,
    each value ± replica error against an independent much finer solution (scrambling seeds 100-,
    refined to ``reference_rtol``: a 4x smaller error bar, 16x the nodes)."""
    res = {}
    for branch in ("positional", "semantic"):
        rows = []
        t = time.perf_counter()
        fine = _point(al, om, branch, seed=100, quad_rtol=reference_rtol, n_quad_max=2**22)
        fine_sec = time.perf_counter() - t
        t = time.perf_counter()
        r = _point(al, om, branch)
        rows.append(("default (quad_rtol 1e-3)", time.perf_counter() - t, r))
        for n in sizes:
            t = time.perf_counter()
            r = _point(al, om, branch, n_quad=n, replicas=replicas, quad_rtol=None)
            rows.append((f"{n} × {replicas} fixed", time.perf_counter() - t, r))
        rows.append((f"reference (seeds 100-, quad_rtol {reference_rtol:g})", fine_sec, fine))
        res[branch] = rows
        emit(f"\n**{branch} branch, (α, ω) = ({al}, {om})**; value ± replica standard error; in brackets "
             "|value − reference| / |reference|; s = wall seconds (2 threads)\n")
        emit("| rule | points × replicas | s | " + " | ".join(OBS) + " | max rel. error bar |")
        emit("|---|---:|---:|" + "---|" * len(OBS) + "---:|")
        for n, sec, r in rows:
            cells = []
            for k in OBS:
                v, e, vf = float(r[k][0]), float(r[f"{k}_err"][0]), float(fine[k][0])
                if abs(v) < 1e-8:
                    cells.append("0 (invariant)")
                    continue
                cells.append(f"{v:.6g} ± {e:.1g} [{abs(v - vf) / abs(vf):.1e}]")
            emit(f"| {n} | {int(r['n_nodes'][0])} × {replicas} | {sec:.1f} | " + " | ".join(cells)
                 + f" | {float(r['quad_error'][0]):.1e} |")
    return res


def one_point(emit, al: float = 1.0, om: float = 0.3, **opts) -> tuple[float, float, float, list]:
    """Wall and CPU time of one (α, ω) point, both branches, ``opts`` (default settings: 1e-3),
    kernels loaded and compiled first (one-time costs, cached on disk)."""
    _point(al, om, "positional", n_quad=256, replicas=2, quad_rtol=None)
    t, c = time.perf_counter(), time.process_time()
    errs, nodes = [], []
    for branch in ("positional", "semantic"):
        r = _point(al, om, branch, **opts)
        errs.append(float(r["quad_error"][0]))
        nodes.append(int(r["n_nodes"][0]))
    sec, cpu = time.perf_counter() - t, time.process_time() - c
    emit(f"\none point (α, ω) = ({al}, {om}), both branches, {opts or 'default settings'}: {sec:.2f} s wall, "
         f"{cpu:.2f} s CPU; max relative error bar {max(errs):.1e} (positional {errs[0]:.1e} on "
         f"{nodes[0]} × 4 nodes, semantic {errs[1]:.1e} on {nodes[1]} × 4)")
    return sec, cpu, max(errs), nodes


def seed_spread(emit, al: float = 1.0, om: float = 0.3, seeds=tuple(range(0, 16, 2))) -> tuple[float, float, int]:
    """The same point at default settings with other scrambling seeds (option ``seed``): the
    4-replica error bar scatters by about ±40 % around the target, so the rule at which it falls
    below 1e-3 -- and the time -- depends on the seed. Median and largest wall time, and how many
    seeds take at most 2 s."""
    _point(al, om, "positional", n_quad=256, replicas=2, quad_rtol=None)
    rows = []
    for seed in seeds:
        t = time.perf_counter()
        r = {b: _point(al, om, b, seed=int(seed)) for b in ("positional", "semantic")}
        rows.append((int(seed), time.perf_counter() - t, r))
    secs = np.array([sec for _, sec, _ in rows])
    emit(f"\nthe same point, default settings, scrambling seeds {list(seeds)}: wall median {np.median(secs):.2f} s, "
         f"max {secs.max():.2f} s, {int((secs <= 2).sum())} of {secs.size} within 2 s; per seed (s; rule per replica "
         "and error bar, positional / semantic): " + "; ".join(
             f"{seed}: {sec:.1f} ({int(r['positional']['n_nodes'][0])}, {float(r['positional']['quad_error'][0]):.1e} / "
             f"{int(r['semantic']['n_nodes'][0])}, {float(r['semantic']['quad_error'][0]):.1e})" for seed, sec, r in rows))
    return float(np.median(secs)), float(secs.max()), int((secs <= 2).sum())


def engines(emit, al: float = 1.0, om: float = 0.3, n_quad: int = 4096) -> float:
    """The same fixed-rule point on the compiled and the array engine: time ratio, max difference."""
    out = {}
    for eng in ("compiled", "array"):
        t = time.perf_counter()
        r = {b: _point(al, om, b, n_quad=n_quad, quad_rtol=None, engine=eng) for b in ("positional", "semantic")}
        out[eng] = (time.perf_counter() - t, r)
    d = max(abs(float(out["compiled"][1][b][k][0]) - float(out["array"][1][b][k][0])) / max(abs(float(out["array"][1][b][k][0])), 1e-300)
            for b in ("positional", "semantic") for k in ("q", "v", "mse", "phi"))
    ratio = out["array"][0] / out["compiled"][0]
    emit(f"\nengines, {n_quad} × 4 fixed rule, both branches: compiled {out['compiled'][0]:.2f} s, array "
         f"{out['array'][0]:.2f} s wall: **{ratio:.1f}x**; max relative difference of q, V, mse, Φ {d:.1e}")
    return ratio


def determinism(emit, al: float, om: float = 0.3, starts: int = 5, **opts) -> tuple[float, float]:
    """Semantic θ from several starts with m = 0 (random q, V, θ): spread vs the error bar."""
    m = _model()
    rng = np.random.default_rng(1)
    x0 = m.random_states(starts, rng)
    x0[:, 1] = 0.0
    x0[:, 3] = np.abs(x0[:, 3]) + 0.02
    r = m.solve_pairs(np.full(starts, al), om, "semantic", sigma=SIGMA, lam=LAM, init=x0, **opts)
    th = np.asarray(r["theta"])[np.asarray(r["converged"])]
    err = float(np.nanmax(r["theta_err"]))
    spread = float(th.max() - th.min()) if th.size else float("nan")
    emit(f"semantic θ at (α, ω) = ({al}, {om}) from {starts} starts (m = 0): {th.size} converged, "
         f"θ = {np.mean(th):.6f}, spread {spread:.1e}, replica error {err:.1e}")
    return spread, err


def phase_diagram_timing(emit, na: int, nw: int, **opts) -> float:
    alphas = np.linspace(0.2, 3.0, na)
    omegas = np.linspace(0.05, 0.95, nw)
    import os

    def cpu() -> float:  # this process and its finished workers
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    t, c = time.perf_counter(), cpu()
    pd = _model().phase_diagram(alphas, omegas, sigma=SIGMA, lam=LAM, **opts)
    wall, sec = time.perf_counter() - t, cpu() - c
    n_on = {b: int(pd[b]["on_branch"].sum()) for b in ("positional", "semantic")}
    emit(f"\nphase diagram by continuation, {na} α × {nw} ω, both branches, {opts}: {wall:.0f} s wall, {sec:.0f} s CPU "
         f"(points on branch: {n_on}); α_c(ω) = " + ", ".join(
             f"{w:.2f}: {a:.3f} ± {e:.3f}" for w, a, e in zip(omegas, pd["alpha_c"], pd["alpha_c_err"])))
    return sec


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pd-grid", default="12x6", help="grid of the continuation phase diagram (α x ω)")
    ap.add_argument("--pd-workers", type=int, default=1, help="worker processes of the phase diagram")
    ap.add_argument("--pd-n-quad", type=int, default=1024)
    ap.add_argument("--pd-record", default=None, help="directory of a recorded phase-diagram run (its "
                    "alpha_c.csv provenance line gives grid and time) instead of running the subgrid")
    ap.add_argument("--pd-replicas", type=int, default=2)
    ap.add_argument("--out", default=None, help="also write the report (Markdown) here")
    ap.add_argument("--backend", default="numpy")
    a = ap.parse_args(argv)
    lines: list[str] = []

    def emit(*args) -> None:
        text = " ".join(str(x) for x in args)
        lines.append(text)
        print(text, flush=True)

    import os

    emit(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}; "
         f"numpy {np.__version__}; date {time.strftime('%Y-%m-%d')}; load average {os.getloadavg()[0]:.1f} "
         f"on {os.cpu_count()} cores (shared)")
    one_wall, one_cpu, one_err, one_nodes = one_point(emit)
    seed_med, seed_max, seed_ok = seed_spread(emit)
    ratio = engines(emit)
    ref = refinement(emit)
    # path independence is a property of the map on one rule: a fixed rule (with quad_rtol each
    # start may end on another rule near the pitchfork, where θ's relative error cannot reach 1e-3)
    sp1 = determinism(emit, 1.0, n_quad=4096, quad_rtol=None)
    sp2 = determinism(emit, 0.75, n_quad=4096, quad_rtol=None)
    if a.pd_record:
        # a recorded run of ``python derivations/positional_semantic.py --phase-diagram NAxNW --out DIR``
        import re
        from pathlib import Path

        rec = Path(a.pd_record)
        prov = (rec / "alpha_c.csv").read_text().splitlines()[0]
        na, nw = int(re.search(r"grid (\d+) alpha", prov).group(1)), int(re.search(r"x (\d+) omega", prov).group(1))
        wall, sec = (float(v) for v in re.search(r"; (\d+) s wall, (\d+) s CPU", prov).groups())
        mw = re.search(r"'workers': (\d+)", prov)
        workers = int(mw.group(1)) if mw else 1
        emit(f"\nphase diagram by continuation (recorded run), {na} α × {nw} ω, both branches, {workers} worker "
             f"process(es): {wall:.0f} s wall, {sec:.0f} s CPU; provenance: `{prov.lstrip('# ')}`")
    else:
        na, nw = (int(v) for v in a.pd_grid.split("x"))
        t0 = time.perf_counter()
        workers = a.pd_workers
        sec = phase_diagram_timing(emit, na, nw, n_quad=a.pd_n_quad, replicas=a.pd_replicas, workers=workers)
        wall = time.perf_counter() - t0
    full = sec * (100 * 50) / (na * nw)
    # wall on 2 cores: measured with 2 workers, else the CPU time halved (the ω columns are independent)
    pd_wall = wall * (100 * 50) / (na * nw) if workers >= 2 else full / 2
    pd_how = "measured" if (workers >= 2 and na * nw == 5000) else "extrapolated"
    emit(f"the paper's 100 × 50 grid: {pd_wall / 60:.1f} min wall on 2 cores ({pd_how}), {full / 60:.0f} min CPU "
         f"(target ≤ 30 min on 2 cores)")
    emit(f"<!-- headline: one point both branches at default settings (quad_rtol 1e-3): {one_wall:.1f} s wall "
         f"({one_cpu:.1f} s CPU), max rel. error bar {one_err:.1e} on {one_nodes} × 4 nodes (target 1e-3 in 2 s on "
         f"2 cores: {'met' if one_err <= 1e-3 and one_wall <= 2 else 'not met'}; 8 scrambling seeds: median "
         f"{seed_med:.1f} s, max {seed_max:.1f} s, {seed_ok} of 8 within 2 s); compiled engine {ratio:.1f}x the "
         f"array engine; semantic θ spread from 5 starts {max(sp1[0], sp2[0]):.0e} vs error "
         f"{max(sp1[1], sp2[1]):.0e}; 100×50 phase diagram {pd_wall / 60:.1f} min wall on 2 cores ({pd_how}; "
         f"{full / 60:.0f} min CPU; target ≤ 30: {'met' if pd_wall <= 1800 else 'not met'}) -->")
    if a.out:
        from pathlib import Path

        Path(a.out).write_text("## positional-semantic: accuracy, speed, phase diagram\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
