r"""Reproduce: *A phase transition between positional and semantic learning in a solvable model of
dot-product attention* (Cui, Behrens, Krzakala, Zdeborová, arXiv:2402.03902).

The paper's claims reproduced here
----------------------------------
1. The global minimum of the empirical risk of a tied, low-rank dot-product attention layer is
   either **positional** (the query/key aligns with the positional encodings, m > 0, θ = 0) or
   **semantic** (it aligns with the teacher's semantic direction, θ > 0, m = 0), and it switches
   from positional to semantic at a critical sample complexity α_c(ω) — a first-order transition,
   located here where the two branches' free energies cross.
2. Above the transition the attention layer beats the best **linear positional baseline**.
3. (Beyond the paper's figures) At rank r = 2 the global minimum is a **mixed** state: positional
   in one student direction, semantic in the orthogonal one, with θ growing continuously.

How
---
Theory: ``derive.solve("positional-semantic", ..., branch=...)``/the model's batched pipeline
(SymPy-generated kernels; quasi-Monte-Carlo over the 4 Gaussian variables; batched Newton prox;
Anderson-accelerated fixed point on the undamped residual). The transition α_c(ω) is located by
batched bisection of Φ_sem − Φ_pos; the spinodal of the positional branch is where the leading
eigenvalue of the Jacobian of the undamped map crosses 1. Simulation: the independent finite-d
trainer :mod:`numerics.simulate.positional_semantic` (L-BFGS on the analytic gradient, from a
positional and from a semantic initialisation; the run with the lower risk is the global one).
Reference: the authors' own tables (``shared/reference/positional_semantic.json``).

Run: ``attn-theory reproduce positional-semantic [--quick]`` or
``python derivations/positional_semantic.py [--out DIR] [--quick]``.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

MODEL = "positional-semantic"
SIGMA, LAM = 0.5, 0.01

__all__ = ["Config", "DEFAULT", "QUICK", "main", "print_derivation", "solve_pairs", "critical_alpha",
           "rank2_curves", "plot_rank2"]


@dataclass(frozen=True)
class Config:
    n_quad: int = 4096  # QMC points per Gaussian expectation
    omega_curve: float = 0.3
    alphas: tuple[float, ...] = tuple(float(a) for a in np.round(np.linspace(0.1, 2.0, 20), 4))
    pd_alphas: tuple[float, ...] = tuple(float(a) for a in np.round(np.linspace(0.1, 2.5, 13), 4))
    pd_omegas: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    sim_alphas: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    sim_dims: tuple[int, ...] = (100, 200, 400)
    sim_seeds: int = 3
    replicas: int = 3  # QMC scrambles for the error bar of alpha_c
    rank2_alphas: tuple[float, ...] = (0.3, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0)  # r = 2 vs r = 1 at omega_curve


DEFAULT = Config()
QUICK = Config(n_quad=1024, alphas=tuple(float(a) for a in np.round(np.linspace(0.2, 2.0, 7), 4)),
               pd_alphas=tuple(float(a) for a in np.round(np.linspace(0.2, 2.4, 7), 4)), pd_omegas=(0.2, 0.3, 0.5),
               sim_alphas=(0.5, 1.5), sim_dims=(100, 200), sim_seeds=2, replicas=2, rank2_alphas=(0.6, 1.5))


def print_derivation(echo=print) -> None:
    """The symbolic steps, done by SymPy on the registered model."""
    import derive

    m = derive.models.get(MODEL)
    echo("Overlap updates derived from ∂Φ/∂(q̂, m̂, V̂, θ̂) = 0 and compared with the stated ones:")
    for k, ok in m.check_overlaps().items():
        echo(f"  {k}: {'equal' if ok else 'DIFFERENT'}")
    echo("Conjugates derived from ∂Φ/∂(q, m, V, θ) = 0 (envelope theorem):")
    for k, v in m.derived_hats_from_envelope().items():
        echo(f"  {k} = {v}")


def solve_pairs(alpha: Any, omega: Any, branch: str, **opts: Any) -> dict[str, np.ndarray]:
    """The model pipeline at paired points ``(alpha[i], omega[i])`` (not an outer product):
    :meth:`derive.models.positional_semantic.PositionalSemantic.solve_pairs` at σ = 0.5, λ = 0.01, on the
    fixed rule ``n_quad`` unless ``quad_rtol`` is passed (the figures' curves: one rule per curve)."""
    import derive

    opts = {"quad_rtol": None, **opts}
    return derive.models.get(MODEL).solve_pairs(alpha, omega, branch, sigma=SIGMA, lam=LAM, **opts)


def critical_alpha(omegas: Sequence[float], lo: float, hi: float, *, tol: float = 2e-3,
                   **opts: Any) -> Any:
    """α_c(ω): where Φ_semantic − Φ_positional changes sign (the model's ``critical_alpha``)."""
    import derive

    return derive.models.get(MODEL).critical_alpha(omegas, lo, hi, tol=tol, sigma=SIGMA, lam=LAM, **opts)


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    keys = list(rows[0])
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in r.items()})


def _reference() -> dict | None:
    path = Path(__file__).resolve().parents[2] / "shared" / "reference" / "positional_semantic.json"
    return json.loads(path.read_text()) if path.exists() else None


def branch_curves(out: Path, cfg: Config, echo=print) -> tuple[list[Path], dict[str, Any]]:
    """Both branches vs α at ω = 0.3: error, free energy, stability; α_c and the spinodal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    al = np.asarray(cfg.alphas)
    res = {b: solve_pairs(al, cfg.omega_curve, b, n_quad=cfg.n_quad, stability=True)
           for b in ("positional", "semantic")}
    rows = []
    for i, a in enumerate(al):
        for b, r in res.items():
            rows.append({"alpha": float(a), "branch": b, **{k: float(r[k][i]) for k in
                         ("q", "m", "v", "theta", "mse", "phi", "train_loss", "mse_linear", "stability",
                          "residual")}, "converged": bool(r["converged"][i])})
    _write_csv(out / "branches_omega0.3.csv", rows)
    # transition (with QMC replicas for its error) and the spinodal of the positional branch
    acs = [float(critical_alpha([cfg.omega_curve], 0.5, 2.0, n_quad=cfg.n_quad, seed=s).root[0])
           for s in range(cfg.replicas)]
    ac, ac_err = float(np.mean(acs)), float(np.std(acs, ddof=1) / np.sqrt(len(acs))) if len(acs) > 1 else np.nan
    lead = res["positional"]["stability"]
    cross = np.nonzero((lead[:-1] - 1) * (lead[1:] - 1) < 0)[0]
    spin = [float(al[i] + (1 - lead[i]) * (al[i + 1] - al[i]) / (lead[i + 1] - lead[i])) for i in cross]
    ref = _reference()
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for b, c in (("positional", "tab:blue"), ("semantic", "tab:red")):
        ax[0].plot(al, res[b]["mse"], "-", color=c, label=f"{b} (theory)")
        ax[1].plot(al, res[b]["phi"], "-", color=c, label=f"{b} (theory)")
        if ref:
            rr = ref[f"omega_{cfg.omega_curve}"][b]
            ax[0].plot([r["alpha"] for r in rr], [r["mse"] for r in rr], "o", mfc="none", color=c, ms=4,
                       label=f"{b} (authors' table)")
            ax[1].plot([r["alpha"] for r in rr], [r["Phi"] for r in rr], "o", mfc="none", color=c, ms=4)
    glob = np.where(res["semantic"]["phi"] > res["positional"]["phi"], res["semantic"]["mse"],
                    res["positional"]["mse"])
    ax[0].plot(al, glob, "k--", lw=1, label="global minimum")
    ax[0].axhline(float(res["positional"]["mse_linear"][0]), color="gray", ls=":", label="linear positional baseline")
    for a_ in (ax[0], ax[1]):
        a_.axvline(ac, color="k", lw=0.8, alpha=0.6)
        a_.set_xlabel(r"$\alpha=n/d$")
    ax[0].set_ylabel("test MSE")
    ax[1].set_ylabel(r"$\Phi$ (larger = lower risk)")
    ax[0].legend(fontsize=7)
    ax[0].set_title(rf"$\omega={cfg.omega_curve}$, $\sigma={SIGMA}$, $\lambda={LAM}$; $\alpha_c={ac:.3f}$")
    fig.tight_layout()
    p = out / "branches_omega0.3.png"
    fig.savefig(p, dpi=130)
    plt.close(fig)
    echo(f"alpha_c(omega={cfg.omega_curve}) = {ac:.4f} ± {ac_err:.4f} (QMC replicas {acs}); "
         f"positional-branch spinodal(s) at alpha = {spin}")
    return [p, out / "branches_omega0.3.csv"], {"alpha_c": ac, "alpha_c_err": ac_err, "spinodal": spin,
                                               "rows": rows}


RANK2_BRANCHES = {2: ("positional", "semantic", "mixed"), 1: ("positional", "semantic")}


def plot_rank2(res: dict[str, dict[str, Any]], alphas: Sequence[float], path: Path, omega: float) -> Path:
    """Test MSE and Φ of the r = 1 and r = 2 branches vs α (``res['r{r}_{branch}']``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    al = np.asarray(alphas, dtype=float)
    style = {"positional": "tab:blue", "semantic": "tab:red", "mixed": "tab:purple"}
    fig, ax = plt.subplots(1, 3, figsize=(14, 4.0))
    for r, ls in ((1, ":"), (2, "-")):
        for b in RANK2_BRANCHES[r]:
            v = res[f"r{r}_{b}"]
            for j, k in enumerate(("mse", "phi")):
                ax[j].plot(al, v[k], ls, marker="o", ms=3, color=style[b], label=f"r={r} {b}")
    mx = res["r2_mixed"]
    ax[2].plot(al, mx["theta"], "-o", ms=3, color="tab:red", label="r=2 mixed: ‖θ‖")
    ax[2].plot(al, mx["m"], "-o", ms=3, color="tab:blue", label="r=2 mixed: ‖m‖")
    ax[2].plot(al, res["r1_semantic"]["theta"], ":o", ms=3, color="tab:red", label="r=1 semantic: θ")
    ax[0].set_ylabel("test MSE")
    ax[1].set_ylabel(r"$\Phi$ (larger = lower risk)")
    ax[2].set_ylabel("overlap")
    for a_ in ax:
        a_.set_xlabel(r"$\alpha=n/d$")
    ax[0].legend(fontsize=7)
    ax[2].legend(fontsize=7)
    ax[0].set_title(rf"rank 2 vs rank 1, $\omega={omega}$, $\sigma={SIGMA}$, $\lambda={LAM}$")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def rank2_curves(out: Path, cfg: Config, echo=print) -> tuple[list[Path], dict[str, Any]]:
    """The general construction at (L, r) = (2, 2): positional, semantic and mixed branches against
    r = 1 at ω = omega_curve; the r = 2 global minimum is the branch with the largest Φ."""
    import derive

    al = np.asarray(cfg.rank2_alphas, dtype=float)
    res: dict[str, dict[str, Any]] = {}
    rows = []
    for r, branches in RANK2_BRANCHES.items():
        for b in branches:
            ds = derive.solve(MODEL, alpha=al, omega=cfg.omega_curve, sigma=SIGMA, lam=LAM, branch=b, r=r,
                              n_quad=cfg.n_quad)
            res[f"r{r}_{b}"] = {k: ds[k].values.astype(float) for k in ("q", "m", "theta", "mse", "phi")}
            for i, a in enumerate(al):
                rows.append({"r": r, "branch": b, "alpha": float(a), "converged": bool(ds.converged[i]),
                             **{k: float(ds[k][i]) for k in ("q", "m", "theta", "mse", "phi", "residual")}})
    _write_csv(out / "rank2_omega0.3.csv", rows)
    p = plot_rank2(res, al, out / "rank2_omega0.3.png", cfg.omega_curve)
    phis = np.stack([res[f"r2_{b}"]["phi"] for b in RANK2_BRANCHES[2]])
    best = [RANK2_BRANCHES[2][int(i)] if np.isfinite(phis[:, j]).any() else "none"
            for j, i in enumerate(np.nanargmax(np.where(np.isfinite(phis), phis, -np.inf), axis=0))]
    echo(f"r = 2 global branch per alpha {al.tolist()}: {best}")
    return [p, out / "rank2_omega0.3.csv"], {"global_r2": dict(zip(al.tolist(), best))}


def phase_diagram(out: Path, cfg: Config, echo=print) -> tuple[list[Path], dict[str, Any]]:
    """The α–ω plane: which branch is the global minimum, and attention vs the linear baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import derive

    ds = derive.solve(MODEL, alpha=np.asarray(cfg.pd_alphas), omega=np.asarray(cfg.pd_omegas), sigma=SIGMA,
                      lam=LAM, branch="global", n_quad=cfg.n_quad)
    ac = critical_alpha(cfg.pd_omegas, min(cfg.pd_alphas), max(cfg.pd_alphas), n_quad=cfg.n_quad)
    rows = [{"omega": float(w), "alpha_c": float(a), "found": bool(c)}
            for w, a, c in zip(cfg.pd_omegas, ac.root, ac.converged)]
    _write_csv(out / "phase_diagram_alpha_c.csv", rows)
    ds.to_dataframe().reset_index().to_csv(out / "phase_diagram_grid.csv", index=False)
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    A, W = np.meshgrid(ds.alpha.values, ds.omega.values, indexing="ij")
    ax[0].pcolormesh(A, W, ds.branch.values, cmap="coolwarm", shading="nearest", vmin=0, vmax=1)
    ax[0].plot(ac.root, cfg.pd_omegas, "k.-", label=r"$\alpha_c(\omega)$ (Φ crossing)")
    ax[0].set_xlabel(r"$\alpha$")
    ax[0].set_ylabel(r"$\omega$")
    ax[0].set_title("global minimum: blue positional, red semantic")
    ax[0].legend(fontsize=8)
    gain = (ds.mse - ds.mse_linear).values
    im = ax[1].pcolormesh(A, W, gain, cmap="PiYG_r", shading="nearest",
                          vmin=-np.nanmax(np.abs(gain)), vmax=np.nanmax(np.abs(gain)))
    if min(A.shape) >= 2:  # a contour needs a 2-D grid (the tiny test run has one omega)
        ax[1].contour(A, W, gain, levels=[0.0], colors="k")
    fig.colorbar(im, ax=ax[1], label="MSE(attention) − MSE(linear)")
    ax[1].set_xlabel(r"$\alpha$")
    ax[1].set_title("attention beats the linear baseline where < 0")
    fig.tight_layout()
    p = out / "phase_diagram.png"
    fig.savefig(p, dpi=130)
    plt.close(fig)
    nconv = int(ds.converged.sum())
    echo(f"phase diagram: {nconv}/{ds.converged.size} grid points converged; alpha_c(omega) = "
         + ", ".join(f"{w}: {a:.3f}" if np.isfinite(a) else f"{w}: no crossing in the α range"
                     for w, a in zip(cfg.pd_omegas, ac.root)))
    return [p, out / "phase_diagram_alpha_c.csv", out / "phase_diagram_grid.csv"], {"alpha_c": rows,
                                                                                    "converged": nconv}


def simulations(out: Path, cfg: Config, seed: int, echo=print) -> tuple[list[Path], dict[str, Any]]:
    """Finite-d training vs theory at ω = 0.3: the global minimum and its overlaps/errors."""
    from numerics.simulate.positional_semantic import run

    rows = []
    for d in cfg.sim_dims:
        for a in cfg.sim_alphas:
            for s in range(cfg.sim_seeds):
                runs = {init: run(d, a, init, seed=seed + 1000 * s + d, omega=cfg.omega_curve, sigma=SIGMA,
                                  lam=LAM) for init in ("positional", "semantic")}
                best = min(runs, key=lambda k: runs[k]["risk_per_d"])
                for init, r in runs.items():
                    rows.append({**r, "global": init == best})
    _write_csv(out / "simulations.csv", rows)
    th = {b: solve_pairs(np.asarray(cfg.sim_alphas), cfg.omega_curve, b, n_quad=cfg.n_quad)
          for b in ("positional", "semantic")}
    summary = []
    for b in ("positional", "semantic"):
        for i, a in enumerate(cfg.sim_alphas):
            for d in cfg.sim_dims:
                sel = [r for r in rows if r["init"] == b and r["d"] == d and r["alpha"] == a]
                line = {"branch": b, "alpha": a, "d": d}
                for k in ("q", "m", "theta", "mse", "train_loss", "risk_per_d"):
                    v = np.array([r[k] for r in sel])
                    thv = -th[b]["phi"][i] if k == "risk_per_d" else th[b][k][i]
                    line[k] = float(v.mean())
                    line[k + "_sem"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else np.nan
                    line[k + "_theory"] = float(thv)
                line["global_fraction"] = float(np.mean([r["global"] for r in sel]))
                summary.append(line)
    _write_csv(out / "simulations_vs_theory.csv", summary)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for b, c in (("positional", "tab:blue"), ("semantic", "tab:red")):
        ax[0].plot(cfg.sim_alphas, th[b]["mse"], "-", color=c, label=f"{b} theory")
        ax[1].plot(cfg.sim_alphas, -th[b]["phi"], "-", color=c, label=f"{b} theory (−Φ)")
        for j, d in enumerate(cfg.sim_dims):
            pts = [s for s in summary if s["branch"] == b and s["d"] == d]
            ax[0].errorbar([p["alpha"] for p in pts], [p["mse"] for p in pts], [p["mse_sem"] for p in pts],
                           fmt="os^"[j % 3], color=c, mfc="none", ms=4, label=f"{b} sim d={d}")
            ax[1].errorbar([p["alpha"] for p in pts], [p["risk_per_d"] for p in pts],
                           [p["risk_per_d_sem"] for p in pts], fmt="os^"[j % 3], color=c, mfc="none", ms=4)
    ax[0].set_xlabel(r"$\alpha$")
    ax[0].set_ylabel("test MSE")
    ax[1].set_xlabel(r"$\alpha$")
    ax[1].set_ylabel("minimal risk / d")
    ax[0].legend(fontsize=6)
    fig.tight_layout()
    p = out / "simulations.png"
    fig.savefig(p, dpi=130)
    plt.close(fig)
    return [p, out / "simulations.csv", out / "simulations_vs_theory.csv"], {"summary": summary}


def main(out_dir: Path, quick: bool = False, seed: int = 0, config: Config | None = None,
         echo=print) -> list[Path]:
    """Write PNG + CSV + summary.md into ``out_dir``; return the written paths."""
    cfg = config or (QUICK if quick else DEFAULT)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print_derivation(echo)
    files, info = [], {}
    for name, fn in (("branches", lambda: branch_curves(out, cfg, echo)),
                     ("phase_diagram", lambda: phase_diagram(out, cfg, echo)),
                     ("simulations", lambda: simulations(out, cfg, seed, echo)),
                     ("rank2", lambda: rank2_curves(out, cfg, echo))):
        t = time.perf_counter()
        f, i = fn()
        files += f
        info[name] = i
        echo(f"[{name}] {time.perf_counter() - t:.1f} s")
    lines = [f"# positional-semantic reproduction ({'quick' if quick else 'default'} run, seed {seed})", "",
             f"config: `{asdict(cfg)}`", "",
             f"- α_c(ω={cfg.omega_curve}) = {info['branches']['alpha_c']:.4f} ± {info['branches']['alpha_c_err']:.4f} "
             "(QMC replicas); the authors' tables bracket it in (1.25, 1.357).",
             f"- positional-branch spinodal(s) (Jacobian eigenvalue = 1): {info['branches']['spinodal']}",
             "", "## simulation vs theory (ω = 0.3)", "",
             "| branch | α | d | mse (sim ± sem) | mse theory | risk/d (sim) | −Φ theory | global fraction |",
             "|---|---|---|---|---|---|---|---|"]
    for s in info["simulations"]["summary"]:
        lines.append(f"| {s['branch']} | {s['alpha']} | {s['d']} | {s['mse']:.5f} ± {s['mse_sem']:.5f} | "
                     f"{s['mse_theory']:.5f} | {s['risk_per_d']:.5f} | {s['risk_per_d_theory']:.5f} | "
                     f"{s['global_fraction']:.2f} |")
    lines += ["", "## rank r = 2 (global branch by largest Φ)", "",
              f"{info['rank2']['global_r2']}", "", f"total time {time.perf_counter() - t0:.0f} s"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return files + [out / "summary.md"]


def _cli(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results") / MODEL)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--phase-diagram", default=None, metavar="NAxNW",
                    help="only the continuation phase diagram on NA alpha x NW omega points")
    ap.add_argument("--alpha-range", default="0.2,3.0")
    ap.add_argument("--omega-range", default="0.05,0.95")
    ap.add_argument("--n-quad", type=int, default=1024)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--hats", default="envelope", choices=("envelope", "stein"))
    ap.add_argument("--alpha-geom", default=None, metavar="A0,A1,N",
                    help="append N geometrically spaced alphas in [A0, A1] to the phase-diagram grid (large alpha)")
    ap.add_argument("--omegas", default=None, help="comma-separated omegas instead of --omega-range")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes for --phase-diagram (the omega columns are dealt to them)")
    ap.add_argument("--alpha-c-from", default=None, metavar="NPZ",
                    help="only the alpha_c(omega) table by bisection, brackets from this phase-diagram .npz "
                         "(the grid interval of the Phi crossing)")
    ap.add_argument("--scan", action="store_true", help="--alpha-c-from: local scan instead of bisection")
    ap.add_argument("--alpha-c-min", type=float, default=0.0,
                    help="--alpha-c-from: only crossings above this alpha (e.g. those beyond another grid)")
    ap.add_argument("--csv", type=Path, default=None, help="output CSV of --alpha-c-from / --large-alpha")
    ap.add_argument("--large-alpha", action="store_true",
                    help="only the alpha -> infinity table over --omega-range (11 points) and omega*")
    a = ap.parse_args(argv)
    if a.alpha_c_from:
        z = np.load(a.alpha_c_from)
        lo, hi, jw, starts = alpha_c_brackets(z, a.alpha_c_min)
        alpha_c_table(z["omegas"][jw], lo, hi, a.csv or (a.out / "alpha_c_bisection.csv"),
                      starts=starts, workers=a.workers, scan=a.scan, n_quad=a.n_quad, replicas=a.replicas, hats=a.hats)
        return
    if a.large_alpha:
        w0, w1 = (float(v) for v in a.omega_range.split(","))
        large_alpha_table(np.round(np.linspace(w0, w1, 11), 6), a.csv or (a.out / "large_alpha.csv"))
        return
    if a.phase_diagram:
        na, nw = (int(v) for v in a.phase_diagram.split("x"))
        a0, a1 = (float(v) for v in a.alpha_range.split(","))
        w0, w1 = (float(v) for v in a.omega_range.split(","))
        alphas = np.round(np.linspace(a0, a1, na), 6)
        if a.alpha_geom:
            g0, g1, gn = a.alpha_geom.split(",")
            alphas = np.concatenate([alphas, np.round(np.geomspace(float(g0), float(g1), int(gn)), 6)])
        omegas = (np.array([float(v) for v in a.omegas.split(",")]) if a.omegas
                  else np.round(np.linspace(w0, w1, nw), 6))
        phase_diagram_run(alphas, omegas, a.out,
                          n_quad=a.n_quad, replicas=a.replicas, hats=a.hats, workers=a.workers)
        return
    for f in main(a.out, quick=a.quick, seed=a.seed):
        print(f"wrote {f}")




def continuation_phase_diagram(alphas: Sequence[float], omegas: Sequence[float], *, echo=print,
                               **opts: Any) -> dict[str, Any]:
    """Both branches on the α × ω grid by continuation, the branch ends and the Φ crossing
    α_c(ω) with its error: the model's ``phase_diagram`` at σ = 0.5, λ = 0.01."""
    import derive

    return derive.models.get(MODEL).phase_diagram(alphas, omegas, sigma=SIGMA, lam=LAM, **opts)


def branch_ends(pd: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Last α of the positional branch and first α of the semantic branch, per ω (grid values)."""
    from numerics.saddle import branch_ends as ends

    return ends(pd["alphas"], pd["positional"]["on_branch"], pd["semantic"]["on_branch"])


def phi_crossing(pd: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """α_c(ω) where Φ_sem − Φ_pos changes sign (:func:`numerics.saddle.sign_crossing`)."""
    from numerics.saddle import sign_crossing

    sem, pos = pd["semantic"], pd["positional"]
    return sign_crossing(pd["alphas"], sem["phi"] - pos["phi"], np.hypot(sem["phi_err"], pos["phi_err"]),
                         sem["on_branch"] & pos["on_branch"], sem["on_branch"])


def load_phase_diagram(path: Path) -> dict[str, Any]:
    """A ``phase_diagram.npz`` of :func:`phase_diagram_run` back in the layout of ``phase_diagram``."""
    z = np.load(path)
    pd: dict[str, Any] = {b: {} for b in ("positional", "semantic")}
    top = ("alphas", "omegas", "alpha_c", "alpha_c_err", "alpha_c_at_branch_end", "positional_end", "semantic_end")
    for k in z.files:
        b = k.split("_", 1)[0]
        if b in pd and k not in top:
            pd[b][k.split("_", 1)[1]] = z[k]
        else:
            pd[k] = z[k]
    return pd


def plot_phase_diagram(pd: Mapping[str, Any], path: Path, title: str = "") -> Path:
    """The α–ω plane from :func:`continuation_phase_diagram`: which branch is the global minimum
    (blue positional, red semantic), α_c(ω) with its error bar, the branch ends (grid spinodal of
    the positional branch, end of the semantic branch); right: Φ_sem − Φ_pos."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    A, W = np.meshgrid(pd["alphas"], pd["omegas"], indexing="ij")
    pos, sem = pd["positional"], pd["semantic"]
    d = sem["phi"] - pos["phi"]
    pos_on, sem_on = np.asarray(pos["on_branch"], bool), np.asarray(sem["on_branch"], bool)
    pos_left = (np.asarray(pos["converged"]) > 0) & ~pos_on  # converged off its branch: the branch ended
    # semantic: both exist and Φ_sem is larger, or only it exists and the positional one has ended;
    # positional: it exists and the semantic one does not or has the smaller Φ; grey: undecided
    # (the positional solve did not converge at this rule)
    glob = np.where(sem_on & ((pos_on & (d > 0)) | pos_left), 1.0,
                    np.where(pos_on & (~sem_on | ~(d > 0)), 0.0, np.nan))
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    ax[0].pcolormesh(A, W, glob, cmap="coolwarm", shading="nearest", vmin=0, vmax=1)
    ax[0].errorbar(pd["alpha_c"], pd["omegas"], xerr=pd["alpha_c_err"], fmt="k.-", ms=3,
                   label=r"$\alpha_c(\omega)$ (Φ crossing)")
    ax[0].plot(pd["semantic_end"], pd["omegas"], "w^--", ms=3, label="semantic branch ends")
    ax[0].plot(pd["positional_end"], pd["omegas"], "wv--", ms=3, label="positional branch ends")
    ax[0].set_xlabel(r"$\alpha$")
    ax[0].set_ylabel(r"$\omega$")
    ax[0].set_title(title or "global minimum: blue positional, red semantic, white undecided", fontsize=9)
    ax[0].legend(fontsize=7, loc="lower right")
    lim = np.nanmax(np.abs(d)) if np.isfinite(d).any() else 1.0
    im = ax[1].pcolormesh(A, W, d, cmap="PiYG", shading="nearest", vmin=-lim, vmax=lim)
    fig.colorbar(im, ax=ax[1], label=r"$\Phi_{\rm sem}-\Phi_{\rm pos}$")
    ax[1].set_xlabel(r"$\alpha$")
    ax[1].set_title("free-energy difference (where both branches exist)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


def phase_diagram_run(alphas: Sequence[float], omegas: Sequence[float], out: Path, *, echo=print,
                      **opts: Any) -> dict[str, Any]:
    """:func:`continuation_phase_diagram` on the grid, timed (wall and CPU), written to ``out``:
    ``phase_diagram.npz`` (every grid), ``alpha_c.csv`` (with a provenance line) and
    ``phase_diagram.png``."""
    import datetime
    import sys

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t, c = time.perf_counter(), _cpu_all()
    pd = continuation_phase_diagram(alphas, omegas, callback=lambda b, i, n: echo(
        f"[{b}] {i}/{n} {'α steps' if b != 'columns' else 'column chunks'}, {time.perf_counter() - t:.0f} s wall"),
        **opts)
    wall, cpu = time.perf_counter() - t, _cpu_all() - c
    pd["wall_s"], pd["cpu_s"] = wall, cpu
    flat = {f"{b}_{k}": v for b in ("positional", "semantic") for k, v in pd[b].items()}
    np.savez(out / "phase_diagram.npz", **flat, **{k: pd[k] for k in (
        "alphas", "omegas", "alpha_c", "alpha_c_err", "alpha_c_at_branch_end", "positional_end", "semantic_end")})
    prov = (f"# command: python {' '.join(sys.argv)}; settings {opts}, sigma={SIGMA}, lam={LAM}, grid "
            f"{len(alphas)} alpha in [{min(alphas)}, {max(alphas)}] x {len(omegas)} omega; "
            f"{wall:.0f} s wall, {cpu:.0f} s CPU; date {datetime.date.today().isoformat()}")
    with (out / "alpha_c.csv").open("w") as fh:
        fh.write(prov + "\n")
        fh.write("omega,alpha_c,alpha_c_err,at_branch_end,positional_end,semantic_end\n")
        for j, w in enumerate(pd["omegas"]):
            fh.write(f"{w:.6g},{pd['alpha_c'][j]:.8g},{pd['alpha_c_err'][j]:.3g},{int(pd['alpha_c_at_branch_end'][j])},"
                     f"{pd['positional_end'][j]:.6g},{pd['semantic_end'][j]:.6g}\n")
    plot_phase_diagram(pd, out / "phase_diagram.png", f"{len(alphas)} α × {len(omegas)} ω by continuation, "
                       f"QMC {opts.get('n_quad', 4096)} × {opts.get('replicas', 4)}; blue positional, red semantic")
    echo(f"phase diagram {len(alphas)} x {len(omegas)}: {wall:.0f} s wall, {cpu:.0f} s CPU")
    return pd


def _alpha_c_columns(args: tuple) -> dict[str, np.ndarray]:
    """One worker's ω of :func:`alpha_c_table`: bisection, then the quadrature error; or
    (``scan``) the model's local scan, which carries its own error."""
    import derive

    om, lo, hi, starts, tol, h, opts, scan = args
    m = derive.models.get(MODEL)
    if scan:
        r = m.critical_alpha_scan(om, 0.5 * (lo + hi), half_width=max(float(np.max(hi - lo)) / 2, 0.02),
                                  sigma=SIGMA, lam=LAM, starts=starts, **opts)
        return {"alpha_c": r["alpha_c"], "half_bracket": np.zeros(om.shape), "error": r["error"],
                "slope": r["slope"], "lo": r["lo"], "hi": r["hi"]}
    bis = m.critical_alpha(om, lo, hi, tol=tol, sigma=SIGMA, lam=LAM, starts=starts, **opts)
    ac = np.where(bis.converged, bis.root, np.nan)
    er = m.critical_alpha_error(om, ac, h=h, sigma=SIGMA, lam=LAM, starts=starts, **opts)
    return {"alpha_c": ac, "half_bracket": 0.5 * np.where(bis.converged, bis.hi - bis.lo, np.nan),
            "error": er["error"], "slope": er["slope"], "lo": np.asarray(lo, float), "hi": np.asarray(hi, float)}


def _cpu_all() -> float:
    """CPU seconds of this process and its joined worker processes."""
    import resource

    return sum(resource.getrusage(w).ru_utime + resource.getrusage(w).ru_stime
               for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def plot_alpha_c_line(tables: Sequence[Path], large_alpha_csv: Path, path: Path) -> Path:
    """α_c(ω) with its quadrature error bars from the recorded tables (:func:`alpha_c_table`), the
    authors' plotted line, and the α → ∞ asymptote ω* (:func:`large_alpha_table`); right: the
    large-α population test errors of both branches against ω."""
    import re

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from derivations.positional_semantic_settle import AUTHORS_ALPHA_C

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, tpath in enumerate(tables):
        tab = read_alpha_c_table(tpath)
        ok = np.isfinite(tab["alpha_c"])
        ax[0].errorbar(tab["omega"][ok], tab["alpha_c"][ok], yerr=tab["alpha_c_err"][ok], fmt=".-", ms=3,
                       color=f"C{k}", label=f"α_c(ω), Φ crossing ({Path(tpath).name})")
    aw = sorted(AUTHORS_ALPHA_C)
    ax[0].plot(aw, [AUTHORS_ALPHA_C[w] for w in aw], "gs", ms=5, label="authors' plotted line")
    head = Path(large_alpha_csv).read_text().splitlines()
    ws = float(re.search(r"omega_star = ([0-9.]+)", head[0]).group(1))
    ax[0].axvline(ws, color="k", ls="--", lw=1, label=f"ω* = {ws:.4f} (α → ∞)")
    ax[0].set_yscale("log")
    ax[0].set_xlabel(r"$\omega$")
    ax[0].set_ylabel(r"$\alpha_c$")
    ax[0].set_title("semantic global minimum above the line; none for ω > ω*", fontsize=9)
    ax[0].legend(fontsize=7, loc="upper left")
    cols = head[1].split(",")
    rows = np.array([[float(v) for v in ln.split(",")] for ln in head[2:]])
    t = {c: rows[:, i] for i, c in enumerate(cols)}
    ax[1].plot(t["omega"], t["mse_positional"], "o-", ms=3, label="positional (θ = 0)")
    ax[1].plot(t["omega"], t["mse_semantic"], "o-", ms=3, label="semantic (m = 0)")
    ax[1].axvline(ws, color="k", ls="--", lw=1)
    ax[1].set_xlabel(r"$\omega$")
    ax[1].set_ylabel("population test error at α → ∞")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


def large_alpha_table(omegas: Sequence[float], path: Path, *, n_gh: int = 16, echo=print) -> dict[str, Any]:
    """The α → ∞ limit (:meth:`large_alpha_limit`) at each ω and ω* (:meth:`omega_star`, at ``n_gh``
    and ``n_gh + 4`` nodes per variable: their difference is its quadrature error), written to
    ``path`` as CSV with a provenance line (ω* on it)."""
    import datetime
    import sys

    import derive

    m = derive.models.get(MODEL)
    t, c = time.perf_counter(), _cpu_all()
    rows = []
    for w in omegas:
        r = m.large_alpha_limit(float(w), sigma=SIGMA, n_gh=n_gh)
        rows.append(r)
        echo(f"omega {w:.4g}: min mse pos {r['mse_positional']:.9g}, sem {r['mse_semantic']:.9g}, "
             f"mixed {r['mse_mixed']:.9g} ({time.perf_counter() - t:.0f} s)")
    ws = m.omega_star(sigma=SIGMA, n_gh=n_gh)
    ws2 = m.omega_star(ws - 0.002, ws + 0.002, sigma=SIGMA, n_gh=n_gh + 4)
    wall, cpu = time.perf_counter() - t, _cpu_all() - c
    keys = ("omega", "mse_positional", "mse_semantic", "mse_mixed", "difference", "positional_q", "positional_m",
            "semantic_q", "semantic_theta", "mixed_m", "mixed_theta")
    with Path(path).open("w") as fh:
        fh.write(f"# command: python {' '.join(sys.argv)}; large_alpha_limit (population test error minimised "
                 f"on each invariant set over the reachable overlaps, Gauss-Hermite {n_gh}^4, Nelder-Mead), "
                 f"sigma={SIGMA}; omega_star = {ws:.8f} (n_gh {n_gh}), {ws2:.8f} (n_gh {n_gh + 4}); "
                 f"{wall:.0f} s wall, {cpu:.0f} s CPU; date {datetime.date.today().isoformat()}\n")
        fh.write(",".join(keys) + "\n")
        for r in rows:
            fh.write(",".join(f"{r[k]:.10g}" for k in keys) + "\n")
    echo(f"omega* = {ws:.8f} (n_gh {n_gh}), {ws2:.8f} (n_gh {n_gh + 4}) -> {path}")
    return {"rows": rows, "omega_star": ws, "omega_star_check": ws2}


def alpha_c_brackets(z: Mapping[str, Any], alpha_min: float = 0.0, widen: float = 0.02
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Brackets and branch starts for :func:`alpha_c_table` from a phase diagram (``z``: the
    ``phase_diagram.npz`` of :func:`phase_diagram_run`). Where the grid has a Φ crossing (not at a
    branch end, above ``alpha_min``): its grid interval widened by ``widen``. Where it has none but both ω-neighbours do
    (a branch that did not converge at the coarse rule near the crossing): the neighbours' crossings
    widened by ``widen``. Starts: each branch's fixed point at its on-branch grid α nearest the
    bracket (positional below it, semantic above it), so every solve continues its branch.
    Returns ``(lo, hi, omega_indices, starts)``."""
    al, om, ac = z["alphas"], z["omegas"], np.array(z["alpha_c"], dtype=float)
    end = np.asarray(z["alpha_c_at_branch_end"], bool)
    ac[end] = np.nan
    lo, hi, jw = [], [], []
    for j in range(om.size):
        if np.isfinite(ac[j]):
            if ac[j] <= alpha_min:
                continue
            i = int(np.searchsorted(al, ac[j]))  # the grid interval, widened (the coarse rule's noise)
            lo.append(al[i - 1] - widen), hi.append(al[i] + widen), jw.append(j)
        elif 0 < j < om.size - 1 and np.isfinite(ac[j - 1]) and np.isfinite(ac[j + 1]) and ac[j - 1] > alpha_min:
            lo.append(min(ac[j - 1], ac[j + 1]) - widen), hi.append(max(ac[j - 1], ac[j + 1]) + widen), jw.append(j)
    jw_ = np.array(jw, dtype=int)
    lo_, hi_ = np.array(lo), np.array(hi)
    state = ("q", "m", "v", "theta")
    starts = {}
    for branch, side in (("positional", lo_), ("semantic", hi_)):
        on = np.asarray(z[f"{branch}_on_branch"], bool)
        rows = []
        for j, edge in zip(jw_, side):
            ok = np.nonzero(on[:, j])[0]
            i = ok[np.argmin(np.abs(al[ok] - edge))] if ok.size else None
            rows.append([np.nan] * 4 if i is None else [float(z[f"{branch}_{k}"][i, j]) for k in state])
        starts[branch] = np.array(rows)
    return lo_, hi_, jw_, starts


def alpha_c_table(omegas: Sequence[float], lo: Any, hi: Any, path: Path, *, tol: float = 2e-3, h: float = 0.02,
                  echo=print, starts: Mapping[str, Any] | None = None, workers: int = 1, scan: bool = False,
                  **opts: Any) -> dict[str, np.ndarray]:
    """α_c(ω) by batched bisection of Φ_sem − Φ_pos in the brackets ``[lo, hi]`` (per ω), its
    quadrature error (:meth:`critical_alpha_error`: replica error of the Φ difference over its
    slope, plus half the final bracket), written to ``path`` as CSV with a provenance line.
    ``starts``: per-ω branch states next to the brackets (a phase diagram's), so that every
    bisection point continues its branch; ``workers``: processes (the ω are dealt to them)."""
    import datetime
    import sys

    from numerics.parallel import map_chunks, split_columns

    om = np.asarray(omegas, dtype=float)
    lo_ = np.broadcast_to(np.asarray(lo, dtype=float), om.shape)
    hi_ = np.broadcast_to(np.asarray(hi, dtype=float), om.shape)
    t, c = time.perf_counter(), _cpu_all()
    cols = split_columns(om.size, workers)
    sub = lambda j: None if starts is None else {b: np.asarray(v)[j] for b, v in starts.items()}  # noqa: E731
    parts = map_chunks(_alpha_c_columns, [(om[j], lo_[j], hi_[j], sub(j), tol, h, opts, scan) for j in cols], workers,
                       done=lambda k, n: echo(f"alpha_c: {k}/{n} chunks, {time.perf_counter() - t:.0f} s wall"))
    res = {k: np.full(om.shape, np.nan) for k in parts[0]}
    for j, part in zip(cols, parts):
        for k, v in part.items():
            res[k][j] = v
    ac, er = res["alpha_c"], {"slope": res["slope"]}
    err = res["error"] + res["half_bracket"]
    wall, cpu = time.perf_counter() - t, _cpu_all() - c
    method = ("critical_alpha_scan (5 alphas across the bracket, linear interpolation at the sign change; error = "
              "replica error of the Phi difference over the slope + interpolation term)" if scan else
              f"critical_alpha (bisection of Phi_sem - Phi_pos, tol {tol})")
    prov = (f"# command: python {' '.join(sys.argv)}; {method} "
            f"with settings {opts}, starts {'from the phase diagram' if starts is not None else 'cold'}, "
            f"workers {workers}, sigma={SIGMA}, lam={LAM}; "
            + ("" if scan else f"error = replica error of the Phi difference at alpha_c +- {h} over its slope + half "
               "the final bracket; ") + f"{wall:.0f} s wall, {cpu:.0f} s CPU; "
            f"date {datetime.date.today().isoformat()}")
    path = Path(path)
    with path.open("w") as fh:
        fh.write(prov + "\n")
        st_cols = [f"{b[:3]}_{k}" for b in ("positional", "semantic") for k in ("q", "m", "v", "theta")]
        fh.write("omega,alpha_c,alpha_c_err,slope,bracket_lo,bracket_hi"
                 + ("," + ",".join(st_cols) if starts is not None else "") + "\n")
        for j, w in enumerate(om):
            row = f"{w:.6g},{ac[j]:.8g},{err[j]:.3g},{er['slope'][j]:.6g},{res['lo'][j]:.6g},{res['hi'][j]:.6g}"
            if starts is not None:  # the branch starts used (so that a test can recompute the row)
                row += "," + ",".join(f"{v:.10g}" for b in ("positional", "semantic") for v in np.asarray(starts[b])[j])
            fh.write(row + "\n")
    echo(f"alpha_c table ({om.size} omegas): {wall:.0f} s wall, {cpu:.0f} s CPU -> {path}")
    return {"omega": om, "alpha_c": ac, "alpha_c_err": err, "slope": er["slope"]}


def read_alpha_c_table(path: Path) -> dict[str, np.ndarray]:
    """The CSV of :func:`alpha_c_table` (the provenance line skipped)."""
    rows = [ln for ln in Path(path).read_text().splitlines() if ln and not ln.startswith("#")]
    head = rows[0].split(",")
    data = np.array([[float(v) for v in r.split(",")] for r in rows[1:]])
    return {k: data[:, i] for i, k in enumerate(head)}


def theta_eigenvalue(alphas: Sequence[float], omegas: Sequence[float], *, h: float = 1e-3,
                     **opts: Any) -> dict[str, np.ndarray]:
    r"""The θ-direction eigenvalue of the undamped map at the agnostic fixed point (θ, m) = (0, 0).

    θ = 0 and m = 0 are invariant (w → −w, token exchange; the rule is closed under both), so at
    the agnostic point the Jacobian is block-diagonal and $\lambda_\theta=\partial F_\theta/\partial\theta$
    is an eigenvalue; $F_\theta$ is odd in θ (exactly, under the closed rule), so
    $\lambda_\theta=F_\theta(q,0,V,h)/h$ up to $O(h^2)$. Per replica rule, from the pooled agnostic
    fixed point; returns the replica mean and standard error on the ``alphas × omegas`` grid,
    and the crossing α_s(ω) of λ_θ = 1 (linear interpolation; error from λ's error and slope).
    The m-direction eigenvalue λ_m (the positional instability) likewise."""
    import derive
    from numerics.backend import get_backend

    m = derive.models.get(MODEL)
    be = get_backend("numpy")
    A, W = np.meshgrid(np.asarray(alphas, float), np.asarray(omegas, float), indexing="ij")
    a, w = A.reshape(-1), W.reshape(-1)
    params = m.validate(dict(alpha=a, omega=w, sigma=np.full(a.shape, SIGMA), lam=np.full(a.shape, LAM)))
    ag = m.evaluate(params, be, branch="agnostic", **opts)
    x = np.stack([ag[k] for k in m.state], axis=1)
    d, pb = m.saddle(params, be, **{**opts, "branch": "agnostic"})
    R = d.R
    rows = np.arange(a.size * R)
    out = {"alpha": A, "omega": W, "q": ag["q"].reshape(A.shape), "v": ag["v"].reshape(A.shape),
           "converged": np.asarray(ag["converged"]).reshape(A.shape)}
    for name, j in (("theta", 3), ("m", 1)):
        xr = np.repeat(x, R, axis=0)
        xr[:, j] = h
        lam_r = d.evaluate(xr, rows)["map"][:, j] / h
        lam_r = lam_r.reshape(a.size, R)
        out[f"lambda_{name}"] = lam_r.mean(axis=1).reshape(A.shape)
        out[f"lambda_{name}_err"] = (lam_r.std(axis=1, ddof=1) / np.sqrt(R)).reshape(A.shape)
    lt, le = out["lambda_theta"], out["lambda_theta_err"]
    al = np.asarray(alphas, float)
    a_s, a_s_err = np.full(W.shape[1], np.nan), np.full(W.shape[1], np.nan)
    for jw in range(W.shape[1]):
        for i in range(al.size - 1):
            if (lt[i, jw] - 1) * (lt[i + 1, jw] - 1) <= 0 and np.isfinite(lt[i, jw] + lt[i + 1, jw]):
                slope = (lt[i + 1, jw] - lt[i, jw]) / (al[i + 1] - al[i])
                a_s[jw] = al[i] + (1 - lt[i, jw]) / slope
                a_s_err[jw] = max(le[i, jw], le[i + 1, jw]) / abs(slope)
                break
    out.update(alpha_s=a_s, alpha_s_err=a_s_err)
    return out


def semantic_pitchfork(omegas: Sequence[float], alphas: Sequence[float], *, n_fit: int = 4,
                       **opts: Any) -> dict[str, Any]:
    """The semantic branch followed downward in α (continuation, batched over ω) to where θ → 0,
    and the pitchfork α_s(ω) from a weighted linear fit θ² = c (α − α_s) near the end
    (:func:`pitchfork_fit`; a supercritical pitchfork is linear there). Errors: θ's replica
    errors propagated through the fit (covariance of the weighted least squares)."""
    import derive
    from numerics.backend import get_backend
    from numerics.saddle import continuation

    m = derive.models.get(MODEL)
    be = get_backend("numpy")
    om = np.asarray(omegas, float)
    al = np.sort(np.asarray(alphas, float))[::-1]
    th, th_err, conv = (np.full((al.size, om.size), np.nan) for _ in range(3))

    def solve(a: float, x0: np.ndarray):
        params = m.validate(dict(alpha=np.full(om.size, a), omega=om, sigma=np.full(om.size, SIGMA),
                                 lam=np.full(om.size, LAM)))
        init = x0 if np.isfinite(x0).any() else None
        r = m.evaluate(params, be, branch="semantic", init=init, **opts)
        x = np.stack([r[k] for k in m.state], axis=1)
        return type("Step", (), {"x": x, "converged": np.asarray(r["converged"], bool), "out": r})()

    steps = continuation(solve, list(al), np.full((om.size, 4), np.nan))
    for i, st in enumerate(steps):
        th[i], th_err[i], conv[i] = st.out["theta"], st.out["theta_err"], st.out["converged"]
    out = {"alphas": al, "omegas": om, "theta": th, "theta_err": th_err, "converged": conv}
    out.update(pitchfork_fit(out, n_fit=n_fit))
    return out


def pitchfork_fit(pf: Mapping[str, Any], n_fit: int = 4) -> dict[str, np.ndarray]:
    """α_s(ω) from a weighted linear fit θ² = c (α − α_s) over the ``n_fit`` smallest α where the
    semantic branch is resolved (converged, θ > 3 standard errors); the error is the fit's
    (covariance of the weighted least squares with the replica errors of θ²)."""
    al, om, th, th_err, conv = (pf[k] for k in ("alphas", "omegas", "theta", "theta_err", "converged"))
    a_s, a_s_err, slope = (np.full(len(om), np.nan) for _ in range(3))
    for j in range(len(om)):
        t2 = th[:, j] ** 2
        ok = (conv[:, j] > 0) & (th[:, j] > 3 * th_err[:, j])
        idx = np.nonzero(ok)[0]
        if idx.size < 2:
            continue
        idx = idx[np.argsort(al[idx])][:n_fit]
        sel = np.zeros(al.size, dtype=bool)
        sel[idx] = True
        x, y = al[sel], t2[sel]
        s = np.maximum(2 * th[sel, j] * th_err[sel, j], 1e-9)
        Wt = 1 / s**2
        X = np.stack([np.ones_like(x), x], axis=1)
        cov = np.linalg.inv(X.T @ (Wt[:, None] * X))
        b0, b1 = cov @ (X.T @ (Wt * y))
        a_s[j], slope[j] = -b0 / b1, b1
        g = np.array([-1 / b1, b0 / b1**2])
        a_s_err[j] = float(np.sqrt(g @ cov @ g))
    return {"alpha_s": a_s, "alpha_s_err": a_s_err, "slope": slope}


if __name__ == "__main__":
    _cli()
