#!/usr/bin/env python
r"""Benchmark of the batched RIE state evolution (bilinear sequence regression, quadratic network).

Run from the repository root::

    python benchmarks/bench_rie_models.py [--points 1000] [--sample 100] [--out FILE.md]

For each model, a grid of ``--points`` points (default 10³) is solved twice with the same
generated kernels:

* **batched** (the model's ``evaluate``, :mod:`derive.models._rie_se`): closed-form density of
  the Stieltjes-transform polynomial, batched companion eigenvalues for the edges, adaptive
  angle-rule quadrature driven by masks over all points at once, two stages (a cheap rule to
  1e-7, then the accurate map to the ``tol`` option on the undamped residual), the secant
  method on the scalar state — :mod:`numerics.rie`, :mod:`numerics.state_evolution`;
* **per point** (the code these models used before, copied verbatim below as the reference:
  ``np.roots`` per point for the edges, ``np.linalg.eigvals`` of complex companion matrices
  per node, adaptive quadrature piece by piece in Python, ``numerics.fixed_point`` with
  damping 0.5, Anderson 3, tolerance 1e-11 on the undamped residual), run on a random
  subsample of ``--sample`` grid points; its cost is linear in the number of points (one
  Python loop per point per map evaluation), so it is extrapolated to the grid. ``--sample``
  equal to ``--points`` runs it on the whole grid.

The two are interleaved (``--rounds``: the batched grid, then a chunk of the sample, and
again), so that a change of load on a shared machine hits both.

Reported: wall and CPU (``time.process_time``, less sensitive to other load on the machine)
times, their ratios, and the largest deviation of the fixed-point ``mmse`` between the two on
the subsample. It is a script, not a test.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from typing import Any, Callable

import numpy as np

import derive
from numerics.backend import get_backend
from numerics.fixed_point import solve_fixed_point
from numerics.rie import integrate_density, physical_density, support_intervals

EW, BS = "extensive-width-quadratic", "bilinear-sequence-regression"


# ---- the per-point reference: the models' mmse_rie before the batched driver (verbatim, ------
# ---- from derive/models/{extensive_width_quadratic,bilinear_sequence_regression}.py) ---------
def old_mmse_rie_ewq(self: Any, delta_eff: np.ndarray, kappa_v: np.ndarray, n_nodes: int = 64) -> np.ndarray:
    from derive.models.extensive_width_quadratic import C, E
    ck, ek, mk = self.kernel("cubic"), self.kernel("edges"), self.kernel("mmse_rie")
    d_v, k_v = (np.asarray(v, float).reshape(-1) for v in (delta_eff, kappa_v))
    out = np.zeros(d_v.shape)
    for i in np.flatnonzero(d_v > 1e-14):
        k, d = k_v[i], d_v[i]

        def coeffs(xs: np.ndarray, k=k, d=d) -> np.ndarray:
            o = ck(np, None, xs, k, d)
            return np.stack([np.broadcast_to(np.asarray(o[c.name], float), xs.shape)
                             for c in C], axis=-1)

        ecs = ek(np, None, k, d)
        iv = support_intervals([float(ecs[e.name]) for e in E],
                               lambda xs: physical_density(coeffs(xs)), lo=None)
        (i3,) = integrate_density(coeffs, iv, [lambda mu, xs: mu**3], n_nodes)
        out[i] = mk(np, None, d, i3)["m_new"]
    return out


def old_mmse_rie_bsr(self: Any, delta_eff: np.ndarray, rho_v: np.ndarray, beta_v: np.ndarray,
                     n_nodes: int = 64) -> np.ndarray:
    from derive.models.bilinear_sequence_regression import C, E
    xp = np
    qk, ek = self.kernel("quartic"), self.kernel("edges")
    mk, ik = self.kernel("mmse_rie"), self.kernel("mmse_beta_inf")
    de_v, r_v, b_v = (np.asarray(v, float).reshape(-1) for v in (delta_eff, rho_v, beta_v))
    out = np.full(de_v.shape, np.nan)
    tiny = de_v <= 1e-14
    out[tiny] = 0.0
    inf = np.isinf(b_v) & ~tiny
    if inf.any():
        out[inf] = ik(xp, None, r_v[inf], de_v[inf])["m_new"]
    for i in np.flatnonzero(~inf & ~tiny):
        r, b, d = r_v[i], b_v[i], de_v[i]

        def coeffs(xs: np.ndarray, r=r, b=b, d=d) -> np.ndarray:
            o = qk(xp, None, xs, r, b, d)
            return np.stack([np.broadcast_to(np.asarray(o[c.name], float), xs.shape)
                             for c in C], axis=-1)

        ecs = ek(xp, None, r, b, d)
        iv = support_intervals([float(ecs[e.name]) for e in E],
                               lambda xs: physical_density(coeffs(xs)))
        if b > 1:
            i3, j2 = integrate_density(coeffs, iv, [lambda mu, xs: mu**3,
                                                    lambda mu, xs: mu / xs**2], n_nodes)
        else:  # β = 1: the ∫μ/x² term has coefficient (β − 1)² = 0 (and diverges)
            (i3,), j2 = integrate_density(coeffs, iv, [lambda mu, xs: mu**3], n_nodes), 0.0
        out[i] = mk(xp, None, b, d, 2 * i3, 2 * j2)["m_new"]
    return out


def old_solve(model: Any, p: dict[str, np.ndarray]) -> np.ndarray:
    """The models' previous ``evaluate`` core: same solver settings, per-point map."""
    ch = model.kernel("channel")
    if model.name == EW:
        a, k, dl = p["alpha"], p["kappa"], p["delta"]
        x0 = (1 / k)[:, None]

        def F(xv: np.ndarray, idx: np.ndarray) -> np.ndarray:
            de = ch(np, None, a[idx], dl[idx], np.clip(xv[:, 0], 0.0, None))["Delta_eff"]
            return old_mmse_rie_ewq(model, de, k[idx])[:, None]
    else:
        a, b, r, dl = p["alpha"], p["beta"], p["rho"], p["delta"]
        x0 = np.full((a.size, 1), 0.5)

        def F(xv: np.ndarray, idx: np.ndarray) -> np.ndarray:
            de = ch(np, None, a[idx], dl[idx], np.clip(xv[:, 0], 0.0, None))["Delta_eff"]
            return old_mmse_rie_bsr(model, de, r[idx], b[idx])[:, None]
    with np.errstate(all="ignore"):
        res = solve_fixed_point(F, x0, damping=0.5, anderson=3, tol=1e-11, maxiter=3000,
                                project=lambda xv, idx: xv[:, 0] > 0)
    return np.where(res.converged, np.clip(res.x[:, 0], 0.0, None), np.nan)


# ---- grids ------------------------------------------------------------------------------------
def grid(name: str, n: int) -> dict[str, np.ndarray]:
    """About ``n`` points; Δ > 0 (Δ = 0 above α_PR converges only asymptotically, for both codes)."""
    if name == EW:
        k = max(2, round(n ** (1 / 3)))
        axes = (np.linspace(0.02, 1.0, k), np.geomspace(0.2, 3.0, k), np.geomspace(0.01, 1.0, k))
        names = ("alpha", "kappa", "delta")
    else:
        k = max(2, round(n ** (1 / 4)))
        k0 = max(2, round(n / k**3))
        axes = (np.linspace(0.05, 1.2, k0), np.array([1.0, 1.5, 2.5, 5.0, 10.0][:k] if k <= 5 else
                                                     np.geomspace(1, 10, k)),
                np.geomspace(0.1, 1.5, k), np.geomspace(0.01, 1.0, k))
        names = ("alpha", "beta", "rho", "delta")
    mesh = np.meshgrid(*axes, indexing="ij")
    return {nm: m.ravel() for nm, m in zip(names, mesh)}


def timed(f: Callable[[], Any]) -> tuple[Any, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = f()
    return out, time.perf_counter() - w, time.process_time() - c


class _Tee(io.TextIOBase):
    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=100, help="grid points run by the per-point code")
    ap.add_argument("--rounds", type=int, default=5,
                    help="batched runs, interleaved with as many chunks of the per-point sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default="numpy", help="only numpy (the RIE driver is NumPy)")
    ap.add_argument("--out", help="also write the report to this Markdown file")
    args = ap.parse_args(argv)
    buf = io.StringIO()
    old_stdout = sys.stdout
    sys.stdout = _Tee(old_stdout, buf)
    try:
        run(args)
    finally:
        sys.stdout = old_stdout
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(buf.getvalue())


def run(args: argparse.Namespace) -> None:
    be = get_backend("numpy")
    rng = np.random.default_rng(args.seed)
    rows, heads = [], []
    for name in (EW, BS):
        model = derive.models.get(name)
        p = grid(name, args.points)
        n = p["alpha"].size
        warm = {k: v[:2] for k, v in p.items()}
        model.evaluate(warm, be)                              # kernels generated, caches warm
        old_solve(model, {k: v[:2] for k, v in p.items()})
        sub = np.sort(rng.choice(n, size=min(args.sample, n), replace=False))
        # interleaved (the machine is shared): the batched grid and a chunk of the per-point
        # sample alternate, so a change of load hits both; times are summed per side
        w_new = c_new = w_old = c_old = 0.0
        olds = []
        for chunk in np.array_split(sub, args.rounds):
            out, w, c = timed(lambda: model.evaluate(p, be))
            w_new, c_new = w_new + w / args.rounds, c_new + c / args.rounds
            o, w, c = timed(lambda: old_solve(model, {k: v[chunk] for k, v in p.items()}))
            olds.append(o)
            w_old, c_old = w_old + w, c_old + c
        old = np.concatenate(olds)
        scale = n / sub.size
        diff = np.abs(np.asarray(out["mmse"])[sub] - old)
        conv_new = int(np.sum(out["converged"]))
        conv_old = int(np.sum(np.isfinite(old)))
        rows.append((name, n, sub.size, w_new, c_new, w_old * scale, c_old * scale,
                     float(np.nanmax(diff)), conv_new, conv_old,
                     float(np.mean(out["iterations"]))))
        heads.append(f"{name}: per-point loop / batched {c_old * scale / c_new:.0f}× (CPU), "
                     f"max |Δmmse| {np.nanmax(diff):.1e}")
    print(f"# RIE state evolution: batched driver vs the per-point loop ({args.points} grid points)\n")
    print("| model | points | batched wall | batched CPU | per-point wall (extrap.) | per-point CPU (extrap.) "
          "| ratio wall | ratio CPU | max abs diff mmse (sample) | converged batched | converged per-point (sample) "
          "| mean map evaluations |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (name, n, ns, wn, cn, wo, co, d, cvn, cvo, it) in rows:
        print(f"| {name} | {n} | {wn:.2f} s | {cn:.2f} s | {wo:.1f} s | {co:.1f} s | {wo / wn:.0f}× | "
              f"{co / cn:.0f}× | {d:.1e} | {cvn}/{n} | {cvo}/{ns} | {it:.1f} |")
    import os
    import platform

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _machine import cpu_name

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nMachine: {cpu_name()}, {os.cpu_count()} logical CPUs, {platform.platform()}; load average "
          f"{load:.1f} while running (other jobs share the cores: the CPU-time ratio is the steadier one).")
    print(f"\nThe per-point code ran on {rows[0][2]} (resp. {rows[1][2]}) random grid points (seed "
          f"{args.seed}); its time is scaled by points/sample. The batched grid ran {args.rounds} times "
          f"(mean reported), interleaved with {args.rounds} chunks of the per-point sample. "
          "Target (issue 12): ≥ 50× on a 10³-point grid, values equal to 1e-10.\n")
    for h in heads:
        print(f"<!-- headline: {h} -->")


if __name__ == "__main__":
    main()
