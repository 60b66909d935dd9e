r"""Reproduce: *Bilinear sequence regression* (Erba, Troiani, Biggio, Maillard, Zdeborová 2024).

arXiv:2410.18858, PRX 2025. Project spec: ``shared/specs/bayes_optimal_sequence_models.md`` §B2.

Claims reproduced (the paper's Figs. 1–2, Bayes-optimal curves):

1. The MMSE decreases from 1 and, without label noise, reaches 0 at the perfect-recovery
   threshold α_PR = ρ(1 + β − ρ)/β (ρ < 1), always below the ridge baseline.
2. Longer sequences (larger β = L/D) help: at fixed ρ the curves move down with β towards the
   β = ∞ closed form (1 − α)(1 − α/ρ) (Δ = 0), derived here by SymPy.

Every theory number comes from ``derive.solve("bilinear-sequence-regression", ...)``; the
authors' values (``shared/reference``) are overlaid as markers. Run with
``attn-theory reproduce bilinear-sequence-regression [--quick]`` (about a minute; ``--quick``
a few seconds).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from derivations._common import (echo_derivation, output_folder, run_cli, save_figure, write_csv,
                                 write_summary)

MODEL = "bilinear-sequence-regression"
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "bilinear_sequence_regression.json"

__all__ = ["main", "print_derivation"]


def print_derivation(echo=print) -> None:
    def lines(m) -> list[str]:
        degrees = f"quartic degree {m.quartic.degree()}, edge polynomial degree {m.edges.degree()} in x"
        beta_inf = f"beta = inf, Delta = 0 (derived from the stated beta -> inf equation): mmse = " \
                   f"{m.noiseless_beta_inf_closed_form}"
        return ["Rectangular RIE state evolution (derived quartic for the Stieltjes transform g1):",
                "  " + degrees, "  " + beta_inf]

    echo_derivation(MODEL, lines, echo)


def _reference() -> list[dict]:
    if not REFERENCE.exists():
        return []
    return json.loads(REFERENCE.read_text())["table"]


def main(out_dir: Path, quick: bool = False, echo=print) -> list[Path]:
    import derive
    from matplotlib.figure import Figure

    out = output_folder(out_dir)
    print_derivation(echo)
    alphas = np.linspace(0.02, 1.0, 12 if quick else 50)
    rhos = (0.2, 0.5, 1.0) if quick else (0.1, 0.2, 0.5, 1.0, 2.0)
    betas = (1.0, 5.0, math.inf) if quick else (1.0, 2.0, 5.0, 10.0, 100.0, math.inf)
    ref = _reference()
    files: list[Path] = []
    rows: list[dict] = []
    n_bad = 0
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    ds1 = derive.solve(MODEL, alpha=alphas, beta=1.0, rho=np.array(rhos), delta=0.0)
    for j, r in enumerate(rhos):
        y = ds1.mmse.values[:, j]
        n_bad += int((~ds1.converged.values[:, j]).sum())
        ax1.plot(alphas, y, label=f"ρ = {r}")
        ax1.axvline(r * (2 - r) if r < 1 else 1.0, color=ax1.lines[-1].get_color(), ls=":", lw=0.8)
        rows += [dict(figure=1, beta=1.0, rho=r, delta=0.0, alpha=a, mmse=v,
                      converged=bool(c)) for a, v, c in zip(alphas, y, ds1.converged.values[:, j])]
        for s in ref:
            if s["beta"] == 1.0 and s["rho"] == r and s["Delta"] == 0.0:
                ax1.plot([p["alpha"] for p in s["points"]], [p["mmse"] for p in s["points"]], "kx", ms=4)
    ax1.plot(alphas, np.clip(1 - alphas, 0, None), "k--", lw=0.8, label="ridge (Δ = 0)")
    ax1.set(xlabel="α = N/(DL)", ylabel="MMSE", title="β = 1, Δ = 0 (dotted: α_PR)")
    ax1.legend(fontsize=7)
    ds2 = derive.solve(MODEL, alpha=alphas, beta=np.array(betas), rho=0.5, delta=0.0)
    for j, b in enumerate(betas):
        y = ds2.mmse.values[:, j]
        n_bad += int((~ds2.converged.values[:, j]).sum())
        ax2.plot(alphas, y, label=f"β = {b:g}")
        rows += [dict(figure=2, beta=b, rho=0.5, delta=0.0, alpha=a, mmse=v,
                      converged=bool(c)) for a, v, c in zip(alphas, y, ds2.converged.values[:, j])]
        for s in ref:
            sb = math.inf if s["beta_is_inf"] else s["beta"]
            if sb == b and s["rho"] == 0.5 and s["Delta"] == 0.0:
                ax2.plot([p["alpha"] for p in s["points"]], [p["mmse"] for p in s["points"]], "kx", ms=4)
    ax2.set(xlabel="α", title="ρ = 0.5, Δ = 0 (× authors' values)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    png = save_figure(fig, out / "bsr_mmse.png")
    csvp = write_csv(out / "bsr_mmse.csv", rows)
    # agreement with the reference table
    gaps = []
    for s in ref:
        b = math.inf if s["beta_is_inf"] else s["beta"]
        for p in s["points"][:4]:
            if s["Delta"] == 0 and abs(p["alpha"] - s["alpha_PR_formula"]) < 0.02:
                continue
            v = float(derive.solve(MODEL, alpha=p["alpha"], beta=b, rho=s["rho"], delta=s["Delta"]).mmse)
            gaps.append(abs(v - p["mmse"]))
    summary = write_summary(out, MODEL, (
        f"Figures: `{png.name}` (MMSE vs α; left β = 1 for several ρ with α_PR dotted, right "
        f"ρ = 0.5 for several β), data `{csvp.name}`."), [
        f"non-converged points: {n_bad}",
        f"max |ours − authors'| over {len(gaps)} reference points: {max(gaps) if gaps else float('nan'):.2e}",
        "β = ∞, Δ = 0 closed form (derived): mmse = (1 − α)(1 − α/ρ)"], echo)
    files += [png, csvp, summary]
    return files


def _cli(argv: Sequence[str] | None = None) -> None:
    run_cli(main, MODEL, __doc__, argv, seed=False)


if __name__ == "__main__":
    _cli()
