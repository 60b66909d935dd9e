"""positional-semantic, issue 13 item 1: the semantic branch at small α and the transition line.

Computes (shared saddle-point driver, replica QMC error bars) and draws:

1. the pitchfork: θ(α)² on the semantic branch near its end α_s(ω), ω = 0.1 … 0.5 (linear for a
   supercritical pitchfork; α_s from a weighted fit), and the θ-direction eigenvalue λ_θ of the
   map at the agnostic point (θ, m) = (0, 0) against α (λ_θ = 1 at α_s);
2. the authors' degree-7 cubature (4 Gauss–Hermite nodes per variable) against converged QMC;
3. α_c(ω) over ω ∈ [0.05, 0.95] from the continuation phase diagram, with quadrature error bars,
   against the authors' plotted 0.707, 0.928, 1.241, 1.751 (ω = 0.1 … 0.4);
4. finite-d runs from the semantic start at d = 400, 800, 1600 (α = 0.45, 0.6, 0.8).

    python -m derivations.positional_semantic_settle OUT_DIR [--cache results.pkl]
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any

import numpy as np

AUTHORS_ALPHA_C = {0.1: 0.707, 0.2: 0.928, 0.3: 1.241, 0.4: 1.751}


def compute(sim: bool = True) -> dict[str, Any]:
    """Every number of the page (slow: tens of CPU minutes)."""
    from derivations.positional_semantic import (continuation_phase_diagram, semantic_pitchfork, solve_pairs,
                                                 theta_eigenvalue)

    res: dict[str, Any] = {}
    cub = {}
    for branch in ("semantic", "positional"):
        for al in (0.6, 1.0163636363636364, 1.8929):
            gh = solve_pairs([al], 0.3, branch, quadrature="gauss-hermite", n_quad=4, replicas=1)
            qm = solve_pairs([al], 0.3, branch, n_quad=8192, replicas=4)
            cub[(branch, al)] = {k: (float(gh[k][0]), float(qm[k][0]), float(qm[k + "_err"][0]))
                                 for k in ("q", "m", "v", "theta", "mse", "phi")}
    res["cubature"] = cub
    res["pitchfork"] = semantic_pitchfork([0.1, 0.2, 0.3, 0.4, 0.5], np.round(np.arange(0.3, 1.2001, 0.05), 3),
                                          n_quad=2048, replicas=4)
    res["eigen"] = theta_eigenvalue(np.round(np.arange(0.3, 1.21, 0.1), 3), [0.1, 0.3, 0.5], h=0.02,
                                    n_quad=4096, replicas=4)
    res["pd"] = continuation_phase_diagram(np.round(np.arange(0.3, 2.61, 0.1), 3),
                                           np.round(np.arange(0.05, 0.96, 0.1), 3), n_quad=1024, replicas=4)
    if sim:
        from numerics.simulate.positional_semantic import run

        res["sim"] = [run(d, al, "semantic", seed=s, n_test=4000, omega=0.3, sigma=0.5, lam=0.01)
                      for d in (1600, 800, 400) for al in (0.45, 0.6, 0.8) for s in range(3)]
    return res


def figures(res: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = []
    if "pitchfork" in res:
        pf = res["pitchfork"]
        two = "eigen" in res
        fig, ax = plt.subplots(1, 2 if two else 1, figsize=(11 if two else 6, 4.2), squeeze=False)
        ax = ax[0]
        for j, w in enumerate(pf["omegas"]):
            t = pf["theta"][:, j]
            e = pf["theta_err"][:, j]
            ok = pf["converged"][:, j] > 0
            l, = ax[0].plot(pf["alphas"][ok], t[ok] ** 2, "o-", ms=3, label=f"ω = {w:.1f}")
            ax[0].errorbar(pf["alphas"][ok], t[ok] ** 2, yerr=2 * np.abs(t[ok]) * e[ok], fmt="none",
                           ecolor=l.get_color())
            if np.isfinite(pf["alpha_s"][j]):
                ax[0].axvline(pf["alpha_s"][j], color=l.get_color(), ls=":", lw=0.8)
        ax[0].set_xlabel(r"$\alpha$")
        ax[0].set_ylabel(r"$\theta^2$ (semantic branch)")
        ax[0].set_ylim(-2e-4, 6e-3)
        ax[0].set_title(r"$\theta^2$ is linear near the end $\alpha_s$ (dotted)")
        ax[0].legend(fontsize=8)
        if "eigen" in res:
            ev = res["eigen"]
            for j in range(ev["omega"].shape[1]):
                ax[1].errorbar(ev["alpha"][:, j], ev["lambda_theta"][:, j], yerr=ev["lambda_theta_err"][:, j],
                               fmt="o-", ms=3, label=f"ω = {ev['omega'][0, j]:.1f}")
            ax[1].axhline(1.0, color="k", lw=0.8)
            ax[1].set_xlabel(r"$\alpha$")
            ax[1].set_ylabel(r"$\lambda_\theta$ at $(\theta, m) = (0, 0)$")
            ax[1].set_title(r"θ-direction eigenvalue of the map at the agnostic point")
            ax[1].legend(fontsize=8)
        fig.tight_layout()
        p = out / "pitchfork.png"
        fig.savefig(p, dpi=130)
        plt.close(fig)
        files.append(p)
    if "pd" in res:
        pd = res["pd"]
        fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
        A, W = np.meshgrid(pd["alphas"], pd["omegas"], indexing="ij")
        d = pd["semantic"]["phi"] - pd["positional"]["phi"]
        glob = np.where(pd["semantic"]["on_branch"] & (~pd["positional"]["on_branch"] | (d > 0)), 1.0,
                        np.where(pd["positional"]["on_branch"], 0.0, np.nan))
        ax[0].pcolormesh(A, W, glob, cmap="coolwarm", shading="nearest", vmin=0, vmax=1)
        ax[0].errorbar(pd["alpha_c"], pd["omegas"], xerr=pd["alpha_c_err"], fmt="k.-",
                       label=r"$\alpha_c(\omega)$ (Φ crossing)")
        ax[0].plot(pd["semantic_end"], pd["omegas"], "w^--", ms=4, label="semantic branch ends")
        ax[0].plot(pd["positional_end"], pd["omegas"], "wv--", ms=4, label="positional branch ends")
        aw = sorted(AUTHORS_ALPHA_C)
        ax[0].plot([AUTHORS_ALPHA_C[w] for w in aw], aw, "gs", ms=5, label="authors' plotted line")
        ax[0].set_xlabel(r"$\alpha$")
        ax[0].set_ylabel(r"$\omega$")
        ax[0].set_title("global minimum: blue positional, red semantic")
        ax[0].legend(fontsize=7, loc="upper left")
        im = ax[1].pcolormesh(A, W, d, cmap="PiYG", shading="nearest")
        fig.colorbar(im, ax=ax[1], label=r"$\Phi_{\rm sem}-\Phi_{\rm pos}$")
        ax[1].set_xlabel(r"$\alpha$")
        ax[1].set_title("free-energy difference (both branches exist)")
        fig.tight_layout()
        p = out / "phase_diagram.png"
        fig.savefig(p, dpi=130)
        plt.close(fig)
        files.append(p)
    if "sim" in res and res["sim"]:
        rows = res["sim"]
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
        for al in (0.45, 0.6, 0.8):
            ds = sorted({r["d"] for r in rows if r["alpha"] == al})
            for key, a in (("m", ax[0]), ("theta", ax[1])):
                mu = [np.mean([r[key] for r in rows if r["alpha"] == al and r["d"] == d]) for d in ds]
                se = [np.std([r[key] for r in rows if r["alpha"] == al and r["d"] == d], ddof=1)
                      / np.sqrt(sum(1 for r in rows if r["alpha"] == al and r["d"] == d)) for d in ds]
                a.errorbar(ds, mu, yerr=se, fmt="o-", label=f"α = {al}")
        for a, k in ((ax[0], "m"), (ax[1], r"\theta")):
            a.set_xscale("log")
            a.set_xlabel("d")
            a.set_ylabel(f"${k}$ (semantic start)")
            a.legend(fontsize=8)
        ax[0].set_title("finite d: the positional overlap of the mixed state")
        fig.tight_layout()
        p = out / "finite_d_semantic_start.png"
        fig.savefig(p, dpi=130)
        plt.close(fig)
        files.append(p)
    return files


def main(argv: Any = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--cache", type=Path, default=None, help="pickle of compute() (read if present, else written)")
    a = ap.parse_args(argv)
    if a.cache is not None and a.cache.exists():
        res = pickle.loads(a.cache.read_bytes())
    else:
        res = compute()
        if a.cache is not None:
            a.cache.write_bytes(pickle.dumps(res))
    for f in figures(res, a.out):
        print(f)


if __name__ == "__main__":
    main()
